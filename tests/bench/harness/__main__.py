"""Command line of the benchmark harness (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from tests.bench.harness.run import FULL, SMALL, run_bench
from tests.bench.harness.systems import ALL_SYSTEMS


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench.harness", description=__doc__)
    p.add_argument("--full", action="store_true", help="every dataset, system, epsilon, 3 seeds")
    p.add_argument("--datasets", nargs="+")
    p.add_argument("--epsilons", nargs="+", type=float)
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--systems", nargs="+", help="of: " + ", ".join(ALL_SYSTEMS))
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--out", type=Path, help="run folder (default out/bench/<UTC time>)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per system fit")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--rescore", type=Path, help="score a finished run folder again and stop")
    p.add_argument("--speed", action="store_true", help="also run train_speed and write_fhir")
    p.add_argument("--jobs", type=int, default=2, help="fits run at the same time (default 2)")
    p.add_argument("--plots", type=Path, help="write utility-vs-epsilon PNGs into this folder")
    p.add_argument(
        "--peer-options",
        type=json.loads,
        default=None,
        help='JSON options per peer, e.g. \'{"aim": {"rounds": 62}, "dpctgan": {"epochs": 30}}\'',
    )
    p.add_argument(
        "--medsynth-config",
        type=json.loads,
        default=None,
        help='JSON TrainConfig overrides, e.g. \'{"epochs": 60, "learning_rate": 0.01}\'',
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.rescore is not None:
        from tests.bench.harness.run import rescore

        rescore(args.rescore, args.plots)
        return
    plan = dict(FULL if args.full else SMALL)
    for key in ("datasets", "epsilons", "seeds", "systems"):
        if getattr(args, key):
            plan[key] = getattr(args, key)
    if args.peer_options is not None:
        plan["peer_options"] = {**plan.get("peer_options", {}), **args.peer_options}
    if args.medsynth_config is not None:
        plan["medsynth_config"] = args.medsynth_config
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or Path("out") / "bench" / stamp
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python -m tests.bench.harness " + " ".join(os.sys.argv[1:]),
        "started": stamp,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu(s) visible, {platform.platform()}",
        "python": platform.python_version(),
        "delta": args.delta,
        "threads": args.threads,
        "jobs": args.jobs,
        **plan,
    }
    if args.speed or args.full:
        from tests.bench.harness.run import run_speed

        print(run_speed(out, args.timeout), flush=True)
    run_bench(meta, out, timeout=args.timeout, plots=args.plots, jobs=args.jobs)


if __name__ == "__main__":
    main()
