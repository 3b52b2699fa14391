"""The benchmark loop: datasets x seeds x systems x epsilons, figures, tables and plots.

Private systems run once per epsilon; the non-private ceilings (``real``, ``medsynth-nodp``)
once per dataset and seed. Each system fits in its own process (see ``systems.py``); its output
comes back as a flat table (and, for the longitudinal dataset, a long event table) scored by
``metrics.py`` against the same real tables. Rows go to ``results.jsonl`` as they come, so an
interrupted run keeps what it measured; ``results.md`` is rewritten after every row.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tests.bench.harness import metrics, systems
from tests.bench.harness.datasets import LOADERS, BenchData, unflatten

SMALL = {
    "datasets": ["breast-cancer", "diabetes"],
    "epsilons": [1.0, 3.0, 8.0],
    "seeds": [0],
    "systems": ["medsynth", "medsynth-nodp", "real"],
    "peer_options": {
        "dpctgan": {"epochs": 30, "batch_size": 128},
        "patectgan": {"epochs": 30},
        "mostlyai": {"max_training_minutes": 3.0},
    },
}
FULL = {
    "datasets": ["breast-cancer", "diabetes", "pbcseq", "flchain", "mgus2"],
    "epsilons": [1.0, 3.0, 8.0],
    "seeds": [0, 1, 2],
    "systems": list(systems.ALL_SYSTEMS),
    # DP-CTGAN's default batch of 500 exceeds small training sets (Opacus refuses a sample
    # rate above 1); AIM's default of 16 rounds per column takes hours on 2 cores.
    "peer_options": {"dpctgan": {"batch_size": 128}},
}
# Rough relative cost of a fit, to start the longest first when running in parallel.
COST = {
    "flchain": 4,
    "pbcseq": 4,
    "pbcseq-fhir": 4,
    "breast-cancer": 2,
    "mgus2": 1,
    "diabetes": 1,
}


def _nan(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def score(
    data: BenchData,
    syn_flat: pd.DataFrame,
    seed: int,
    syn_events=None,
    *,
    real: bool = False,
    syn_cohort=None,
) -> dict:
    """Every figure of one output. ``real``: the output is the training table itself; its
    fidelity figures then compare the holdout with the training table (the sampling floor)."""
    train, hold = data.flat(data.train), data.flat(data.holdout)
    like = hold if real else syn_flat
    row = {
        "tstr": metrics.tstr(syn_flat, hold, data.columns, data.target, data.task, seed),
        **metrics.marginal_tvd(train, like, data.columns),
        "corr_diff": metrics.correlation_difference(train, like, data.columns),
        **metrics.privacy_figures(train, hold, syn_flat, data.columns, seed),
        "missing_share": float(syn_flat.isna().mean().mean()),
    }
    if real:
        syn_events = data.holdout.events
        syn_cohort = data.holdout
    if data.visit_figures and syn_cohort is not None:
        from medsynth.audit.visits import visit_figures

        fig = visit_figures(data.train, syn_cohort)
        row.update(
            visit_lab_tvd=fig.lab_tvd,
            visit_visits_tvd=fig.visits_tvd,
            visit_gap_tvd=fig.gap_tvd,
            visit_lag1_mad=fig.lag1_mad,
            visit_presence_gap=fig.presence_max_gap,
            visit_repeat_cells=fig.repeat_cells,
            visit_onsets_after_last=(
                fig.onsets_after_last_visit / fig.onsets if fig.onsets else 0.0
            ),
        )
    if data.longitudinal and syn_events is not None:
        bounds = {ch.name: (float(ch.min), float(ch.max)) for ch in data.schema.channels}
        row.update(
            metrics.longitudinal(
                data.train.events, syn_events, [c.name for c in data.schema.channels], bounds
            )
        )
    return row


def _one(data: BenchData, system: str, eps, seed: int, meta: dict, work: Path, timeout: float):
    """Fit, sample and score one system; returns the result row."""
    row = {"dataset": data.name, "system": system, "epsilon": eps, "seed": seed}
    if system == "real":
        start = time.perf_counter()
        flat = data.flat(data.train)
        row.update(ok=True, fit_s=0.0, sample_s=time.perf_counter() - start)
        row.update(score(data, flat, seed, real=True))
        return row
    job = {
        "system": system,
        "epsilon": eps,
        "delta": meta["delta"],
        "seed": seed,
        "n_sample": data.train.n_patients,
        "threads": meta["threads"],
        "out": str(work),
    }
    if system.startswith("medsynth"):
        job["train"] = str(work.parent / "train-cohort")
        job["train_config"] = dict(meta.get("medsynth_config") or {})
        res = systems.run_medsynth(system, job, work, timeout)
    else:
        job.update(
            train_csv=str(work.parent / "train.csv"),
            domain=data.domain(),
            peer_options=meta.get("peer_options", {}),
        )
        if data.longitudinal:
            job.update(systems.sequential_job(data, work))
        res = systems.run_peer(system, job, work, timeout)
    row.update(ok=res.ok, fit_s=res.fit_s, sample_s=res.sample_s, peak_mb=res.peak_mb)
    if res.detail and "fit_reused" in res.detail:
        row["fit_reused"] = res.detail["fit_reused"]  # True: the fit of an earlier system's run
    if not res.ok:
        row["error"] = res.error
        return row
    if system.startswith("medsynth"):
        from medsynth.cohort import Cohort

        syn = Cohort.load(work / "synthetic")
        row.update(score(data, data.flat(syn), seed, syn.events, syn_cohort=syn))
        row.update(_audit(data, syn, seed))
        training = res.detail.get("training", {})
        row["steps"] = training.get("steps")
        row["noise_multiplier"] = res.detail.get("privacy", {}).get("noise_multiplier")
        row["epsilon_spent"] = res.detail.get("privacy", {}).get("epsilon")
    elif data.longitudinal:
        syn = systems.read_peer_cohort(work, data.schema)
        row.update(score(data, data.flat(syn), seed, syn.events, syn_cohort=syn))
        row.update(_audit(data, syn, seed))
    else:
        flat = systems.read_peer_output(work, system)
        row.update(score(data, flat, seed))
        row.update(_audit(data, unflatten(flat, data.schema), seed))
    return row


def _audit(data: BenchData, synthetic, seed: int) -> dict:
    try:
        return metrics.audit_mia(data.train, data.holdout, synthetic, seed)
    except Exception as exc:  # the audit modules are young: report, do not stop the run
        return {"audit_error": f"{type(exc).__name__}: {exc}"[:300]}


def _prepare(name: str, seed: int, out: Path) -> BenchData:
    data = LOADERS[name](seed)
    base = out / name / f"seed{seed}"
    base.mkdir(parents=True, exist_ok=True)
    data.train.save(base / "train-cohort", overwrite=True)
    data.flat(data.train).to_csv(base / "train.csv", index=False)
    return data


def _tasks(meta: dict, out: Path, rows: list[dict]):
    """(data, system, epsilon, seed, work folder) for every run of the plan; systems sharing a
    fit (``mst``, ``mst-iid``) share the work folder of that fit (``systems.fit_system``)."""
    for name in meta["datasets"]:
        if name not in LOADERS:
            raise SystemExit(f"unknown dataset {name!r}; known: {', '.join(LOADERS)}")
        for seed in meta["seeds"]:
            try:
                data = _prepare(name, seed, out)
            except ImportError as exc:
                rows.append(
                    {
                        "dataset": name,
                        "seed": seed,
                        "system": "-",
                        "epsilon": None,
                        "ok": False,
                        "error": str(exc),
                    }
                )
                continue
            for system in meta["systems"]:
                if system not in systems.ALL_SYSTEMS:
                    raise SystemExit(f"unknown system {system!r}; known: {systems.ALL_SYSTEMS}")
                peer = systems.PEER_SYSTEMS.get(system)
                if data.longitudinal and peer is not None and not peer.sequential:
                    continue
                for eps in meta["epsilons"] if system in systems.PRIVATE else [None]:
                    fit = systems.fit_system(system)
                    tag = f"{fit}-eps{eps:g}" if eps is not None else fit
                    yield data, system, eps, seed, out / name / f"seed{seed}" / tag


def run_bench(
    meta: dict, out: Path, *, timeout: float, plots: Path | None, jobs: int = 1
) -> list[dict]:
    """Run the plan (``jobs`` systems at a time), writing rows as they come."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Lock

    from tests.bench.harness.report import write_markdown, write_plots

    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    rows: list[dict] = []
    lock = Lock()
    results = out / "results.jsonl"

    def work(task) -> None:
        data, system, eps, seed, folder = task
        try:
            row = _one(data, system, eps, seed, meta, folder, timeout)
        except Exception as exc:  # a broken system must not stop the others
            row = {
                "dataset": data.name,
                "system": system,
                "epsilon": eps,
                "seed": seed,
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
            }
        row = {k: _nan(v) if isinstance(v, float) else v for k, v in row.items()}
        with lock:
            rows.append(row)
            with results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(_line(row), flush=True)
            write_markdown(rows, meta, out / "results.md")

    tasks = list(_tasks(meta, out, rows))
    # The longest fits first, so that parallel runs end together.
    tasks.sort(
        key=lambda t: (t[1] == "real", -COST.get(t[0].name, 1) * (3 if "tuned" in t[1] else 1))
    )
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(work, tasks))
    write_markdown(rows, meta, out / "results.md")
    if plots is not None:
        write_plots(rows, plots)
    return rows


