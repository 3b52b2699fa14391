"""How often each privacy check of a policy catches verbatim copies of training patients, and
how often it raises a false alarm on honest synthetic data.

Usage: ``python -m tests.bench.leak_detection [--sizes 500 5000] [--rates 0 0.005 0.01 0.02
0.05] [--seeds 10] [--honest-seeds 40] [--policy default] [--dump runs.jsonl]``.

For each cohort size ``n`` and seed, the simulator draws training, holdout and synthetic
cohorts of ``n`` patients of the general-adult schema independently (three seeds); the honest
case audits the fresh synthetic draw as it is, a leak case replaces ``round(rate * n)`` of its
patients by verbatim copies of training patients (fresh ids; ``tests/audit/leak_cohorts.py``).
Every privacy evaluator the policy enables runs (the model-loss attack excepted: there is no
model), the policy's checks are judged, and the script prints one Markdown table per size: for
each privacy check, the share of seeds in which it FAILED, per leak rate (rate 0: the false
alarms), and the share in which any privacy check failed. Rate 0 runs over
``--honest-seeds`` seeds, the leak rates over the first ``--seeds`` of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from medsynth.audit.base import AuditInputs, Estimate
from medsynth.audit.policy import AuditPolicy, load_policy, parse_policy
from medsynth.audit.run import evaluate_policy, evaluator_kind, run_evaluators
from medsynth.schema import load_schema
from tests.audit.leak_cohorts import draws, with_copies

FIGURES = (
    ("record_matches", "distinctive_copies"),
    ("record_matches", "exact_matches"),
    ("record_matches", "risk"),
    ("mia_dcr", "auc"),
    ("mia_dcr", "tpr_excess_at_fpr_1pct"),
    ("mia_dcr", "tpr_at_fpr_1pct"),
    ("mia_dcr", "epsilon_lower_bound"),
    ("mia_density", "tpr_excess_at_fpr_1pct"),
    ("dcr_share", "share"),
)


def privacy_policy(name: str) -> AuditPolicy:
    """The policy with only its privacy evaluators and checks (no model-loss attack)."""
    doc = load_policy(name).to_dict()
    keep = {
        e for e in doc["evaluators"] if e != "mia_likelihood" and evaluator_kind(e) == "privacy"
    }
    doc["evaluators"] = {k: v for k, v in doc["evaluators"].items() if k in keep}
    doc["checks"] = [c for c in doc["checks"] if c["evaluator"] in keep]
    return parse_policy(doc)


def plain(figure: Any) -> Any:
    if isinstance(figure, Estimate):
        return {"value": figure.value, "ci_low": figure.ci_low, "ci_high": figure.ci_high}
    return figure


def one_run(policy: AuditPolicy, inputs: AuditInputs) -> dict[str, Any]:
    results = run_evaluators(inputs, policy)
    checks = evaluate_policy(policy, results)
    by_name = {r.name: r for r in results}
    return {
        "failed": [c.name for c in checks if c.verdict == "FAIL"],
        "figures": {
            f"{e}.{m}": plain(by_name[e].metrics.get(m))
            for e, m in FIGURES
            if e in by_name and by_name[e].ok
        },
    }


def table(policy: AuditPolicy, n: int, rates: list[float], runs: dict[float, list]) -> str:
    names = [c.name for c in policy.checks]
    head = " | ".join(
        f"{'honest' if r == 0 else f'{r:.1%} ({round(r * n)} copies)'}" for r in rates
    )
    lines = [f"| check | {head} |", "|---|" + "---:|" * len(rates)]
    for name in [*names, "any privacy check"]:
        cells = []
        for r in rates:
            done = runs[r]
            hit = sum(
                bool(x["failed"]) if name == "any privacy check" else name in x["failed"]
                for x in done
            )
            cells.append(f"{hit}/{len(done)}")
        label = f"**{name}**" if name == "any privacy check" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--rates", type=float, nargs="+", default=[0, 0.005, 0.01, 0.02, 0.05])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--honest-seeds", type=int, default=40)
    parser.add_argument("--policy", default="default")
    parser.add_argument("--dump", type=Path, help="write every run's figures as JSON lines")
    args = parser.parse_args()
    schema = load_schema("general-adult")
    policy = privacy_policy(args.policy)
    dump = args.dump.open("w", encoding="utf-8") if args.dump else None
    start = time.perf_counter()
    for n in args.sizes:
        runs: dict[float, list] = {r: [] for r in args.rates}
        for seed in range(max(args.seeds, args.honest_seeds if 0 in args.rates else 0)):
            train, holdout, fresh = draws(schema, n, seed)
            for rate in args.rates:
                if seed >= (args.honest_seeds if rate == 0 else args.seeds):
                    continue
                k = round(rate * n)
                synthetic = with_copies(fresh, train, k, seed)
                run = one_run(policy, AuditInputs(train, holdout, synthetic, schema))
                runs[rate].append(run)
                if dump:
                    row = {"n": n, "seed": seed, "rate": rate, "copies": k, **run}
                    dump.write(json.dumps(row) + "\n")
                    dump.flush()
        print(f"\n### {n} training patients (holdout and synthetic {n} each)\n")
        print(table(policy, n, args.rates, runs))
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"\npolicy {policy.name!r}, general-adult schema; {time.perf_counter() - start:.0f} s on "
        f"{os.cpu_count()} CPU cores, OMP_NUM_THREADS={threads}, Python "
        f"{platform.python_version()}"
    )


if __name__ == "__main__":
    main()
