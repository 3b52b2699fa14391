"""Intervals, ROC figures and the empirical epsilon bound of medsynth.audit.stats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from medsynth.audit.base import Estimate
from medsynth.audit.stats import (
    auc_estimate,
    clopper_pearson,
    difference_estimate,
    empirical_epsilon,
    epsilon_bounds,
    proportion_estimate,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
    wilson,
)


# -- exact values -------------------------------------------------------------------------------
def test_clopper_pearson_closed_forms():
    # k = 0 and k = n have closed forms: (0, 1 - (a/2)^(1/n)) and ((a/2)^(1/n), 1)
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10)))
    assert clopper_pearson(10, 10) == (pytest.approx(0.025 ** (1 / 10)), 1.0)
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.18708, abs=1e-5) and hi == pytest.approx(0.81292, abs=1e-5)
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson(11, 10)


def test_wilson_and_proportion_estimate():
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.23659, abs=1e-5) and hi == pytest.approx(0.76341, abs=1e-5)
    est = proportion_estimate(3, 12)
    assert est.value == 0.25 and est.method == "clopper-pearson" and est.ci_low < 0.25 < est.ci_high
    assert math.isnan(proportion_estimate(0, 0).value)


def test_difference_estimate_values():
    d = difference_estimate(30, 100, 10, 100)
    assert d.value == pytest.approx(0.2) and 0.08 < d.ci_low < 0.2 < d.ci_high < 0.32
    same = difference_estimate(50, 100, 50, 100)
    assert same.value == 0 and same.ci_low < 0 < same.ci_high
    assert difference_estimate(100, 100, 0, 100).ci_low > 0.9
    assert math.isnan(difference_estimate(1, 0, 1, 5).value)


def test_auc_exact_values_and_agreement_with_sklearn():
    from sklearn.metrics import roc_auc_score

    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1.0], [1.0]) == 0.5
    assert roc_auc([2, 1], [1, 0]) == pytest.approx(0.875)
    assert math.isnan(roc_auc([], [1.0]))
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, 300).round(1), rng.normal(0, 1, 200).round(1)  # with ties
    labels = np.r_[np.ones(300), np.zeros(200)]
    assert roc_auc(pos, neg) == pytest.approx(roc_auc_score(labels, np.r_[pos, neg]))
    with pytest.raises(ValueError, match="finite"):
        roc_auc([np.nan], [1.0])


def test_roc_curve_and_tpr_at_fpr():
    fpr, tpr, thr = roc_curve([4, 3, 2], [2, 1])
    assert fpr.tolist() == [0, 0, 0, 0.5, 1] and tpr.tolist() == [0, 1 / 3, 2 / 3, 1, 1]
    assert thr[0] == np.inf and thr[1:].tolist() == [4, 3, 2, 1]
    perfect = tpr_at_fpr(np.arange(10, 20), np.arange(10), 0.01)
    assert perfect.value == 1.0 and perfect.ci_high == 1.0
    neg = [3.5, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert tpr_at_fpr([4, 3, 2, 1], neg, 0.10).value == 1.0  # one false positive allowed
    assert tpr_at_fpr([4, 3, 2, 1], neg, 0.0).value == 0.25
    assert tpr_at_fpr([4, 3, 2, 1], neg, 0.0).ci_low == pytest.approx(clopper_pearson(1, 4)[0])


def test_roc_curve_and_auc_with_ties_by_hand():
    # members 3, 2, 2 and non-members 2, 1: at t = 3 one member flagged; at t = 2 all members
    # and one non-member; at t = 1 everyone. Of the 6 pairs, 4 ordered right and 2 tied: 5/6.
    fpr, tpr, thr = roc_curve([3, 2, 2], [2, 1])
    assert fpr.tolist() == [0, 0, 0.5, 1] and tpr.tolist() == [0, 1 / 3, 1, 1]
    assert thr.tolist() == [np.inf, 3, 2, 1]
    assert roc_auc([3, 2, 2], [2, 1]) == pytest.approx(5 / 6)
    assert tpr_at_fpr([3, 2, 2], [2, 1], 0.0).value == pytest.approx(1 / 3)
    # one side empty: its rate is 0 at every threshold; nothing at all: the single (0, 0) point
    fpr, tpr, thr = roc_curve([], [2, 1])
    assert fpr.tolist() == [0, 0.5, 1] and tpr.tolist() == [0, 0, 0]
    fpr, tpr, thr = roc_curve([], [])
    assert fpr.tolist() == [0] and tpr.tolist() == [0] and thr.tolist() == [np.inf]


# -- coverage on simulated attackers with known success rates -----------------------------------
def test_clopper_pearson_covers_known_rates():
    rng = np.random.default_rng(1)
    for p, n in ((0.05, 40), (0.3, 60), (0.5, 25), (0.9, 80)):
        ks = rng.binomial(n, p, 300)
        covered = np.mean([lo <= p <= hi for lo, hi in (clopper_pearson(k, n) for k in ks)])
        assert covered >= 0.92, (p, n, covered)


def test_difference_interval_covers_known_risk():
    rng = np.random.default_rng(2)
    for p1, p2, n1, n2 in ((0.3, 0.2, 80, 120), (0.9, 0.9, 150, 150), (0.6, 0.1, 40, 60)):
        hits = 0
        for _ in range(300):
            d = difference_estimate(rng.binomial(n1, p1), n1, rng.binomial(n2, p2), n2)
            hits += d.ci_low <= p1 - p2 <= d.ci_high
        assert hits / 300 >= 0.90, (p1, p2, hits)


def test_auc_bootstrap_interval_covers_the_true_auc():
    rng = np.random.default_rng(3)
    shift = 1.0
    truth = float(norm.cdf(shift / math.sqrt(2)))  # AUC of N(shift, 1) against N(0, 1)
    hits = 0
    reps = 80
    for r in range(reps):
        est = auc_estimate(
            rng.normal(shift, 1, 60), rng.normal(0, 1, 60), n_bootstrap=200, random_state=r
        )
        hits += est.ci_low <= truth <= est.ci_high
    assert hits / reps >= 0.85


# -- empirical epsilon ---------------------------------------------------------------------------
def test_epsilon_bounds_closed_form_for_a_perfect_test():
    n = 500
    point, lower, upper = epsilon_bounds(n, n, 0, n, delta=0.0)
    edge = 0.025 ** (1 / n)  # one-sided 97.5 % Clopper-Pearson ends of 500/500 and 0/500
    assert lower == pytest.approx(math.log(edge / (1 - edge)))
    assert upper == math.inf and lower < point
    assert epsilon_bounds(250, 500, 250, 500, delta=1e-5)[1] == 0.0


def test_empirical_epsilon_is_zero_for_random_scores_and_large_for_separation():
    rng = np.random.default_rng(4)
    chance, _ = empirical_epsilon(rng.random(1000), rng.random(1000), delta=1e-5)
    assert chance.ci_low < 0.2
    perfect, rates = empirical_epsilon(np.arange(1000.0) + 2000, np.arange(1000.0), delta=1e-5)
    assert perfect.ci_low > 4.5 and rates["true_positive_rate"] >= 0.99
    assert rates["false_positive_rate"] == 0.0 and rates["members"] == 500


def test_empirical_epsilon_never_exceeds_a_known_epsilon_by_much():
    """Randomised response with epsilon = 1: each member says 'in' with probability
    e / (1 + e), each non-member with 1 / (1 + e); the bound must stay below 1."""
    rng = np.random.default_rng(5)
    q = math.e / (1 + math.e)
    bounds = []
    for r in range(40):
        pos = (rng.random(2000) < q).astype(float)
        neg = (rng.random(2000) < 1 - q).astype(float)
        bounds.append(empirical_epsilon(pos, neg, delta=0.0, random_state=r)[0].ci_low)
    assert np.mean(np.array(bounds) <= 1.0) >= 0.9
    assert np.median(bounds) > 0.6  # and the attack does find most of it


def test_empirical_epsilon_needs_two_scores_a_side():
    est, rates = empirical_epsilon([1.0], [0.0, 1.0], delta=1e-5)
    assert math.isnan(est.value) and rates == {}


def test_estimate_round_trips_through_its_dict():
    e = Estimate(0.7, math.nan, 0.8, 0.9, "clopper-pearson")
    doc = e.to_dict()
    assert doc["ci_low"] is None
    back = Estimate.from_dict(doc)
    assert (back.value, back.ci_high, back.confidence, back.method) == (0.7, 0.8, 0.9, e.method)
    assert math.isnan(back.ci_low)
