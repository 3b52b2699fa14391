"""Fixtures of the pipeline tests: one tiny release that several test files read."""

from __future__ import annotations

import dataclasses

import pytest

from medsynth.models.artifact import load_model
from medsynth.models.network import NetworkConfig
from medsynth.models.plan import TrainConfig
from medsynth.pipeline.audit import run_audit
from medsynth.pipeline.generate import generate_cohort, release_info
from medsynth.pipeline.train import train
from medsynth.privacy.ledger import Ledger
from medsynth.report.signing import generate_keypair
from medsynth.simulate import simulate

TINY = TrainConfig(
    network=NetworkConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32),
    accountant="rdp",
    pretrain_patients=0,
    epochs=2,
)


@pytest.fixture(scope="session")
def released(tmp_path_factory, tiny_schema):
    """A tiny release: model, ledger, FHIR export and signed audit report."""
    from medsynth.audit.base import AuditInputs
    from medsynth.audit.policy import load_policy
    from medsynth.fhir.write import write_fhir

    root = tmp_path_factory.mktemp("release")
    real = simulate(tiny_schema, 160, random_state=4)
    train_side, holdout = real.split(0.25, random_state=0)
    ledger = Ledger.create(root / "ledger.jsonl").path
    model = train(
        train_side,
        epsilon=4.0,
        delta=1e-4,
        out=root / "model",
        ledger=ledger,
        config=dataclasses.replace(TINY, batch_size=40),
        progress=False,
    )
    loaded = load_model(model)
    synthetic = generate_cohort(loaded, 60, random_state=1)
    write_fhir(synthetic, root / "fhir", manifest_extra=release_info(loaded))
    key, _ = generate_keypair(root / "keys")
    run_audit(
        AuditInputs(train_side, holdout, synthetic, tiny_schema, model_dir=model),
        load_policy("default"),
        out_dir=root / "report",
        key_path=key,
        progress=False,
        ledger=ledger,
    )
    return root
