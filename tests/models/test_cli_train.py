"""``medsynth train`` from the command line: a capped ledger refuses with exit 3; options."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from medsynth.cli import cli
from medsynth.cohort import Cohort
from medsynth.privacy.ledger import Ledger
from medsynth.simulate import simulate
from tests.models.conftest import small_schema


def test_cap_refusal_exits_3_and_trains_nothing(tmp_path):
    cohort_dir = tmp_path / "cohort"
    simulate(small_schema(), 40, random_state=3).save(cohort_dir)
    fingerprint = Cohort.load(cohort_dir).source.fingerprint
    ledger = tmp_path / "ledger.jsonl"
    Ledger.create(ledger).set_cap(fingerprint, 1.0)
    args = ["train", str(cohort_dir), "--ledger", str(ledger), "--out", str(tmp_path / "m")]
    args += ["--epochs", "1", "--pretrain-patients", "0", "--accountant", "rdp", "--no-progress"]
    result = CliRunner().invoke(cli, [*args, "--epsilon", "2"])
    assert result.exit_code == 3, result.output
    assert "cap" in result.output and not (tmp_path / "m").exists()
    assert Ledger(ledger).spent(fingerprint) == 0.0
    # Within the cap the same command trains and charges once.
    result = CliRunner().invoke(cli, [*args, "--epsilon", "0.9", "--grad-sample-mode", "hooks"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "m" / "privacy.json").read_text())
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["training"]["grad_sample_mode"] == "hooks"
    assert Ledger(ledger).spent(fingerprint) == doc["epsilon"] <= 0.9


def test_cli_modes_match_the_library():
    from medsynth.cli.train import DEFAULT_MODE, GRAD_SAMPLE_MODES
    from medsynth.models import plan

    assert GRAD_SAMPLE_MODES == plan.GRAD_SAMPLE_MODES
    assert DEFAULT_MODE == plan.TrainConfig().grad_sample_mode


def test_secure_rng_is_refused_clearly_when_unavailable(tmp_path):
    pytest.importorskip("torch")
    try:
        import torchcsprng  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torchcsprng is installed here: secure mode is available")
    cohort_dir = tmp_path / "cohort"
    simulate(small_schema(), 40, random_state=3).save(cohort_dir)
    fingerprint = Cohort.load(cohort_dir).source.fingerprint
    ledger = Ledger.create(tmp_path / "ledger.jsonl")
    args = ["train", str(cohort_dir), "--ledger", str(ledger.path), "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(cli, [*args, "--epsilon", "1", "--secure-rng", "--no-progress"])
    assert result.exit_code == 1 and "--secure-rng is unavailable" in result.output
    assert "torchcsprng" in result.output and "nothing was charged" in result.output
    assert ledger.spent(fingerprint) == 0.0 and not (tmp_path / "m").exists()


def test_a_delta_above_one_over_n_exits_1_and_charges_nothing(tmp_path):
    cohort_dir = tmp_path / "cohort"
    simulate(small_schema(), 40, random_state=3).save(cohort_dir)
    fingerprint = Cohort.load(cohort_dir).source.fingerprint
    ledger = Ledger.create(tmp_path / "ledger.jsonl")
    args = ["train", str(cohort_dir), "--ledger", str(ledger.path), "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(cli, [*args, "--epsilon", "3", "--delta", "0.5", "--no-progress"])
    assert result.exit_code == 1 and "above 1/N = 0.025 for 40 patients" in result.output
    assert ledger.spent(fingerprint) == 0.0 and not (tmp_path / "m").exists()
