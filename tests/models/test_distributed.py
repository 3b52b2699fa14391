"""Two CPU processes under torchrun (gloo): the privacy record is that of the global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from medsynth.simulate import simulate
from tests.helpers import new_ledger
from tests.models.conftest import small_schema

# The accounting and ledger modules are built alongside; until they land these tests skip.
pytest.importorskip("medsynth.privacy.accounting")
pytest.importorskip("medsynth.privacy.ledger")


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    from medsynth.privacy.accounting import PrivacyRecord

    cohort_dir = tmp_path / "cohort"
    simulate(small_schema(), 64, random_state=2).save(cohort_dir)
    out, ledger = tmp_path / "model", new_ledger(tmp_path / "ledger.jsonl")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "medsynth.cli.train",
        str(cohort_dir),
        "--epsilon",
        "3",
        "--delta",
        "1e-5",
        "--out",
        str(out),
        "--ledger",
        str(ledger),
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--pretrain-patients",
        "0",
        "--device",
        "cpu",
        "--accountant",
        "rdp",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    doc = json.loads((out / "privacy.json").read_text())
    # 64 patients, expected global batch 32: each patient is in a step's batch with
    # probability 1/2, whichever process holds it; 2 epochs of 2 steps.
    assert doc["world_size"] == 2 and doc["sample_rate"] == 0.5 and doc["steps"] == 4
    assert doc["accountant"] == "rdp"
    assert doc["epsilon"] <= 3.0
    assert PrivacyRecord.from_dict(doc).recompute_epsilon() == pytest.approx(doc["epsilon"])
    assert len([line for line in ledger.read_text().splitlines() if line.strip()]) >= 1
