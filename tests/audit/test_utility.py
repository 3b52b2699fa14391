"""Utility (train on synthetic, test on real): targets, features without the target, exact AUCs
where the label is a function of a feature, and the reasons it does not run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medsynth.audit.base import AuditInputs
from medsynth.audit.utility import (
    Target,
    UtilityEvaluator,
    auc_estimate,
    channel_summaries,
    class_problem,
    features,
    labels,
    resolve_target,
    roc_points,
)
from medsynth.cohort import Cohort
from medsynth.errors import DataError
from tests.helpers import make_cohort, random_cohort

MALE = {"attribute": "sex", "equals": "male"}


def sex_in_glucose(schema, n: int, seed: int, prefix: str, *, reversed_: bool = False) -> Cohort:
    """Men have glucose 130 to 199, women 60 to 119 (the other way round with ``reversed_``):
    sex is a deterministic function of one feature."""
    rng = np.random.default_rng(seed)
    rows, events = [], []
    for i, sex in enumerate(rng.choice(["female", "male"], n)):
        high = (sex == "male") != reversed_
        value = float(rng.integers(130, 200) if high else rng.integers(60, 120))
        rows.append((f"{prefix}{i}", sex, int(rng.integers(18, 91))))
        events.append((f"{prefix}{i}", 0.0, "glucose", value))
    return make_cohort(schema, rows, events)


def independent(schema, n: int, seed: int, prefix: str) -> Cohort:
    """Sex, age, glucose and HbA1c drawn independently of one another."""
    rng = np.random.default_rng(seed)
    rows = [
        (f"{prefix}{i}", rng.choice(["female", "male"]), int(rng.integers(18, 91)))
        for i in range(n)
    ]
    events = [(f"{prefix}{i}", 0.0, "glucose", float(rng.integers(60, 180))) for i in range(n)]
    events += [(f"{prefix}{i}", 0.0, "hba1c", rng.integers(40, 90) / 10) for i in range(n)]
    return make_cohort(schema, rows, events)


def utility(train, holdout, synth, schema, target, **params):
    return (
        UtilityEvaluator(AuditInputs(train, holdout, synth, schema), target=target, **params)
        .evaluate()
        .result()
    )


# -- targets, labels and features ---------------------------------------------------------------
def test_targets_round_trip_and_describe_themselves(tiny_schema):
    specs = [
        {"condition": "38341003"},
        {"channel": "hba1c", "statistic": "mean", "below": 5.7},
        {"channel": "glucose", "statistic": "last", "above": 126},
        {"attribute": "sex", "equals": "male"},
    ]
    for spec in specs:
        target = Target.from_dict(spec, tiny_schema)
        assert target.to_dict() == spec
        assert Target.from_dict(target.to_dict(), tiny_schema) == target
    described = [Target.from_dict(spec, tiny_schema).describe(tiny_schema) for spec in specs]
    assert described == [
        "has condition 38341003 (Hypertension)",
        "mean hba1c below 5.7",
        "last glucose above 126",
        "sex = male",
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"channel": "hba1c", "above": 1, "below": 2}, "give exactly one of 'above' or 'below'"),
        ({"channel": "hba1c"}, "give exactly one of 'above' or 'below'"),
        ({"channel": "hba1c", "above": 6, "statistic": "median"}, "a statistic in"),
        ({"attribute": "sex"}, "needs a schema attribute \\(sex, age\\) and 'equals'"),
        ({"attribute": "race", "equals": "x"}, "attribute 'race'"),
        ({"code": "38341003"}, "names no 'condition', 'channel' or 'attribute'"),
    ],
)
def test_bad_targets_say_what_is_wrong(tiny_schema, spec, message):
    with pytest.raises(DataError, match=message):
        Target.from_dict(spec, tiny_schema)


def test_an_empty_list_of_targets_is_refused(tiny_schema):
    with pytest.raises(DataError, match="the list of targets is empty"):
        resolve_target([], tiny_schema)


def test_channel_summaries_and_labels_by_hand(tiny_schema):
    c = make_cohort(
        tiny_schema,
        [("a", "male", 40), ("b", "female", 50)],
        [("a", 0, "glucose", 100), ("a", 10, "glucose", 120), ("a", 5, "glucose", 110)],
    )
    a, b = channel_summaries(c).loc["a"], channel_summaries(c).loc["b"]
    stats = ["glucose:count", "glucose:mean", "glucose:last", "glucose:min", "glucose:max"]
    assert a[stats].tolist() == [3, 110, 120, 100, 120]  # last: latest in time, not in the table
    assert b["glucose:count"] == 0 and b[stats[1:]].isna().all()
    mean_high = Target.from_dict(
        {"channel": "glucose", "statistic": "mean", "above": 105}, tiny_schema
    )
    last_low = Target.from_dict({"channel": "glucose", "below": 115}, tiny_schema)
    assert np.array_equal(labels(c, mean_high), [1.0, np.nan], equal_nan=True)
    assert np.array_equal(labels(c, last_low), [0.0, np.nan], equal_nan=True)


def test_features_leave_out_what_the_target_is_made_of(tiny_schema):
    c = make_cohort(tiny_schema, [("a", "male", 40)], [("a", 0, "glucose", 100)])
    stats = ("count", "mean", "last", "min", "max")
    by_channel = {ch: [f"{ch}:{s}" for s in stats] for ch in ("glucose", "hba1c")}
    x, categorical = features(c, Target.from_dict({"channel": "glucose", "above": 1}, tiny_schema))
    assert list(x.columns) == ["sex", "age", "condition:38341003", *by_channel["hba1c"]]
    assert categorical == [True] + [False] * 7
    x, _ = features(c, Target.from_dict({"condition": "38341003"}, tiny_schema))
    assert list(x.columns) == ["sex", "age", *by_channel["glucose"], *by_channel["hba1c"]]
    x, categorical = features(c, Target.from_dict(MALE, tiny_schema))
    assert list(x.columns)[:2] == ["age", "condition:38341003"] and not any(categorical)


# -- AUC ----------------------------------------------------------------------------------------
def test_auc_estimate_and_roc_points_exact():
    y, ranked = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])
    perfect = auc_estimate(y, ranked, n_boot=20, random_state=0)
    assert (perfect.value, perfect.ci_low, perfect.ci_high) == (1.0, 1.0, 1.0)
    mixed = auc_estimate(np.array([0, 1, 0, 1]), ranked, n_boot=0, random_state=0)
    assert (mixed.value, mixed.ci_low, mixed.ci_high, mixed.method) == (0.75, 0.75, 0.75, "none")
    points = roc_points(y, ranked, n_points=5)
    assert points == {"fpr": [0.0, 0.25, 0.5, 0.75, 1.0], "tpr": [1.0] * 5}
    assert class_problem(np.array([1] * 3 + [0] * 10), "real holdout") == (
        "the real holdout has 3 positive and 10 negative patients for the target; "
        "each class needs at least 5"
    )
    assert class_problem(np.array([1] * 5 + [0] * 5), "x") == ""


# -- evaluator ----------------------------------------------------------------------------------
def test_a_label_that_is_a_function_of_a_feature_gives_auc_one(tiny_schema):
    train, holdout, synth = (sex_in_glucose(tiny_schema, 60, k, p) for k, p in enumerate("ths"))
    r = utility(train, holdout, synth, tiny_schema, MALE, bootstrap=20, max_iter=20)
    assert r.status == "ok" and r.kind == "utility"
    for name in ("auc_synthetic", "auc_real"):
        e = r.metrics[name]
        assert (e.value, e.ci_low, e.ci_high) == (1.0, 1.0, 1.0), name
    assert r.metrics["auc_gap"] == 0.0 and r.metrics["auc_ratio"] == 1.0
    assert r.baseline == {"auc_synthetic": 0.5, "auc_real": 0.5}
    assert r.parameters["target_description"] == "sex = male"
    assert r.details["holdout_patients"] == 60
    assert r.details["holdout_positive_share"] == pytest.approx(
        (holdout.patients["sex"] == "male").mean()
    )


def test_a_synthetic_cohort_with_the_relation_reversed_gives_auc_zero(tiny_schema):
    train, holdout = (sex_in_glucose(tiny_schema, 60, k, p) for k, p in enumerate("th"))
    flipped = sex_in_glucose(tiny_schema, 60, 2, "s", reversed_=True)
    r = utility(train, holdout, flipped, tiny_schema, MALE, bootstrap=0, max_iter=20)
    assert r.metrics["auc_synthetic"].value == 0.0 and r.metrics["auc_real"].value == 1.0
    assert r.metrics["auc_gap"] == 1.0 and r.metrics["auc_ratio"] == 0.0


def test_a_copy_of_the_training_data_scores_as_training_on_real(tiny_schema):
    train = random_cohort(tiny_schema, 120, seed=31, prefix="t")
    holdout = random_cohort(tiny_schema, 80, seed=32, prefix="h")
    r = utility(train, holdout, train, tiny_schema, {"condition": "38341003"}, max_iter=20)
    assert r.metrics["auc_synthetic"] == r.metrics["auc_real"]  # same data, same seed
    assert r.metrics["auc_gap"] == 0.0 and r.metrics["auc_real"].value > 0.8


def test_the_target_never_leaks_into_the_features(tiny_schema):
    """Glucose is independent of everything else: with its own summaries among the features the
    AUC would be 1; without them nothing predicts it."""
    train, holdout, synth = (independent(tiny_schema, 100, 40 + k, p) for k, p in enumerate("ths"))
    target = {"channel": "glucose", "above": 120}
    r = utility(train, holdout, synth, tiny_schema, target, bootstrap=20, max_iter=20)
    assert r.status == "ok"
    assert r.metrics["auc_synthetic"].value < 0.75 and r.metrics["auc_real"].value < 0.75


def test_not_run_reasons_name_the_side_and_the_classes(tiny_schema):
    train, holdout = (sex_in_glucose(tiny_schema, 40, k, p) for k, p in enumerate("th"))
    women = train.subset(train.patients.loc[train.patients["sex"] == "female", "patient_id"])
    r = utility(train, holdout, women, tiny_schema, MALE)
    assert r.status == "not_run"
    assert r.reason.startswith("train on synthetic: the training side has 0 positive and")
    few = holdout.subset(holdout.patient_ids[:6])
    r = utility(train, few, train, tiny_schema, MALE)
    assert r.status == "not_run" and "real holdout (test side)" in r.reason
    no_glucose = make_cohort(tiny_schema, [(f"n{i}", "male", 40) for i in range(20)])
    target = {"channel": "glucose", "above": 120}
    r = utility(no_glucose, no_glucose, no_glucose, tiny_schema, target)
    assert r.status == "not_run" and "0 positive and 0 negative" in r.reason
    assert r.parameters["target"] == {"channel": "glucose", "statistic": "last", "above": 120}


def test_a_schema_without_the_target_attribute(tiny_schema):
    """One target the schema lacks is an error in the policy; a list of which none fits is a
    reason not to run, naming each alternative's problem."""
    c = random_cohort(tiny_schema, 30, seed=33)
    with pytest.raises(DataError, match="utility target attribute 'deceased'"):
        utility(c, c, c, tiny_schema, {"attribute": "deceased", "equals": True})
    neither = [{"attribute": "deceased", "equals": True}, {"channel": "ldl", "above": 1}]
    r = utility(c, c, c, tiny_schema, neither)
    assert r.status == "not_run" and r.reason.startswith("no utility target of the policy fits")
    assert "attribute 'deceased'" in r.reason and "channel 'ldl' is not in schema" in r.reason