def rescore(out: Path, plots: Path | None = None) -> list[dict]:
    """Score the saved outputs of a finished run again (same fits, current metrics code);
    rewrites ``results.jsonl`` and ``results.md`` of ``out``."""
    from medsynth.cohort import Cohort
    from tests.bench.harness.report import write_markdown, write_plots

    meta = json.loads((out / "meta.json").read_text())
    old = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    rows, cache = [], {}
    for row in old:
        if row.get("ok") and row.get("system", "-") != "-":
            key = (row["dataset"], row["seed"])
            if key not in cache:
                cache[key] = LOADERS[row["dataset"]](row["seed"])
            data = cache[key]
            eps = row["epsilon"]
            fit = systems.fit_system(row["system"])
            tag = fit if eps is None else f"{fit}-eps{eps:g}"
            work = out / data.name / f"seed{row['seed']}" / tag
            if row["system"] == "real":
                row.update(score(data, data.flat(data.train), row["seed"], real=True))
            elif row["system"].startswith("medsynth"):
                syn = Cohort.load(work / "synthetic")
                row.update(score(data, data.flat(syn), row["seed"], syn.events, syn_cohort=syn))
                row.update(_audit(data, syn, row["seed"]))
            elif data.longitudinal:
                syn = systems.read_peer_cohort(work, data.schema)
                row.update(score(data, data.flat(syn), row["seed"], syn.events, syn_cohort=syn))
                row.update(_audit(data, syn, row["seed"]))
            else:
                flat = systems.read_peer_output(work, row["system"])
                row.update(score(data, flat, row["seed"]))
                row.update(_audit(data, unflatten(flat, data.schema), row["seed"]))
            row = {k: _nan(v) if isinstance(v, float) else v for k, v in row.items()}
        rows.append(row)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_markdown(rows, meta, out / "results.md")
    if plots is not None:
        write_plots(rows, plots)
    return rows


