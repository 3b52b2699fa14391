"""Write-path speed: medsynth's FHIR ndjson writer against plain ``json.dumps``, in one run.

Usage (from the repository root; pytest does not collect ``tests/bench``):
``python -m tests.bench.write_fhir [--patients 5000] [--schema general-adult] [--workers 1,2]
[--repeat 3] [--sample 3000]``. Simulates a cohort (not timed), then times:

* ``write_fhir`` to bulk ndjson, end to end: layout, resource dicts, ``orjson``, buffered
  writes, sha256, manifest, atomic move; once per worker count;
* ``json.dumps`` of the very same resource dicts (built beforehand, not timed) written one per
  line to a file: the cost of serialisation alone with the standard library;
* the ``fhir.resources.R4B`` models on a sample (``Model.model_validate(d)`` then
  ``model_dump_json()``): the rate a writer that validated each resource through pydantic
  would be capped at.

Every resource of the written output is valid by construction (``tests/fhir/test_write.py``
proves the fast-path dicts equal what the models produce and pass the binding checks); as a
spot check the script also runs :func:`medsynth.fhir.validate.validate_resource` on a sample
of the written lines and stops if one fails. Prints a Markdown table (best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from itertools import islice
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class

from medsynth.fhir.layout import PreparedCohort, Streams, build_block
from medsynth.fhir.resources import Templates
from medsynth.fhir.validate import validate_resource
from medsynth.fhir.write import RESOURCE_TYPES, write_fhir
from medsynth.schema import load_schema
from medsynth.simulate import simulate


def all_dicts(cohort, seed: int = 0) -> list[dict]:
    """Every resource dict of ``cohort`` as the ndjson writer makes them (in memory)."""
    t = Templates.for_schema(cohort.schema)
    prepared, streams, out = PreparedCohort(cohort, t), Streams(seed), []
    for a in range(0, prepared.n, 256):
        block = build_block(
            t, prepared.block_input(a, min(a + 256, prepared.n), streams), urn_refs=False
        )
        for resources in block.by_type().values():
            out.extend(resources)
    return out


def best_of(repeat: int, run, cleanup=lambda: None) -> float:
    times = []
    for _ in range(repeat):
        cleanup()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def time_writer(cohort, root: Path, workers: int, repeat: int) -> tuple[int, float]:
    """Seconds of the fastest of ``repeat`` writes into a fresh folder (removal not timed)."""
    out = root / f"fhir-{workers}"
    total = 0

    def run() -> None:
        nonlocal total
        total = write_fhir(cohort, out, workers=workers).total

    secs = best_of(repeat, run, cleanup=lambda: shutil.rmtree(out, ignore_errors=True))
    return total, secs


def time_json_dumps(dicts: list[dict], root: Path, repeat: int) -> float:
    def run() -> None:
        with open(root / "plain.ndjson", "w", encoding="utf-8") as fh:
            for d in dicts:
                fh.write(json.dumps(d))
                fh.write("\n")

    return best_of(repeat, run)


def time_models(dicts: list[dict]) -> float:
    models = {t: get_fhir_model_class(t) for t in RESOURCE_TYPES}
    start = time.perf_counter()
    for d in dicts:
        models[d["resourceType"]].model_validate(d).model_dump_json()
    return time.perf_counter() - start


def spot_check(folder: Path, sample: int) -> int:
    """Validate the first ``sample`` lines of each ndjson file; raise on any problem."""
    checked = 0
    for rtype in RESOURCE_TYPES:
        path = folder / f"{rtype}.ndjson"
        with path.open("rb") as fh:
            for line in islice(fh, sample):
                problems = validate_resource(json.loads(line), synthetic=True)
                if problems:
                    raise SystemExit(f"{path}: invalid resource: {problems}")
                checked += 1
    return checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--schema", default="general-adult")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sample", type=int, default=3000)
    args = parser.parse_args()

    schema = load_schema(args.schema)
    cohort = simulate(schema, args.patients, random_state=0)
    dicts = all_dicts(cohort)
    root = Path(tempfile.mkdtemp(prefix="medsynth-bench-"))
    try:
        rows = []
        for w in (int(x) for x in args.workers.split(",")):
            total, secs = time_writer(cohort, root, w, args.repeat)
            rows.append((f"medsynth write_fhir ndjson, {w} process(es)", total, secs))
        assert total == len(dicts), (total, len(dicts))
        rows.append(
            (
                "json.dumps of the same dicts + write",
                len(dicts),
                time_json_dumps(dicts, root, args.repeat),
            )
        )
        sample = dicts[:: max(1, len(dicts) // args.sample)]
        rows.append(
            (
                "R4B models: model_validate + model_dump_json (sample)",
                len(sample),
                time_models(sample),
            )
        )
        checked = spot_check(root / "fhir-1", args.sample // 4 + 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    baseline = rows[-2][1] / rows[-2][2]
    print(
        f"{args.patients} patients ({args.schema}), {len(dicts)} resources; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; best of {args.repeat}; "
        f"{checked} written resources spot-checked valid\n"
    )
    print("| path | resources | seconds | resources/s | vs json.dumps |")
    print("|---|---:|---:|---:|---:|")
    for name, n, secs in rows:
        rate = n / secs
        print(f"| {name} | {n} | {secs:.3f} | {rate:,.0f} | {rate / baseline:.2f}x |")


if __name__ == "__main__":
    main()
