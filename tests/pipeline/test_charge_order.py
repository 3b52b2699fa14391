"""Training killed at any point never leaves epsilon spent but unrecorded, nor a model whose
charge the ledger lacks: the ledger is always ahead of the files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medsynth.privacy.ledger import Ledger
from medsynth.simulate import simulate
from tests.helpers import minimal_doc

# Each kill point: (module attribute to wrap, how many calls pass before the process is killed).
KILL_POINTS = {
    "after the charge, before any training": ("medsynth.pipeline.train:build_vocabulary", 0),
    "during DP-SGD": ("medsynth.privacy.dpsgd:dp_step", 2),
    "while writing the artifact": ("medsynth.models.artifact:privacy_document", 0),
    "after settling, before publishing": ("medsynth._io:os.replace", 0),
}
# os.replace also writes ledger heads: only the rename that publishes the model folder kills.
ONLY_IF = {"medsynth._io:os.replace": ".partial-"}

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, importlib
    from medsynth.cohort import Cohort
    from medsynth.models.network import NetworkConfig
    from medsynth.models.plan import TrainConfig
    from medsynth.pipeline.train import train

    target, passes, cohort_dir, out, ledger, only_if = sys.argv[1:7]
    module_name, attr = target.split(":")
    module = importlib.import_module(module_name)
    owner, name = (module, attr) if "." not in attr else (getattr(module, attr.split(".")[0]),
                                                         attr.split(".")[1])
    real = getattr(owner, name)
    calls = [0]

    def killing(*args, **kwargs):
        if only_if and only_if not in str(args[0]):
            return real(*args, **kwargs)
        calls[0] += 1
        if calls[0] > int(passes):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(owner, name, killing)
    config = TrainConfig(network=NetworkConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32),
                         accountant="rdp", pretrain_patients=0, epochs=2, batch_size=20)
    train(Cohort.load(cohort_dir), epsilon=2.0, delta=1e-4, out=out, ledger=ledger,
          config=config, progress=False)
    """
)


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    from medsynth.schema import parse_schema

    path = tmp_path_factory.mktemp("cohort") / "c"
    simulate(parse_schema(minimal_doc()), 80, random_state=3).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_killed_training_leaves_the_ledger_ahead_of_the_files(point, cohort_dir, tmp_path):
    target, passes = KILL_POINTS[point]
    ledger = Ledger.create(tmp_path / "ledger.jsonl")
    out = tmp_path / "model"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            target,
            str(passes),
            str(cohort_dir),
            str(out),
            str(ledger.path),
            ONLY_IF.get(target, ""),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == -9, done.stderr[-2000:]  # killed, as planned
    events = ledger.events()  # still verifies: every line whole, head sealed
    charges = [e for e in events if e.type == "charge"]
    settled = [e for e in events if e.type == "artifact"]
    assert len(charges) == 1 and charges[0].epsilon <= 2.0  # the spend is recorded
    assert not out.exists()  # no model folder appears from a killed run
    if point == "after settling, before publishing":
        assert len(settled) == 1  # the ledger names the model that never appeared
    else:
        assert settled == []
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")]
    assert all(".partial-" in name for name in leftovers)  # hidden, never complete-looking


def test_a_finished_run_is_charged_settled_and_published_once(cohort_dir, tmp_path):
    from medsynth.cohort import Cohort
    from medsynth.models.artifact import model_sha256
    from medsynth.models.network import NetworkConfig
    from medsynth.models.plan import TrainConfig
    from medsynth.pipeline.train import train

    ledger = Ledger.create(tmp_path / "ledger.jsonl")
    config = TrainConfig(
        network=NetworkConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32),
        accountant="rdp",
        pretrain_patients=0,
        epochs=1,
        batch_size=20,
    )
    out = train(
        Cohort.load(cohort_dir),
        epsilon=2.0,
        out=tmp_path / "m",
        ledger=ledger,
        delta=1e-4,
        config=config,
        progress=False,
    )
    types = [e.type for e in ledger.events()]
    assert types == ["init", "dataset", "charge", "artifact"]  # patients registered, charged
    assert ledger.events()[-1].model_sha256 == model_sha256(out)
    assert json.loads((out / "privacy.json").read_text())["model_sha256"] == model_sha256(out)
