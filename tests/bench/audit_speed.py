"""Time of each privacy attack on large simulated cohorts, in one run.

Usage: ``python -m tests.bench.audit_speed [--patients 10000] [--schema general-adult]``.
Simulates a source of ``2 * patients`` patients split half/half into train and holdout and an
independent draw of ``patients`` as the synthetic cohort (none of this is timed), then times
the patient features (once; every attack shares them) and each privacy evaluator with its
default parameters, one after the other. Prints a Markdown table of seconds per evaluator with
its headline figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from medsynth.audit.base import AuditInputs, Estimate
from medsynth.audit.features import patient_features
from medsynth.audit.registry import get_evaluator
from medsynth.schema import load_schema
from medsynth.simulate import simulate

EVALUATORS = (
    ("mia_dcr", "auc"),
    ("mia_density", "auc"),
    ("attribute_disclosure", "risk"),
    ("singling_out", "risk"),
    ("linkability", "risk"),
    ("record_matches", "near_match_rate"),
    ("dcr_share", "share"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--schema", default="general-adult")
    args = parser.parse_args()
    schema = load_schema(args.schema)
    start = time.perf_counter()
    train, holdout = simulate(schema, 2 * args.patients, random_state=1).split(0.5, random_state=0)
    synthetic = simulate(schema, args.patients, random_state=2)
    print(f"simulated in {time.perf_counter() - start:.1f} s (not counted)")
    inputs = AuditInputs(train, holdout, synthetic, schema, random_state=0)
    rows = []
    start = time.perf_counter()
    for cohort in (train, holdout, synthetic):
        patient_features(cohort)
    rows.append(("features (3 cohorts, shared)", time.perf_counter() - start, ""))
    for name, metric in EVALUATORS:
        start = time.perf_counter()
        result = get_evaluator(name)(inputs).evaluate().result()
        elapsed = time.perf_counter() - start
        figure = result.metrics.get(metric) if result.ok else result.reason
        if isinstance(figure, Estimate):
            figure = f"{metric} {figure.value:.3f} [{figure.ci_low:.3f}, {figure.ci_high:.3f}]"
        rows.append((name, elapsed, str(figure)))
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"\n{args.schema}: train {train.n_patients}, holdout {holdout.n_patients}, synthetic "
        f"{synthetic.n_patients}; {os.cpu_count()} CPU cores, OMP_NUM_THREADS={threads}, "
        f"Python {platform.python_version()}\n"
    )
    print("| step | seconds | figure (fresh draws: no leak expected) |\n|---|---:|---|")
    for name, elapsed, figure in rows:
        print(f"| {name} | {elapsed:.2f} | {figure} |")
    print(f"| **total** | **{sum(r[1] for r in rows):.2f}** | |")


if __name__ == "__main__":
    main()
