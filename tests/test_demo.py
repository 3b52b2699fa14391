"""The demo pipeline, small: simulate, ingest, split, train with DP-SGD, generate FHIR."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import medsynth.pipeline.train as training
from medsynth.cohort import Cohort
from medsynth.pipeline.demo import STEPS, run_demo


@pytest.mark.slow
def test_demo_trains_on_the_training_side_only(tmp_path, monkeypatch):
    from medsynth.fhir.validate import validate_output
    from medsynth.models.plan import TrainConfig

    seen: list[Cohort] = []
    real_train = training.train

    def recording_train(cohort, **kwargs):
        seen.append(cohort)
        return real_train(cohort, **kwargs)

    monkeypatch.setattr(training, "train", recording_train)
    ctx = run_demo(
        tmp_path / "demo",
        patients=60,
        progress=False,
        echo=lambda _: None,
        epochs=1,
        pretrain_patients=0,
        synthetic_patients=12,
        device="cpu",
        train_config=TrainConfig(accountant="rdp"),
    )
    assert len(ctx.summary) == len(STEPS)
    train_ids = set(Cohort.load(ctx.train_dir).patient_ids)
    holdout_ids = set(Cohort.load(ctx.holdout_dir).patient_ids)
    assert len(train_ids) == 48 and len(holdout_ids) == 12 and not train_ids & holdout_ids
    assert [set(c.patient_ids) for c in seen] == [train_ids]  # the holdout never trained on
    assert ctx.model_dir.parent == ctx.out and ctx.ledger_path.is_relative_to(ctx.out)
    privacy = json.loads((ctx.model_dir / "privacy.json").read_text())
    assert privacy["epsilon"] <= 3.0 and privacy["target_epsilon"] == 3.0
    charges = [json.loads(line) for line in ctx.ledger_path.read_text().splitlines()]
    assert any(json.dumps(privacy["epsilon"]) in json.dumps(c) for c in charges)
    assert validate_output(ctx.synthetic_dir).ok
    manifest = json.loads((ctx.synthetic_dir / "manifest.json").read_text())
    assert "model_sha256" in json.dumps(manifest)
    assert Cohort.load(ctx.synthetic_cohort_dir).n_patients == 12
    for name in ("train", "holdout", "synthetic", "model_dir", "ledger"):
        assert ctx.artifacts[name] is not None, name
    # The last step audits the synthetic patients and signs the report, which verifies.
    from medsynth.report.signing import verify_report

    report = ctx.artifacts["audit"]
    assert report.verdict in {"PASS", "FAIL", "INCOMPLETE"}
    assert (report.out_dir / "report.html").is_file()
    assert verify_report(report.out_dir, public_key_path=ctx.out / "keys" / "medsynth-signing.pub")


def test_demo_command_help_lists_the_training_knobs():
    from medsynth.cli.demo import demo

    result = CliRunner().invoke(demo, ["--help"])
    assert result.exit_code == 0
    for option in ("--epsilon", "--epochs", "--pretrain-patients", "--synthetic-patients"):
        assert option in result.output
