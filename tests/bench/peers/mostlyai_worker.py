"""MOSTLY AI engine peer: TabularARGN trained with DP-SGD (Opacus) on the flat table.

Run by the benchmark with the Python of ``.venv-peers-mostlyai`` (see ``setup.sh``):
``python mostlyai_worker.py JOB.json``. The engine's own steps run in order (split, analyze,
encode, train, generate) in a workspace under the job's folder. Privacy: the job's epsilon is
the engine's ``max_epsilon`` (training stops when its accountant reaches it) with the job's
delta. The engine's DP value-range analysis (``value_protection``) is switched off: on these
small tables its per-column share of epsilon leaves no value range at all (every numeric value
came out missing at epsilon 3 with a tenth of the budget on it), and the engine takes no public
bounds instead. So value ranges and category sets are read from the data outside the epsilon,
and a validation split of the private rows drives early stopping and the learning-rate
schedule; docs/benchmarks.md marks both.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    out = Path(job["out"])
    domain = job["domain"]
    names = [c["name"] for c in domain["columns"]]
    df = pd.read_csv(job["train_csv"], dtype=str)[names]
    types = {}
    for c in domain["columns"]:
        if c["kind"] == "numeric":
            df[c["name"]] = pd.to_numeric(df[c["name"]])
            types[c["name"]] = "TABULAR_NUMERIC_AUTO"
        else:
            types[c["name"]] = "TABULAR_CATEGORICAL"
    import torch

    torch.set_num_threads(int(job.get("threads", 1)))
    from mostlyai import engine
    from mostlyai.engine.domain import DifferentialPrivacyConfig

    eps = float(job["epsilon"])
    options = dict(job.get("peer_options", {}).get("mostlyai", {}))
    dp = DifferentialPrivacyConfig(
        max_epsilon=eps, delta=float(job["delta"]), value_protection_epsilon=None
    )
    ws = out / "ws"
    start = time.perf_counter()
    engine.split(tgt_data=df, model_type="TABULAR", tgt_encoding_types=types, workspace_dir=ws)
    engine.analyze(value_protection=False, differential_privacy=dp, workspace_dir=ws)
    engine.encode(workspace_dir=ws)
    engine.train(
        differential_privacy=dp,
        max_training_time=float(options.get("max_training_minutes", 10.0)),
        max_epochs=float(options.get("max_epochs", 100.0)),
        device="cpu",
        workspace_dir=ws,
    )
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    engine.generate(sample_size=int(job["n_sample"]), device="cpu", workspace_dir=ws)
    syn = pd.read_parquet(ws / "SyntheticData")
    sample_s = time.perf_counter() - start
    syn[names].to_csv(out / "synthetic.csv", index=False)
    info = {"fit_s": fit_s, "sample_s": sample_s, "options": options}
    (out / "timing.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
