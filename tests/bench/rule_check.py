"""The training rule checked on simulated patients (docs/training.md, "How the defaults are
chosen").

Simulates a benchmark schema's patients, plants a death flag that follows a fixed logistic
model of the other columns (so a train-on-synthetic classifier has something to find), trains
medsynth with the given TrainConfig overrides and scores TSTR and 2-way TVD with the
benchmark's own metrics. Nothing here reads a real dataset.

    python -m tests.bench.rule_check SCHEMA N EPSILON CONFIG_JSON SEED [--out results.jsonl]

EPSILON 0 trains in the non-private mode. One line of JSON per run is printed and appended to
``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from medsynth.cohort import Cohort
from medsynth.models.artifact import load_model
from medsynth.pipeline.train import train
from medsynth.privacy.ledger import Ledger
from medsynth.schema import load_schema
from medsynth.simulate import simulate
from tests.bench.harness import metrics
from tests.bench.harness.datasets import SCHEMAS, flatten, schema_columns
from tests.bench.harness.worker import train_config


def planted(schema, cohort: Cohort, columns, random_state: int) -> Cohort:
    """``cohort`` with ``deceased`` drawn from a fixed logistic model of the other columns."""
    flat = flatten(cohort, columns)
    numeric = [c.name for c in columns if c.kind == "numeric"]
    z = ((flat[numeric] - flat[numeric].mean()) / flat[numeric].std()).fillna(0.0).to_numpy()
    weights = np.random.default_rng(7).normal(0.0, 1.0, z.shape[1])
    male = (flat["sex"] == "male").to_numpy()
    logit = z @ weights + 0.8 * male - 1.0 + 0.7 * z[:, 0] * z[:, 1]
    dead = np.random.default_rng(random_state).random(len(flat)) < 1 / (1 + np.exp(-logit))
    patients = cohort.patients.copy()
    patients["deceased"] = dead
    return Cohort.conform(schema, patients, cohort.events, cohort.conditions)[0]


def run(schema_name: str, n: int, epsilon: float, overrides: dict, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    schema = load_schema(SCHEMAS / f"bench-{schema_name}.json")
    columns = schema_columns(schema)
    real = planted(schema, simulate(schema, n, random_state=1000 + seed), columns, 1000 + seed)
    fresh = simulate(schema, 2000, random_state=5000 + seed)
    holdout = planted(schema, fresh, columns, 5000 + seed)
    config = train_config(overrides)
    private = epsilon > 0
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.create(Path(tmp, "ledger.jsonl"), default_cap=max(epsilon, 10.0))
        start = time.perf_counter()
        path = train(
            real,
            epsilon=epsilon if private else None,
            delta=1e-5 if private else None,
            out=Path(tmp, "model"),
            ledger=ledger if private else None,
            random_state=seed,
            device="cpu",
            progress=False,
            config=config,
            non_private=not private,
        )
        fit_s = time.perf_counter() - start
        model = load_model(path)
        (synthetic,) = model.sample(n, random_state=seed + 1, batch_size=n)
        training = json.loads((path / "config.json").read_text())["training"]
        sigma = model.privacy.get("noise_multiplier", 0.0)
    train_flat, hold_flat = flatten(real, columns), flatten(holdout, columns)
    syn_flat = flatten(synthetic, columns)
    return {
        "schema": schema_name,
        "n": n,
        "epsilon": epsilon if private else None,
        "config": overrides,
        "seed": seed,
        "steps": training["steps"],
        "sample_rate": training["sample_rate"],
        "learning_rate": training["learning_rate"],
        "sigma": sigma,
        "fit_s": round(fit_s, 1),
        "tstr": metrics.tstr(syn_flat, hold_flat, columns, "deceased", "classification", seed),
        "train_on_real": metrics.tstr(
            train_flat, hold_flat, columns, "deceased", "classification", seed
        ),
        **metrics.marginal_tvd(train_flat, syn_flat, columns),
        "floor_tvd2": metrics.marginal_tvd(
            train_flat, hold_flat.sample(n, random_state=0), columns
        )["tvd2"],
        "missing_share": float(syn_flat.isna().mean().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("schema", help="bench schema name, e.g. mgus2")
    parser.add_argument("n", type=int)
    parser.add_argument("epsilon", type=float, help="0: the non-private mode")
    parser.add_argument("config", help="TrainConfig overrides as JSON, e.g. '{\"epochs\": 80}'")
    parser.add_argument("seed", type=int)
    parser.add_argument("--out", type=Path, default=Path("out/bench/rule-check.jsonl"))
    args = parser.parse_args()
    row = run(args.schema, args.n, args.epsilon, json.loads(args.config), args.seed)
    line = json.dumps(row, default=float)
    print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()
