"""Accounting: epsilon equals Opacus' own accountants; calibrated noise meets its target."""

from __future__ import annotations

import json
import warnings

import opacus
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opacus.accountants import GaussianAccountant, PRVAccountant, RDPAccountant

from medsynth.core.canonical import canonical_json
from medsynth.errors import DataError, ValidationError
from medsynth.privacy.accounting import (
    DpSgdEvent,
    PrivacyParameterError,
    PrivacyRecord,
    PrivacyRecordError,
    calibrate_noise,
    compute_epsilon,
    default_delta,
)

OPACUS = {"rdp": RDPAccountant, "prv": PRVAccountant, "gdp": GaussianAccountant}


def opacus_epsilon(name: str, q: float, sigma: float, steps: int, delta: float) -> float:
    """Epsilon from an Opacus accountant stepped ``steps`` times, as a training loop does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GDP's "experimental" warning
        acc = OPACUS[name]()
        for _ in range(steps):
            acc.step(noise_multiplier=sigma, sample_rate=q)
        return acc.get_epsilon(delta=delta)


def eps(name: str, q: float, sigma: float, steps: int, delta: float) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        event = DpSgdEvent(sample_rate=q, noise_multiplier=sigma, steps=steps)
        return compute_epsilon(event, delta=delta, accountant=name)


@pytest.mark.parametrize("name", ["rdp", "prv", "gdp"])
@pytest.mark.parametrize(
    ("q", "sigma", "steps", "delta"),
    [(0.01, 1.1, 100, 1e-5), (0.25, 2.5, 40, 1e-6), (1.0, 8.0, 3, 1e-5)],
)
def test_epsilon_equals_opacus_accountant_exactly(name, q, sigma, steps, delta):
    assert eps(name, q, sigma, steps, delta) == opacus_epsilon(name, q, sigma, steps, delta)


def test_pinned_epsilons():
    # Values of Opacus 1.6 for (q=0.01, sigma=1.1, T=100, delta=1e-5).
    assert eps("rdp", 0.01, 1.1, 100, 1e-5) == pytest.approx(0.9560910987474418, rel=1e-9)
    assert eps("prv", 0.01, 1.1, 100, 1e-5) == pytest.approx(0.559833931293304, rel=1e-6)
    assert eps("gdp", 0.01, 1.1, 100, 1e-5) == pytest.approx(0.39055287553366547, rel=1e-9)


def test_more_noise_less_epsilon_more_steps_more_epsilon():
    assert eps("rdp", 0.05, 2.0, 100, 1e-5) < eps("rdp", 0.05, 1.0, 100, 1e-5)
    assert eps("rdp", 0.05, 1.0, 200, 1e-5) > eps("rdp", 0.05, 1.0, 100, 1e-5)


def _check_calibration(name, q, steps, target, delta):
    sigma = calibrate_noise(
        target_epsilon=target, delta=delta, sample_rate=q, steps=steps, accountant=name
    )
    spent = (
        opacus_epsilon(name, q, sigma, steps, delta)
        if steps <= 50
        else eps(name, q, sigma, steps, delta)
    )
    assert spent <= target  # never above the target
    assert spent >= 0.97 * target  # and not wastefully below it
    assert eps(name, q, sigma * 0.99, steps, delta) > target  # 1 % less noise is too little


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    q=st.sampled_from([0.004, 0.01, 0.05, 0.2, 1.0]),
    steps=st.sampled_from([1, 10, 50, 400]),
    target=st.sampled_from([0.3, 1.0, 3.0, 8.0]),
    delta=st.sampled_from([1e-5, 1e-7]),
)
def test_calibrated_noise_meets_target_rdp(q, steps, target, delta):
    _check_calibration("rdp", q, steps, target, delta)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    q=st.sampled_from([0.01, 0.1]),
    steps=st.sampled_from([10, 100]),
    target=st.sampled_from([1.0, 3.0]),
)
def test_calibrated_noise_meets_target_prv(q, steps, target):
    _check_calibration("prv", q, steps, target, 1e-5)


def test_calibration_refuses_unreachable_target():
    with pytest.raises(PrivacyParameterError, match="out of reach"):
        calibrate_noise(
            target_epsilon=1e-6, delta=1e-5, sample_rate=1.0, steps=1000, accountant="rdp"
        )


@pytest.mark.parametrize(
    ("n", "delta"),
    [
        (1, 1e-5),
        (500, 1e-5),
        (10_000, 1e-5),
        (10_001, 1e-6),
        (20_000, 1e-6),
        (100_000, 1e-6),
        (100_001, 1e-7),
        (3_000_000, 1e-8),
    ],
)
def test_default_delta(n, delta):
    assert default_delta(n) == delta
    assert default_delta(n) <= 1 / (10 * n)


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "100"])
def test_default_delta_refuses_non_counts(n):
    with pytest.raises(PrivacyParameterError, match="n_patients"):
        default_delta(n)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"sample_rate": 0.0}, "sample_rate"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"noise_multiplier": 0.0}, "noise_multiplier"),
        ({"steps": 0}, "steps"),
        ({"steps": True}, "steps"),
        ({"steps": 2.0}, "steps"),
    ],
)
def test_event_validation(kwargs, word):
    args = {"sample_rate": 0.1, "noise_multiplier": 1.0, "steps": 10, **kwargs}
    with pytest.raises(PrivacyParameterError, match=word):
        DpSgdEvent(**args)


def test_compute_epsilon_refuses_bad_accountant_and_delta():
    event = DpSgdEvent(sample_rate=0.1, noise_multiplier=1.0, steps=10)
    with pytest.raises(PrivacyParameterError, match="prv, rdp, gdp"):
        compute_epsilon(event, delta=1e-5, accountant="moments")
    with pytest.raises(PrivacyParameterError, match="delta"):
        compute_epsilon(event, delta=0.0, accountant="rdp")


# -- the privacy record ------------------------------------------------------------------------
def make_record(**overrides) -> PrivacyRecord:
    q, steps, delta = 0.05, 60, 1e-5
    sigma = calibrate_noise(
        target_epsilon=2.0, delta=delta, sample_rate=q, steps=steps, accountant="rdp"
    )
    fields = dict(
        accountant="rdp",
        sample_rate=q,
        noise_multiplier=sigma,
        max_grad_norm=1.0,
        steps=steps,
        delta=delta,
        epsilon=eps("rdp", q, sigma, steps, delta),
        target_epsilon=2.0,
        opacus_version=opacus.__version__,
    )
    return PrivacyRecord(**{**fields, **overrides})


def test_record_round_trip_is_canonical(tmp_path):
    rec = make_record()
    path = rec.save(tmp_path / "model" / "privacy.json")
    raw = path.read_bytes()
    assert raw == canonical_json(rec.to_dict())
    assert list(json.loads(raw)) == sorted(json.loads(raw))
    again = PrivacyRecord.load(path)
    assert again == rec
    assert again.to_dict()["composition"] == "basic"
    assert again.recompute_epsilon() == rec.epsilon
    assert again.verify() == rec.epsilon


def test_record_independent_recomputation(tmp_path):
    """What docs/privacy.md tells a reader to do, with Opacus only."""
    rec = make_record()
    data = json.loads(rec.save(tmp_path / "privacy.json").read_text())
    acc = RDPAccountant()
    acc.history = [(data["noise_multiplier"], data["sample_rate"], data["steps"])]
    assert acc.get_epsilon(delta=data["delta"]) == data["epsilon"]


def test_verify_detects_understated_epsilon_and_target_overrun():
    rec = make_record()
    with pytest.raises(PrivacyRecordError, match="understates"):
        make_record(epsilon=rec.epsilon / 2).verify()
    with pytest.raises(PrivacyRecordError, match="above its target"):
        make_record(target_epsilon=rec.epsilon / 2).verify()


def test_from_dict_collects_every_problem():
    data = make_record().to_dict()
    data["extra"] = 1
    del data["delta"]
    data["steps"] = "60"
    with pytest.raises(ValidationError) as info:
        PrivacyRecord.from_dict(data)
    wheres = sorted(p.where for p in info.value.problems)
    assert wheres == ["$.delta", "$.extra", "$.steps"]


def test_record_value_checks():
    with pytest.raises(ValidationError) as info:
        make_record(poisson_sampling=False, unit="record", sample_rate=2.0)
    wheres = sorted(p.where for p in info.value.problems)
    assert wheres == ["$.poisson_sampling", "$.sample_rate", "$.unit"]


def test_record_accepts_json_integers_as_floats():
    rec = PrivacyRecord.from_dict({**make_record().to_dict(), "sample_rate": 1, "delta": 1e-5})
    assert rec.sample_rate == 1.0 and isinstance(rec.sample_rate, float)


def test_load_refuses_non_json(tmp_path):
    path = tmp_path / "privacy.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="privacy.json"):
        PrivacyRecord.load(path)
