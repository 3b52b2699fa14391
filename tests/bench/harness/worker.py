"""One system's fit and sample, run in its own process so peak memory is its own.

Usage (by the runner): ``python -m tests.bench.harness.worker JOB.json``. The job names the
system (``medsynth``, or ``medsynth-nodp``: the non-private mode), the training cohort folder,
epsilon, delta, seed, training knobs and where to write; the worker writes the synthetic cohort
folder and ``timing.json`` (fit and sample wall seconds, DP-SGD steps and throughput).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def train_config(overrides: dict):
    """The library's TrainConfig with ``overrides`` (JSON: top-level fields, and ``network`` /
    ``encoding`` sub-objects for NetworkConfig and EncodingConfig fields)."""
    import dataclasses

    from medsynth.encoding.vocabulary import EncodingConfig
    from medsynth.models.network import NetworkConfig
    from medsynth.models.plan import TrainConfig

    knobs = dict(overrides)
    network = NetworkConfig(**knobs.pop("network", {}))
    encoding = EncodingConfig(**knobs.pop("encoding", {}))
    return dataclasses.replace(TrainConfig(network=network, encoding=encoding), **knobs)


def run(job: dict) -> dict:
    import torch

    from medsynth.cohort import Cohort
    from medsynth.models.artifact import load_model
    from medsynth.pipeline.generate import generate_cohort
    from medsynth.pipeline.train import train

    torch.set_num_threads(int(job.get("threads", 1)))
    out = Path(job["out"])
    cohort = Cohort.load(job["train"])
    config = train_config(job.get("train_config", {}))
    non_private = job["system"] == "medsynth-nodp"
    from medsynth.privacy.ledger import DEFAULT_CAP, Ledger

    # The non-private ceiling is medsynth's own non-private mode (no noise, no charge, an
    # artifact marked not releasable); each private job runs on its own, new ledger.
    epsilon = None if non_private else float(job["epsilon"])
    ledger = (
        None
        if non_private
        else Ledger.create(out / "ledger", default_cap=max(epsilon, DEFAULT_CAP))
    )
    start = time.perf_counter()
    train(
        cohort,
        epsilon=epsilon,
        delta=None if non_private else float(job["delta"]),
        out=out / "model",
        ledger=ledger,
        random_state=int(job["seed"]),
        device="cpu",
        progress=False,
        config=config,
        label=f"bench {job['system']}",
        non_private=non_private,
    )
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    seed = int(job["seed"]) + 1
    if non_private:  # not releasable: generate() refuses it, the bench samples it directly
        model = load_model(out / "model", device="cpu")
        n = int(job["n_sample"])
        (syn,) = model.sample(n, random_state=seed, batch_size=max(n, 1))
    else:
        syn = generate_cohort(out / "model", int(job["n_sample"]), random_state=seed, device="cpu")
    sample_s = time.perf_counter() - start
    syn.save(out / "synthetic", overwrite=True)
    training = json.loads((out / "model" / "config.json").read_text())["training"]
    privacy = json.loads((out / "model" / "privacy.json").read_text())
    return {"fit_s": fit_s, "sample_s": sample_s, "training": training, "privacy": privacy}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    timing = run(job)
    Path(job["out"], "timing.json").write_text(json.dumps(timing, indent=2, default=str))


if __name__ == "__main__":
    main()