def test_utility_learns_from_a_faithful_synthetic_cohort(tiny_schema):
    train = random_cohort(tiny_schema, 240, seed=4, prefix="t")
    holdout = random_cohort(tiny_schema, 160, seed=5, prefix="h")
    synth = random_cohort(tiny_schema, 240, seed=6, prefix="s")
    target = {"condition": "38341003"}
    r = (
        UtilityEvaluator(
            AuditInputs(train, holdout, synth, tiny_schema), target=target, bootstrap=50
        )
        .evaluate()
        .result()
    )
    auc = r.metrics["auc_synthetic"]
    assert r.status == "ok" and auc.value > 0.85 and auc.ci_low <= auc.value <= auc.ci_high
    assert abs(r.metrics["auc_gap"]) < 0.08
    # the same synthetic patients with their labels scrambled teach nothing
    rng = np.random.default_rng(0)
    ids = rng.choice(synth.patient_ids, size=len(synth.conditions), replace=False)
    noise = Cohort(
        tiny_schema,
        synth.patients,
        synth.events,
        pd.DataFrame({"patient_id": ids, "code": "38341003", "onset": 0.0}),
    )
    bad = (
        UtilityEvaluator(
            AuditInputs(train, holdout, noise, tiny_schema), target=target, bootstrap=50
        )
        .evaluate()
        .result()
    )
    assert bad.metrics["auc_synthetic"].value < 0.7 and bad.metrics["auc_gap"] > 0.2


