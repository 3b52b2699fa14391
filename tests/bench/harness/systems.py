"""The systems the benchmark runs, each in its own process, and how their output comes back.

* ``medsynth``: the DP-SGD generator at the run's (epsilon, delta), through
  :func:`medsynth.pipeline.train.train` in a worker process;
* ``medsynth-nodp``: medsynth's non-private mode (the same code and schedule rule without
  noise or charge; a ceiling, not a release);
* ``real``: train-on-real, the real training table itself (no fit, no sampling);
* peers from ``tests/bench/peers``: each runs with the Python of its own virtual environment
  (``.venv-peers-NAME``, made by ``tests/bench/peers/setup.sh``) and exchanges CSV files with
  the runner. A peer whose environment is missing is reported as not installed, never faked.
  A peer marked ``sequential`` also runs on longitudinal datasets: it gets a subject table and
  a linked visit table (``datasets.subject_visit_tables``) and returns both, turned back into a
  cohort by ``datasets.from_subject_visits`` so the longitudinal metrics run on its output.
* ``mst-iid``, ``aim-iid``: the same fitted MST or AIM model as ``mst``, ``aim`` (one worker run
  per dataset, seed and epsilon serves both), its records drawn i.i.d. from the graphical model
  (mbi's ``synthetic_data(method="sample")``) instead of mbi's default randomized rounding
  (``"round"``); sampling is post-processing, no privacy cost. A peer with ``fit`` set reads
  its ``output`` from the run folder of that system's fit; :func:`run_peer` runs each fit
  folder once per harness process and hands the same fit to every system that shares it.

Peak memory is the child's maximum resident set size from ``os.wait4``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from threading import Lock

import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
PEERS = ROOT / "tests" / "bench" / "peers"


@dataclass(frozen=True)
class Peer:
    """A peer system: its venv, worker script and the method name passed to it; ``fit``: the
    system whose worker run (and run folder) it shares, ``output``: the file it reads there."""

    venv: str
    script: str
    method: str
    sequential: bool = False
    fit: str | None = None
    output: str = "synthetic.csv"


IID = "synthetic-iid.csv"  # MST/AIM records drawn i.i.d. from the fitted model
PEER_SYSTEMS: dict[str, Peer] = {
    "dpctgan": Peer(".venv-peers-smartnoise", "smartnoise_worker.py", "dpctgan"),
    "patectgan": Peer(".venv-peers-smartnoise", "smartnoise_worker.py", "patectgan"),
    "mst": Peer(".venv-peers-smartnoise", "smartnoise_worker.py", "mst"),
    "aim": Peer(".venv-peers-smartnoise", "smartnoise_worker.py", "aim"),
    "mst-iid": Peer(".venv-peers-smartnoise", "smartnoise_worker.py", "mst", fit="mst", output=IID),
    "aim-iid": Peer(".venv-peers-smartnoise", "smartnoise_worker.py", "aim", fit="aim", output=IID),
    "mostlyai": Peer(".venv-peers-mostlyai", "mostlyai_worker.py", "tabular", sequential=True),
}
OWN_SYSTEMS = ("medsynth", "medsynth-nodp", "real")
ALL_SYSTEMS = (*OWN_SYSTEMS, *PEER_SYSTEMS)
PRIVATE = {
    "medsynth",
    "dpctgan",
    "patectgan",
    "mst",
    "aim",
    "mst-iid",
    "aim-iid",
    "mostlyai",
}


def peer_python(name: str) -> Path | None:
    """The peer's interpreter, or None when its environment was not set up."""
    exe = ROOT / PEER_SYSTEMS[name].venv / "bin" / "python"
    return exe if exe.is_file() else None


@dataclass(frozen=True)
class Outcome:
    ok: bool
    fit_s: float = float("nan")
    sample_s: float = float("nan")
    peak_mb: float = float("nan")
    wall_s: float = float("nan")
    detail: dict | None = None
    error: str = ""


