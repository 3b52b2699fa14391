"""MOSTLY AI engine peer: TabularARGN with DP-SGD (Opacus) on the flat table or, for
longitudinal datasets, on a subject table and its linked visit sequences.

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

Longitudinal datasets (the job carries ``subjects_csv`` and ``visits_csv``) run the engine's
two-table mode: a flat model of the subject table (static attributes, condition flags, the
target) and a sequential model of the linked visit table (one row per visit: day offset and the
labs), which takes the subject row as its context. Each is its own DP-SGD training on the same
patients (the sequential model's sample is one patient: its context row and its whole visit
sequence), so the job's budget is split between them, epsilon/2 and delta/2 each, and the two
compose to the job's (epsilon, delta) by basic composition. Synthetic subjects come from the
flat model; the sequential model then draws each one's visits with that row as context.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd


def _table(path: str, columns: list[dict], keep: list[str]) -> tuple[pd.DataFrame, dict]:
    """The CSV at ``path`` with the domain's columns typed, and the engine's encoding types."""
    names = [c["name"] for c in columns]
    df = pd.read_csv(path, dtype=str)[keep + names]
    types = {}
    for c in columns:
        if c["kind"] == "numeric":
            df[c["name"]] = pd.to_numeric(df[c["name"]])
            types[c["name"]] = "TABULAR_NUMERIC_AUTO"
        else:
            types[c["name"]] = "TABULAR_CATEGORICAL"
    return df, types


def _train(engine, dp, options: dict, ws: Path) -> None:
    """The engine's analyze, encode and train steps on a split workspace."""
    engine.analyze(value_protection=False, differential_privacy=dp, workspace_dir=ws)
    engine.encode(workspace_dir=ws)
    engine.train(
        differential_privacy=dp,
        max_training_time=float(options.get("max_training_minutes", 10.0)),
        max_epochs=float(options.get("max_epochs", 100.0)),
        device="cpu",
        workspace_dir=ws,
    )


def _epsilon_spent(ws: Path) -> float | None:
    """The epsilon of the model the engine kept: its accountant's figure at the last saved
    checkpoint (the engine keeps the best validation loss among checkpoints under
    ``max_epsilon``; the steps after it, past the cap, are discarded), if logged."""
    for path in sorted((ws / "ModelStore").rglob("progress-messages.csv")):
        log = pd.read_csv(path)
        if "dp_eps" not in log or "is_checkpoint" not in log:
            continue
        kept = log.loc[log["is_checkpoint"] == 1, "dp_eps"].dropna()
        if len(kept):
            return float(kept.iloc[-1])
    return None


def _dp(dp_config, eps: float, delta: float, options: dict):
    """The engine's DP configuration: the job's budget; noise multiplier and clipping norm
    from the peer options where given, else the engine's defaults (1.5 and 1.0)."""
    extra = {k: float(options[k]) for k in ("noise_multiplier", "max_grad_norm") if k in options}
    return dp_config(max_epsilon=eps, delta=delta, value_protection_epsilon=None, **extra)


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    out = Path(job["out"])
    domain = job["domain"]
    import torch

    torch.set_num_threads(int(job.get("threads", 1)))
    from mostlyai import engine
    from mostlyai.engine.domain import DifferentialPrivacyConfig

    eps, delta = float(job["epsilon"]), float(job["delta"])
    options = dict(job.get("peer_options", {}).get("mostlyai", {}))
    if "visits_csv" in job:
        info = sequential(job, engine, DifferentialPrivacyConfig, eps, delta, options)
        (out / "timing.json").write_text(json.dumps(info, indent=2))
        return
    df, types = _table(job["train_csv"], domain["columns"], [])
    dp = _dp(DifferentialPrivacyConfig, eps, delta, options)
    ws = out / "ws"
    start = time.perf_counter()
    engine.split(tgt_data=df, model_type="TABULAR", tgt_encoding_types=types, workspace_dir=ws)
    _train(engine, dp, options, ws)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    engine.generate(sample_size=int(job["n_sample"]), device="cpu", workspace_dir=ws)
    syn = pd.read_parquet(ws / "SyntheticData")
    sample_s = time.perf_counter() - start
    syn[list(types)].to_csv(out / "synthetic.csv", index=False)
    info = {"fit_s": fit_s, "sample_s": sample_s, "options": options}
    info["epsilon_spent"] = _epsilon_spent(ws)
    (out / "timing.json").write_text(json.dumps(info, indent=2))


def sequential(job: dict, engine, dp_config, eps: float, delta: float, options: dict) -> dict:
    """Subject model and visit-sequence model at epsilon/2 and delta/2 each; writes
    ``subjects.csv`` and ``visits.csv`` (and ``synthetic.csv``, the subject table)."""
    out = Path(job["out"])
    domain = job["domain"]
    key, day = domain["key"], domain["day"]
    subjects, sub_types = _table(job["subjects_csv"], domain["columns"], [key])
    visits, vis_types = _table(job["visits_csv"], domain["visit_columns"], [key])
    dp = _dp(dp_config, eps / 2, delta / 2, options)
    ws_sub, ws_vis = out / "ws-subjects", out / "ws-visits"
    start = time.perf_counter()
    engine.split(
        tgt_data=subjects.drop(columns=[key]),
        model_type="TABULAR",
        tgt_encoding_types=sub_types,
        workspace_dir=ws_sub,
    )
    _train(engine, dp, options, ws_sub)
    engine.split(
        tgt_data=visits,
        ctx_data=subjects,
        ctx_primary_key=key,
        tgt_context_key=key,
        model_type="TABULAR",
        tgt_encoding_types=vis_types,
        ctx_encoding_types=sub_types,
        workspace_dir=ws_vis,
    )
    _train(engine, dp, options, ws_vis)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    engine.generate(sample_size=int(job["n_sample"]), device="cpu", workspace_dir=ws_sub)
    syn_sub = pd.read_parquet(ws_sub / "SyntheticData")[list(sub_types)].reset_index(drop=True)
    syn_sub.insert(0, key, [f"s{i:05d}" for i in range(len(syn_sub))])
    engine.generate(ctx_data=syn_sub, device="cpu", workspace_dir=ws_vis)
    syn_vis = pd.read_parquet(ws_vis / "SyntheticData")[[key, *vis_types]]
    sample_s = time.perf_counter() - start
    syn_sub.to_csv(out / "subjects.csv", index=False)
    syn_vis.to_csv(out / "visits.csv", index=False)
    syn_sub.drop(columns=[key]).to_csv(out / "synthetic.csv", index=False)
    return {
        "fit_s": fit_s,
        "sample_s": sample_s,
        "options": options,
        "mode": "sequential (subject model + visit-sequence model, epsilon/2 and delta/2 each)",
        "epsilon_spent": {"subjects": _epsilon_spent(ws_sub), "visits": _epsilon_spent(ws_vis)},
        "visits_per_subject": float(len(syn_vis) / max(1, len(syn_sub))),
        "day": day,
    }


if __name__ == "__main__":
    main()