def test_utility_targets_and_degenerate_labels(tiny_schema):
    c = make_cohort(
        tiny_schema,
        [("a", "male", 40), ("b", "female", 50), ("c", "male", 60)],
        [("a", 0, "hba1c", 7.0), ("b", 0, "hba1c", 5.0)],
    )
    band = Target.from_dict({"channel": "hba1c", "above": 6.5}, tiny_schema)
    assert np.array_equal(labels(c, band), [1.0, 0.0, np.nan], equal_nan=True)
    sex = Target.from_dict({"attribute": "sex", "equals": "male"}, tiny_schema)
    assert labels(c, sex).tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(DataError, match="valid: glucose, hba1c"):
        Target.from_dict({"channel": "ldl", "above": 1}, tiny_schema)
    first_known = resolve_target([{"condition": "K74.60"}, {"condition": "38341003"}], tiny_schema)
    assert first_known == Target(condition="38341003")
    with pytest.raises(DataError, match="'K74.60' is not in schema 'tiny'.*'x' is not an obj"):
        resolve_target([{"condition": "K74.60"}, "x"], tiny_schema)
    missing = UtilityEvaluator(AuditInputs(c, c, c, tiny_schema)).evaluate().result()
    assert missing.status == "not_run" and "names no utility target" in missing.reason
    none_fits = (
        UtilityEvaluator(AuditInputs(c, c, c, tiny_schema), target=[{"condition": "K74.60"}])
        .evaluate()
        .result()
    )
    assert none_fits.status == "not_run"
    assert none_fits.reason.startswith("no utility target of the policy fits schema 'tiny'")
    with pytest.raises(DataError, match="'K74.60' is not in schema"):
        UtilityEvaluator(
            AuditInputs(c, c, c, tiny_schema), target={"condition": "K74.60"}
        ).evaluate()
    r = (
        UtilityEvaluator(AuditInputs(c, c, c, tiny_schema), target={"condition": "38341003"})
        .evaluate()
        .result()
    )
    assert r.status == "not_run" and "0 positive" in r.reason
