"""Ingest a Synthea FHIR R4 sample and report what was found, mapped and skipped, and how fast.

Usage (from the repository root; pytest does not collect ``tests/bench``)::

    python -m tests.bench.ingest_synthea [PATH] [--schema general-adult]
    python -m tests.bench.ingest_synthea --simulate 3000     # reader throughput, both layouts

PATH defaults to ``../shared/data/synthea-r4`` beside the repository. The script prints the
reader's account (read, mapped, ignored, skipped with reasons, conformed), events and patients
per channel, conditions, time and peak memory. It exits with status 1 when a Patient that was
read is missing from the cohort, or when a channel of the schema other than those named by
``--expect-empty`` received no event.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from medsynth.fhir.read import read_fhir
from medsynth.fhir.read_sources import find_inputs
from medsynth.schema import DatasetSchema, load_schema

DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "synthea-r4"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT), help="file or folder to read")
    parser.add_argument("--schema", default="general-adult", help="dataset schema name or file")
    parser.add_argument(
        "--expect-empty",
        default="heart_rate",
        help="comma-separated channels allowed to stay empty (default: %(default)s)",
    )
    parser.add_argument(
        "--simulate",
        type=int,
        default=0,
        metavar="N",
        help="instead: time reading N simulated patients written as bulk ndjson and as Bundles",
    )
    args = parser.parse_args(argv)
    schema = load_schema(args.schema)
    if args.simulate:
        return throughput(schema, args.simulate)
    files = find_inputs([args.path])
    size = sum(f.path.stat().st_size for f in files)
    start = time.perf_counter()
    result = read_fhir([args.path], schema)
    seconds = time.perf_counter() - start
    cohort, counts = result.cohort, result.counts
    resources = sum(counts.read.values())
    print(f"input: {args.path} ({len(files)} files, {size / 1e6:.1f} MB on disk)")
    print(f"schema: {schema.name}; time: {seconds:.2f} s ({resources / seconds:,.0f} resources/s)")
    print()
    print("\n".join(result.lines(max_codes=15, max_issues=10)))
    print()
    print(f"{'channel':<20}{'events':>8}{'patients':>10}")
    per_channel = cohort.events.groupby("channel")["patient_id"].agg(["size", "nunique"])
    for name in schema.channel_names:
        n, k = per_channel.loc[name] if name in per_channel.index else (0, 0)
        print(f"{name:<20}{int(n):>8}{int(k):>10}")
    print(
        f"{'conditions':<20}{len(cohort.conditions):>8}"
        f"{cohort.conditions['patient_id'].nunique():>10}"
    )
    allowed_empty = {c for c in args.expect_empty.split(",") if c}
    empty = [
        c for c in schema.channel_names if c not in per_channel.index and c not in allowed_empty
    ]
    missing = counts.read.get("Patient", 0) - cohort.n_patients
    if missing or empty:
        print(
            f"FAIL: {missing} Patient(s) read but not in the cohort; "
            f"channels without events: {empty}",
            file=sys.stderr,
        )
        return 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MB")
    print(f"OK: all {cohort.n_patients} patients read are in the cohort")
    return 0


def throughput(schema: DatasetSchema, n_patients: int) -> int:
    """Write ``n_patients`` simulated patients in both layouts and time reading each back."""
    from medsynth.fhir.write import write_fhir
    from medsynth.simulate import simulate

    cohort = simulate(schema, n_patients, random_state=0)
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("ndjson", "bundle"):
            out = Path(tmp) / layout
            write_fhir(cohort, out, format=layout, random_state=0)
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            start = time.perf_counter()
            result = read_fhir([out], schema)
            seconds = time.perf_counter() - start
            resources = sum(result.counts.read.values())
            print(
                f"{layout:<7} {size / 1e6:7.1f} MB {resources:>9,} resources {seconds:6.2f} s "
                f"{resources / seconds:>9,.0f} resources/s; {result.cohort.n_patients} "
                f"patients, {len(result.cohort.events):,} events, {len(result.issues)} issues"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