def run_process(cmd: list[str], log: Path, timeout: float) -> tuple[int, float, float]:
    """Run ``cmd``; return (exit code, wall seconds, peak RSS in MiB)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    return code, wall, usage.ru_maxrss / 1024.0


def _tail(path: Path, n: int = 6) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return " | ".join(lines[-n:])


def run_medsynth(system: str, job: dict, workdir: Path, timeout: float) -> Outcome:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "job.json").write_text(json.dumps(job, indent=2))
    cmd = [sys.executable, "-m", "tests.bench.harness.worker", str(workdir / "job.json")]
    code, wall, peak = run_process(cmd, workdir / "log.txt", timeout)
    if code != 0:
        return Outcome(False, wall_s=wall, error=f"exit {code}: {_tail(workdir / 'log.txt')}")
    timing = json.loads((workdir / "timing.json").read_text())
    return Outcome(True, timing["fit_s"], timing["sample_s"], peak, wall, timing)


def fit_system(system: str) -> str:
    """The system whose worker run (and run folder) ``system`` uses: itself, or the fit it
    shares (``mst`` for ``mst-iid``)."""
    peer = PEER_SYSTEMS.get(system)
    return (peer.fit if peer is not None else None) or system


def output_name(system: str) -> str:
    """The flat output file ``system`` reads from its run folder."""
    peer = PEER_SYSTEMS.get(system)
    return peer.output if peer is not None else "synthetic.csv"


# One worker run per fit folder and harness process: systems sharing a fit (``mst`` and
# ``mst-iid``) wait for the first one's run, then take its outcome.
_FITS: dict[str, Outcome] = {}
_FIT_LOCKS: dict[str, Lock] = {}
_FIT_GUARD = Lock()


def run_peer(system: str, job: dict, workdir: Path, timeout: float) -> Outcome:
    """Run the peer's worker in ``workdir`` (the folder of its fit system), once for every
    system sharing that fit; the outcome's ``sample_s`` is that of the system's own output, and
    ``detail["fit_reused"]`` says whether the fit came from an earlier system's run."""
    py = peer_python(system)
    if py is None:
        return Outcome(False, error="not installed (run tests/bench/peers/setup.sh)")
    key = str(workdir.resolve())
    with _FIT_GUARD:
        lock = _FIT_LOCKS.setdefault(key, Lock())
    with lock:
        res, reused = _FITS.get(key), True
        if res is None:
            res, reused = _run_worker(py, PEER_SYSTEMS[system], job, workdir, timeout), False
            _FITS[key] = res
    if not res.ok:
        return res
    detail = {**res.detail, "fit_reused": reused, "output": output_name(system)}
    sample = (res.detail.get("samples") or {}).get(output_name(system))
    if sample is None:
        return replace(res, ok=False, error=f"the worker wrote no {output_name(system)}")
    return replace(res, sample_s=sample["sample_s"], detail=detail)


def _run_worker(py: Path, peer: Peer, job: dict, workdir: Path, timeout: float) -> Outcome:
    workdir.mkdir(parents=True, exist_ok=True)
    job = {**job, "method": peer.method}
    (workdir / "job.json").write_text(json.dumps(job, indent=2))
    cmd = [str(py), str(PEERS / peer.script), str(workdir / "job.json")]
    code, wall, peak = run_process(cmd, workdir / "log.txt", timeout)
    if code != 0:
        why = "timed out" if wall >= timeout else f"exit {code}"
        return Outcome(False, wall_s=wall, error=f"{why}: {_tail(workdir / 'log.txt')}")
    timing = json.loads((workdir / "timing.json").read_text())
    timing.setdefault("samples", {"synthetic.csv": {"sample_s": timing["sample_s"]}})
    return Outcome(True, timing["fit_s"], timing["sample_s"], peak, wall, timing)


def read_peer_output(workdir: Path, system: str | None = None) -> pd.DataFrame:
    """A flat peer's output: ``system``'s output file in its fit folder ``workdir``."""
    name = output_name(system) if system else "synthetic.csv"
    return pd.read_csv(workdir / name, dtype=str, keep_default_na=True)


def sequential_job(data, workdir: Path) -> dict:
    """Job fields of a sequential peer on a longitudinal dataset: the training cohort written as
    ``subjects.csv`` and ``visits.csv`` beside the run's ``train.csv``, and their public domains
    (bounds and categories from the schema, the day offset bounded by the schema's horizon)."""
    from tests.bench.harness.datasets import (
        SUBJECT_KEY,
        VISIT_DAY,
        subject_columns,
        subject_visit_tables,
        visit_columns,
    )

    base = workdir.parent
    subjects, visits = subject_visit_tables(data.train)
    subjects.to_csv(base / "subjects.csv", index=False)
    visits.to_csv(base / "visits.csv", index=False)
    domain = data.domain()
    names = {c.name for c in subject_columns(data.schema)}
    domain["columns"] = [c for c in domain["columns"] if c["name"] in names]
    domain["visit_columns"] = [
        {"name": c.name, "kind": c.kind, "low": c.low, "high": c.high, "decimals": c.decimals}
        for c in visit_columns(data.schema)
    ]
    domain["key"], domain["day"] = SUBJECT_KEY, VISIT_DAY
    return {
        "subjects_csv": str(base / "subjects.csv"),
        "visits_csv": str(base / "visits.csv"),
        "domain": domain,
    }


def read_peer_cohort(workdir: Path, schema):
    """A sequential peer's output (``subjects.csv`` and ``visits.csv``) as a cohort."""
    from tests.bench.harness.datasets import from_subject_visits

    subjects = pd.read_csv(workdir / "subjects.csv", dtype=str, keep_default_na=True)
    visits = pd.read_csv(workdir / "visits.csv", dtype={"pid": str}, keep_default_na=True)
    return from_subject_visits(subjects, visits, schema, str(workdir))
