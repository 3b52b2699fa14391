"""Exact answers of the two tests that count what lies beyond chance: distinctive copies
(binomial) and members flagged at a low FPR (negative hypergeometric)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medsynth.audit.reidentification import distinctive_matches
from medsynth.audit.stats import copies_beyond_chance, members_beyond_chance


# -- copies ---------------------------------------------------------------------------------------
def test_five_copies_and_no_holdout_match_are_one_copy_at_least():
    # P(Bin(5, 1/2) = 5) = 1/32 <= 0.05 rejects c = 0; P(Bin(4, 1/2) = 4) = 1/16 keeps c = 1
    est = copies_beyond_chance(5, 0, 0.5, confidence=0.9)
    assert (est.value, est.ci_low, est.ci_high) == (5.0, 1.0, 5.0)
    assert est.confidence == 0.9 and est.method == "exact binomial test inversion"
    assert copies_beyond_chance(4, 0, 0.5, confidence=0.9).ci_low == 0.0  # 1/16 > 0.05
    assert copies_beyond_chance(5, 0, 0.5, confidence=0.95).ci_low == 0.0  # 1/32 > 0.025


def test_copies_interval_by_hand():
    # (8, 1): P(Bin(9, .5) >= 8) = 10/512, P(Bin(8, .5) >= 7) = 9/256, P(Bin(7, .5) >= 6) = 8/128
    est = copies_beyond_chance(8, 1, 0.5, confidence=0.9)
    assert (est.value, est.ci_low, est.ci_high) == (7.0, 2.0, 8.0)
    # a training share of 1/4: P(Bin(3, 1/4) = 3) = 1/64 rejects, P(Bin(2, 1/4) = 2) = 1/16 not
    assert copies_beyond_chance(3, 0, 0.25, confidence=0.9).ci_low == 1.0
    # fewer training matches than chance: no copy; P(Bin(10, .5) <= 2) = 56/1024 > 0.05 keeps
    # c = 0, P(Bin(9, .5) <= 1) = 10/512 rejects c = 1
    low = copies_beyond_chance(2, 8, 0.5, confidence=0.9)
    assert (low.value, low.ci_low, low.ci_high) == (0.0, 0.0, 0.0)
    even = copies_beyond_chance(10, 10, 0.5, confidence=0.9)
    assert even.value == 0.0 and even.ci_low == 0.0 and even.ci_high > 0
    assert copies_beyond_chance(0, 0, 0.5).ci_high == 0.0


def test_copies_refuse_bad_arguments():
    with pytest.raises(ValueError, match="p_train"):
        copies_beyond_chance(1, 1, 1.0)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        copies_beyond_chance(-1, 1, 0.5)


def test_distinctive_matches_count_content_shared_by_one_real_record():
    train = np.array(["a", "b", "c", "c"], dtype=object)  # c: two training patients share it
    holdout = np.array(["d", "e", "b"], dtype=object)  # b is in both: common, not distinctive
    synthetic = np.array(["a", "a", "b", "c", "d", "x"], dtype=object)
    found = distinctive_matches(synthetic, train, holdout)
    assert found == {"train": 1, "holdout": 1, "common": 2, "synthetic_equal_to_train": 4}


# -- members at a low FPR ----------------------------------------------------------------------
def test_members_beyond_chance_by_hand():
    # FPR 0: the threshold is the top non-member (5); 3 members above it. Null: the members
    # drawn before the first non-member of 8 shuffled scores; P(X >= 3) = 4/8 * 3/7 * 2/6 = 1/14
    est, counts = members_beyond_chance([10, 9, 8, 1], [5, 4, 3, 2], fpr=0.0)
    assert counts == {
        "members_flagged": 3,
        "non_members_flagged": 0,
        "members_flagged_by_chance": 0.8,
        "members": 4,
        "non_members": 4,
    }
    assert est.value == pytest.approx((3 - 0.8) / 4) and est.ci_low == 0.0  # 1/14 > 0.025
    assert est.ci_high == 0.75  # c = 3 leaves 1 member: P(X' <= 0) = 4/5
    # 5 members above 4 non-members: P(X >= 5) = 1/126, then 1/70 with one member removed,
    # then 3/7 * 2/6 * 1/5 = 1/35 > 0.025: at least 2 of the 5 members recognised for sure
    sure, _ = members_beyond_chance([9, 8, 7, 6, 5], [1, 2, 3, 4], fpr=0.0)
    assert sure.ci_low == pytest.approx(2 / 5)


def test_members_beyond_chance_threshold_ties_and_empty_inputs():
    neg = np.arange(100.0)  # fpr 1 %: one non-member allowed, the threshold is the 2nd highest
    _, counts = members_beyond_chance([98.0, 98.5, 99.5], neg, fpr=0.01)
    assert counts["members_flagged"] == 2 and counts["non_members_flagged"] == 1
    assert counts["members_flagged_by_chance"] == pytest.approx(2 * 3 / 101)
    tied, counts = members_beyond_chance([5.0, 5.0], [5.0, 1.0], fpr=0.0)
    assert counts["members_flagged"] == 0 and tied.value == 0.0  # ties are not flagged
    nan, _ = members_beyond_chance([], [1.0], fpr=0.01)
    assert math.isnan(nan.value)


def test_members_beyond_chance_false_alarms_stay_at_the_level():
    rng = np.random.default_rng(0)
    alarms = sum(
        members_beyond_chance(rng.random(200), rng.random(200), 0.01)[0].ci_low > 0
        for _ in range(400)
    )
    assert alarms / 400 <= 0.04  # one-sided 2.5 % test (discrete: a little under)
