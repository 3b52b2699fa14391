"""One medsynth configuration on one benchmark dataset, scored the harness's way, fast.

Trains medsynth (the library defaults with the given TrainConfig overrides) on a known
dataset's training split, samples as many patients and prints one JSON line: fit time, TSTR
on the real holdout, mean 1-way and 2-way TVD, and the 2-way TVD of the target with each other
column (where a model loses the target's associations, which TSTR needs, shows first). No
audit, no privacy figures, no peers: for comparing configurations over seeds before a full
harness run (``docs/benchmarks.md`` names the commands behind its figures).

    python -m tests.bench.ablation DATASET EPSILON SEED [CONFIG_JSON] [--out results.jsonl]

EPSILON 0 trains in the non-private mode. The split is the harness's for that seed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from medsynth.models.artifact import load_model
from medsynth.pipeline.train import train
from medsynth.privacy.ledger import Ledger
from tests.bench.harness import metrics
from tests.bench.harness.datasets import LOADERS
from tests.bench.harness.worker import train_config


def run(dataset: str, epsilon: float, seed: int, overrides: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    data = LOADERS[dataset](seed)
    config = train_config(overrides)
    private = epsilon > 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        train(
            data.train,
            epsilon=epsilon if private else None,
            delta=1e-5 if private else None,
            out=out / "model",
            ledger=Ledger.create(out / "ledger", default_cap=max(epsilon, 10.0))
            if private
            else None,
            random_state=seed,
            device="cpu",
            progress=False,
            config=config,
            label="ablation",
            non_private=not private,
        )
        fit_s = time.perf_counter() - start
        n = data.train.n_patients
        (syn,) = load_model(out / "model", device="cpu").sample(
            n, random_state=seed + 1, batch_size=n
        )
    real, fake, hold = data.flat(data.train), data.flat(syn), data.flat(data.holdout)
    tvd = metrics.marginal_tvd(real, fake, data.columns)
    r, s = metrics.codes(real, data.columns), metrics.codes(fake, data.columns)
    target = {
        c.name: round(
            metrics._tvd(r[data.target] * 100 + r[c.name], s[data.target] * 100 + s[c.name]), 4
        )
        for c in data.columns
        if c.name != data.target
    }
    return {
        "dataset": dataset,
        "epsilon": epsilon,
        "seed": seed,
        "config": overrides,
        "fit_s": round(fit_s, 1),
        "tstr": round(metrics.tstr(fake, hold, data.columns, data.target, data.task, seed), 4),
        "tvd1": round(tvd["tvd1"], 4),
        "tvd2": round(tvd["tvd2"], 4),
        "target_pair_tvd": target,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.bench.ablation", description=__doc__)
    p.add_argument("dataset", choices=sorted(LOADERS))
    p.add_argument("epsilon", type=float, help="0: the non-private mode")
    p.add_argument("seed", type=int)
    p.add_argument("config", nargs="?", default="{}", type=json.loads)
    p.add_argument("--out", type=Path, help="append the JSON line to this file")
    args = p.parse_args(argv)
    row = run(args.dataset, args.epsilon, args.seed, args.config)
    line = json.dumps(row)
    print(line, flush=True)
    if args.out:
        with args.out.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