SPEED_SCRIPTS = {
    # DP-SGD against non-private steps of medsynth's network, same batches, one process.
    "train_speed": [
        "tests/bench/train_speed.py",
        "--patients",
        "512",
        "--batch",
        "128",
        "--steps",
        "6",
        "--rounds",
        "2",
        "--modes",
        "ew,hooks",  # the default mode (ew) first, then the next fastest
        "--threads",
        "1",
    ],
    # FHIR ndjson written per second by medsynth's writer.
    "write_fhir": [
        "-m",
        "tests.bench.write_fhir",
        "--patients",
        "1000",
        "--workers",
        "1",
        "--repeat",
        "2",
        "--sample",
        "300",
    ],
}


def run_speed(out: Path, timeout: float) -> str:
    """Run the repository's speed benches and return their Markdown output."""
    import subprocess
    import sys

    parts = []
    for name, args in SPEED_SCRIPTS.items():
        cmd = [sys.executable, *args]
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=systems.ROOT,
                env={**__import__("os").environ, "PYTHONPATH": str(systems.ROOT)},
            )
            text = done.stdout.strip() if done.returncode == 0 else f"failed: {done.stderr[-500:]}"
        except subprocess.TimeoutExpired:
            text = "timed out"
        parts.append(f"### {name}\n\n`python {' '.join(args)}`\n\n{text}\n")
    md = "\n".join(parts)
    (out / "speed.md").write_text(md)
    return md


def _line(row: dict) -> str:
    keys = ("tstr", "tvd1", "tvd2", "corr_diff", "mia_auc", "fit_s")
    figs = " ".join(
        f"{k}={row[k]:.3f}" for k in keys if isinstance(row.get(k), (float, np.floating))
    )
    status = "ok" if row.get("ok") else f"FAILED {row.get('error', '')[:300]}"
    return (
        f"{row['dataset']} seed={row['seed']} {row['system']} eps={row['epsilon']} {status} {figs}"
    )
