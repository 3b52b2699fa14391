"""DP training end to end on a small simulated cohort: privacy record, ledger, artifact."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from medsynth.errors import BudgetError
from medsynth.models.artifact import load_model, model_sha256
from medsynth.models.plan import (
    DEFAULT_PRETRAIN_PATIENTS,
    Schedule,
    TrainConfig,
    plan_schedule,
    resolve_pretraining,
)
from medsynth.pipeline.train import train
from medsynth.privacy.dpsgd import PoissonBatches, private_loader
from tests.helpers import new_ledger
from tests.models.conftest import (
    LARGE_EPSILON,
    MARKER_ID,
    MARKER_VALUE,
    fast_config,
    small_schema,
)

# The accounting and ledger modules are built alongside; until they land these tests skip.
pytest.importorskip("medsynth.privacy.accounting")
pytest.importorskip("medsynth.privacy.ledger")


def test_privacy_record_meets_target_and_recomputes(trained):
    from opacus.accountants import create_accountant

    from medsynth.privacy.accounting import PrivacyRecord

    path, _ = trained
    doc = json.loads((path / "privacy.json").read_text())
    assert doc["epsilon"] <= LARGE_EPSILON and doc["target_epsilon"] == LARGE_EPSILON
    assert doc["accountant"] == "rdp" and doc["poisson_sampling"] is True
    assert doc["sample_rate"] == 0.25 and doc["steps"] == 16 and doc["delta"] == 1e-5
    assert doc["max_grad_norm"] == 1.0 and doc["world_size"] == 1
    assert PrivacyRecord.from_dict(doc).recompute_epsilon() == pytest.approx(doc["epsilon"])
    opacus_own = create_accountant("rdp")
    opacus_own.history = [(doc["noise_multiplier"], doc["sample_rate"], doc["steps"])]
    assert opacus_own.get_epsilon(delta=doc["delta"]) == pytest.approx(doc["epsilon"], rel=1e-9)


def test_artifact_is_plain_data_without_training_values(trained):
    path, _ = trained
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "privacy.json", "weights.pt"]
    state = torch.load(path / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    needles = [
        MARKER_ID.encode(),
        b"zz-marker",
        f"{MARKER_VALUE}".encode(),
        struct.pack("<d", MARKER_VALUE),
        struct.pack("<f", MARKER_VALUE),
    ]
    for f in path.iterdir():
        data = f.read_bytes()
        for needle in needles:
            assert needle not in data, (f.name, needle)
    config = json.loads((path / "config.json").read_text())
    assert config["schema"]["name"] == "small-test"
    assert sorted(config) == [
        "encoding",
        "format",
        "network",
        "schema",
        "schema_sha256",
        "training",
        "vocabulary_sha256",
    ]


def test_ledger_holds_the_charge_with_the_artifact_hash(trained, small_cohort):
    from medsynth.privacy.ledger import Ledger

    path, ledger_path = trained
    book = Ledger(ledger_path)
    assert book.spent(small_cohort.source.fingerprint) == pytest.approx(
        json.loads((path / "privacy.json").read_text())["epsilon"]
    )
    digest = model_sha256(path)
    assert [e.model_sha256 for e in book.events() if e.type == "artifact"] == [digest]
    assert json.loads((path / "privacy.json").read_text())["model_sha256"] == digest


def test_cap_refuses_before_training(small_cohort, tmp_path):
    from medsynth.privacy.ledger import Ledger

    ledger = tmp_path / "ledger.jsonl"
    Ledger.create(ledger).set_cap(small_cohort.source.fingerprint, 1.0)
    with pytest.raises(BudgetError) as err:
        train(
            small_cohort,
            epsilon=2.0,
            out=tmp_path / "m",
            ledger=ledger,
            config=fast_config(epochs=1),
            progress=False,
        )
    assert err.value.exit_code == 3
    assert not (tmp_path / "m").exists()
    assert Ledger(ledger).spent(small_cohort.source.fingerprint) == 0.0


def test_poisson_sampling_is_in_use(small_cohort):
    from medsynth.encoding.encode import encode_cohort
    from medsynth.encoding.vocabulary import build_vocabulary

    encoded = encode_cohort(build_vocabulary(small_cohort.schema), small_cohort)
    schedule = Schedule(steps_per_epoch=4, epochs=1)
    loader = private_loader(encoded, schedule, seed=5)
    assert isinstance(loader.batch_sampler, PoissonBatches)
    sizes = [len(tokens) for _ in range(25) for tokens, _ in loader]
    assert len(sizes) == 100 and len(set(sizes)) > 10  # batch sizes vary
    n = encoded.n
    assert abs(np.mean(sizes) - n / 4) < 4 * np.sqrt(n * 0.25 * 0.75 / len(sizes))
    # Two processes see disjoint shares whose union is one Poisson sample of the cohort.
    a = PoissonBatches(n, rate=0.25, steps=3, seed=9, rank=0, world_size=2)
    b = PoissonBatches(n, rate=0.25, steps=3, seed=9, rank=1, world_size=2)
    one = PoissonBatches(n, rate=0.25, steps=3, seed=9)
    for x, y, z in zip(a, b, one, strict=True):
        assert sorted(x + y) == z and not set(x) & set(y)


def test_schedule_defaults_follow_cohort_size():
    assert plan_schedule(TrainConfig(), 400) == Schedule(steps_per_epoch=4, epochs=20)
    assert plan_schedule(TrainConfig(), 10_000).steps_per_epoch == 20
    assert plan_schedule(TrainConfig(batch_size=100, epochs=3), 1000).steps == 30


def test_pretraining_default_follows_the_schema():
    """Simulated pretraining by default only where records repeat measurements."""
    longitudinal, flat = small_schema(3), small_schema(1)
    assert resolve_pretraining(TrainConfig(), longitudinal).pretrain_patients == 2000
    assert DEFAULT_PRETRAIN_PATIENTS == 2000
    assert resolve_pretraining(TrainConfig(), flat).pretrain_patients == 0
    for schema in (longitudinal, flat):  # an explicit number always wins
        assert resolve_pretraining(TrainConfig(pretrain_patients=7), schema).pretrain_patients == 7
        assert resolve_pretraining(TrainConfig(pretrain_patients=0), schema).pretrain_patients == 0


@pytest.mark.parametrize("per_channel", [1, 3])
def test_train_resolves_and_records_pretraining(per_channel, tmp_path, monkeypatch):
    """train() pretrains on the resolved number of simulated patients and stores it."""
    import medsynth.simulate

    real_simulate, asked = medsynth.simulate.simulate, []

    def spy(schema, n, **kwargs):
        asked.append(n)
        return real_simulate(schema, 20, **kwargs)  # the count is checked, 20 keep it quick

    monkeypatch.setattr(medsynth.simulate, "simulate", spy)
    cohort = real_simulate(small_schema(per_channel), 40, random_state=3)
    config = fast_config(pretrain_patients=None, epochs=1, batch_size=20, pretrain_epochs=1)
    path = train(
        cohort,
        epsilon=LARGE_EPSILON,
        out=tmp_path / "model",
        ledger=new_ledger(tmp_path / "ledger.jsonl"),
        config=config,
        progress=False,
    )
    expected = DEFAULT_PRETRAIN_PATIENTS if per_channel > 1 else 0
    assert asked == ([expected] if expected else [])
    stored = json.loads((path / "config.json").read_text())
    assert stored["training"]["pretrain_patients"] == expected


def test_model_scores_patients(trained, small_cohort):
    model = load_model(trained[0])
    ll = model.log_likelihood(small_cohort.subset(small_cohort.patient_ids[:7]))
    assert ll.shape == (7,) and np.isfinite(ll).all() and (ll < 0).all()


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(20, 50_000),
    batch=st.integers(1, 600),
    epochs=st.integers(1, 40),
    target=st.sampled_from([0.5, 1.0, 3.0, 8.0]),
    delta=st.sampled_from([1e-5, 1e-7, 1e-9]),
    accountant=st.sampled_from(["rdp", "gdp"]),
)
@example(n=20, batch=1, epochs=1, target=8.0, delta=1e-5, accountant="gdp")  # GDP's root range
def test_planned_epsilon_is_opacus_own_and_never_above_target(
    n, batch, epochs, target, delta, accountant
):
    """The record train() charges: Opacus' accountant, fed the record's own history, gives
    exactly its epsilon, and that epsilon is at most the target."""
    import warnings

    from opacus.accountants import create_accountant

    from medsynth.privacy.accounting import PrivacyParameterError
    from medsynth.privacy.planning import plan_privacy

    config = TrainConfig(epochs=epochs, batch_size=batch, accountant=accountant)
    schedule = plan_schedule(config, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GDP's "experimental" warning
        try:
            record = plan_privacy(epsilon=target, delta=delta, schedule=schedule, config=config)
        except PrivacyParameterError:
            assume(False)  # a target out of reach is refused before training, not missed
        own = create_accountant(accountant)
        own.history = [(record.noise_multiplier, schedule.sample_rate, schedule.steps)]
        assert record.epsilon == own.get_epsilon(delta=delta)
    assert record.epsilon <= target
    assert record.sample_rate == schedule.sample_rate and record.steps == schedule.steps
    assert record.delta == delta and record.accountant == accountant


def test_training_really_uses_poisson_batches(small_cohort, tmp_path, monkeypatch):
    """Spy on the DP-SGD steps train() takes: their batch sizes are those of Poisson sampling
    (they vary, average N*q), the loader is Poisson, and the step count is the one charged."""
    import medsynth.privacy.dpsgd as training

    sizes, samplers = [], []
    real_step, real_loader = training.dp_step, training.private_loader

    def spy_step(model, optimizer, tables, tokens, times, **kwargs):
        sizes.append(len(tokens))
        return real_step(model, optimizer, tables, tokens, times, **kwargs)

    def spy_loader(*args, **kwargs):
        loader = real_loader(*args, **kwargs)
        samplers.append(loader.batch_sampler)
        return loader

    monkeypatch.setattr(training, "dp_step", spy_step)
    monkeypatch.setattr(training, "private_loader", spy_loader)
    path = train(
        small_cohort,
        epsilon=LARGE_EPSILON,
        out=tmp_path / "m",
        ledger=new_ledger(tmp_path / "l.jsonl"),
        config=fast_config(epochs=6, batch_size=100),
        progress=False,
    )
    doc = json.loads((path / "privacy.json").read_text())
    n, q = small_cohort.n_patients, doc["sample_rate"]
    assert len(samplers) == 1 and isinstance(samplers[0], PoissonBatches)
    assert samplers[0].rate == q == 1 / 8 and samplers[0].n == n
    assert len(sizes) == doc["steps"] == 48
    assert len(set(sizes)) > 8  # a fixed-size batch would give one value
    # Mean within 4 standard errors of N*q; spread near the binomial's.
    assert abs(np.mean(sizes) - n * q) < 4 * np.sqrt(n * q * (1 - q) / len(sizes))
    assert 0.5 < np.std(sizes) / np.sqrt(n * q * (1 - q)) < 1.6
