"""Planning refuses targets no release may have: epsilon <= 0 or not finite, delta above 1/N."""

from __future__ import annotations

import math

import pytest

from medsynth.errors import MedsynthError
from medsynth.privacy.planning import check_targets


@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.nan, math.inf])
def test_epsilon_must_be_positive_and_finite(epsilon):
    with pytest.raises(MedsynthError, match="epsilon must be > 0"):
        check_targets(epsilon, 1e-5, 100)


def test_delta_above_one_over_n_is_refused_with_the_fix():
    check_targets(1.0, 1e-3, 100)  # 1e-3 < 1/100
    check_targets(1.0, 0.01, 100)  # exactly 1/N: allowed, though far from recommended
    with pytest.raises(MedsynthError, match=r"delta 0.5 is above 1/N = 0.01 for 100 patients") as e:
        check_targets(1.0, 0.5, 100)
    assert "e.g. 1e-05" in str(e.value)  # min(1e-5, 1/(10 N)), rounded down
    with pytest.raises(MedsynthError, match="above 1/N"):
        check_targets(3.0, 2e-4, 10_000)


def test_train_refuses_a_large_delta_before_charging(tiny_schema, tmp_path):
    from medsynth.pipeline.train import train
    from medsynth.privacy.ledger import Ledger
    from medsynth.simulate import simulate

    cohort = simulate(tiny_schema, 40, random_state=0)
    book = Ledger.create(tmp_path / "ledger.jsonl")
    with pytest.raises(MedsynthError, match="above 1/N"):
        train(cohort, epsilon=3.0, delta=0.5, out=tmp_path / "m", ledger=book, progress=False)
    assert book.spent(cohort.source.fingerprint) == 0.0 and not (tmp_path / "m").exists()
