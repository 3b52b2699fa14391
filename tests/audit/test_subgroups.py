"""Subgroup fidelity: groups from public edges, exact share ratios and their interval, a group
distorted or left out by a known amount, small groups counted apart, and not-run reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medsynth.audit.base import AuditInputs
from medsynth.audit.subgroups import (
    Group,
    SubgroupEvaluator,
    default_groups,
    group_auc,
    share_upper,
)
from medsynth.cohort import Cohort
from medsynth.errors import DataError
from medsynth.schema import parse_schema
from tests.helpers import make_cohort, minimal_doc, random_cohort


def by_sex(schema, women: int, men: int, prefix: str, *, glucose: float = 100.0, sick=False):
    """Women aged 30 and men aged 50, each with one glucose value (100 for men, ``glucose`` for
    women); with ``sick`` every woman has hypertension."""
    rows = [(f"{prefix}w{i}", "female", 30) for i in range(women)]
    rows += [(f"{prefix}m{i}", "male", 50) for i in range(men)]
    events = [(pid, 0.0, "glucose", glucose if sex == "female" else 100.0) for pid, sex, _ in rows]
    conditions = [(pid, "38341003") for pid, sex, _ in rows if sick and sex == "female"]
    return make_cohort(schema, rows, events, conditions)


def subgroups(train, holdout, synth, schema, **params):
    result = SubgroupEvaluator(AuditInputs(train, holdout, synth, schema), **params).evaluate()
    return result.result()


def rows_of(result) -> dict[str, dict]:
    return {row["group"]: row for row in result.details["groups"]}


# -- groups -------------------------------------------------------------------------------------
def test_groups_come_from_the_schema_and_public_age_edges(tiny_schema):
    labels = [g.label for g in default_groups(tiny_schema, age_edges=(30, 60))]
    assert labels == ["sex: female", "sex: male", "age: 18-29", "age: 30-59", "age: 60+"]
    outside = [g.label for g in default_groups(tiny_schema, age_edges=(10, 100))]
    assert outside == ["sex: female", "sex: male", "age: 18+"]  # edges beyond the bounds drop
    assert [g.label for g in default_groups(tiny_schema, attributes=("sex",))] == [
        "sex: female",
        "sex: male",
    ]


def test_group_masks_close_below_and_skip_missing_values():
    patients = pd.DataFrame(
        {"age": [39.9, 40, 64.9, 65, np.nan], "sex": ["male", None, "female", "male", "female"]}
    )
    band = Group("age", "age: 40-64", lo=40, hi=65)
    assert band.mask(patients).tolist() == [False, True, True, False, False]
    women = Group("sex", "sex: female", value="female")
    assert women.mask(patients).tolist() == [False, False, True, False, True]
    assert Group("age", "age: 65+", lo=65).mask(patients).tolist() == [False] * 3 + [True, False]


def test_share_upper_is_the_clopper_pearson_bound():
    assert share_upper(0, 10) == pytest.approx(1 - 0.025 ** (1 / 10))  # closed form for k = 0
    assert share_upper(10, 10) == 1.0
    assert 5 / 40 < share_upper(5, 40) < share_upper(5, 20)


def test_group_auc_over_the_holdout_patients_of_a_group():
    y = np.array([0] * 5 + [1] * 5 + [0, 1])
    score = np.array([0.1] * 5 + [0.9] * 5 + [0.9, 0.1])
    inside = np.array([True] * 10 + [False] * 2)
    assert group_auc((y, score), inside) == 1.0
    assert group_auc((y, score), np.ones(12, dtype=bool)) == pytest.approx(5 / 6)
    assert group_auc((y, score), np.array([True] * 8 + [False] * 4)) is None  # 3 positives
    assert group_auc(None, inside) is None


# -- figures ------------------------------------------------------------------------------------
def test_a_copy_of_the_training_data_flags_nothing(tiny_schema):
    train = random_cohort(tiny_schema, 120, seed=51, prefix="t")
    holdout = random_cohort(tiny_schema, 120, seed=52, prefix="h")
    target = {"condition": "38341003"}
    r = subgroups(train, holdout, train, tiny_schema, min_group_size=10, target=target)
    assert r.status == "ok" and r.kind == "fidelity"
    for row in r.details["groups"]:
        if row["n_train"]:
            assert row["share_ratio"] == 1.0 and row["tvd"] == 0.0, row["group"]
            assert row["condition_diff"] == 0.0 and row["flags"] == [], row["group"]
        assert row["auc_synthetic"] == row["auc_real"], row["group"]  # the same classifier
    assert rows_of(r)["sex: female"]["auc_real"] > 0.7  # glucose tells hypertension apart
    assert r.metrics["flagged_groups"] == 0 and r.metrics["max_group_tvd"] == 0.0
    assert r.baseline["max_group_tvd"] > 0  # fresh patients differ by chance


def test_share_ratio_and_its_interval_by_hand(tiny_schema):
    """Half the real share: flagged only when the synthetic sample is large enough to be sure."""
    train = by_sex(tiny_schema, 10, 30, "t")
    few = subgroups(train, train, by_sex(tiny_schema, 5, 35, "s"), tiny_schema, min_group_size=5)
    women = rows_of(few)["sex: female"]
    assert women["share_ratio"] == 0.5 and women["share_train"] == 0.25
    assert women["share_ratio_ci_high"] == pytest.approx(share_upper(5, 40) / 0.25)
    assert women["share_ratio_ci_high"] > 1 and women["flags"] == []  # 5 of 40 could be luck
    train = by_sex(tiny_schema, 100, 300, "t")
    many = subgroups(train, train, by_sex(tiny_schema, 20, 380, "s"), tiny_schema)
    women = rows_of(many)["sex: female"]
    assert women["share_ratio"] == pytest.approx(0.2)
    assert women["share_ratio_ci_high"] == pytest.approx(share_upper(20, 400) / 0.25)
    assert women["flags"] == ["under-represented"] and many.metrics["under_represented_groups"] == 2
    assert many.metrics["min_share_ratio"] == pytest.approx(0.2)  # the women, aged 30 all


def test_a_known_distortion_of_one_group_gives_known_figures(tiny_schema):
    train, holdout = by_sex(tiny_schema, 40, 40, "t"), by_sex(tiny_schema, 40, 40, "h")
    bent = by_sex(tiny_schema, 40, 40, "s", glucose=500.0, sick=True)
    r = subgroups(train, holdout, bent, tiny_schema)
    women, men = rows_of(r)["sex: female"], rows_of(r)["sex: male"]
    # mean over age (same: 0) and glucose (another bin: 1); no HbA1c on either side
    assert women["tvd"] == 0.5 and women["tvd_baseline"] == 0.0 and women["tvd_excess"] == 0.5
    assert women["condition_diff"] == 1.0 and women["flags"] == ["distorted"]
    assert women["events_per_patient_tvd"] == 0.0 and women["gap_tvd"] is None  # one visit
    assert men["tvd"] == 0.0 and men["condition_diff"] == 0.0 and men["flags"] == []
    assert r.metrics["distorted_groups"] == 2  # the women and the 18-39 band, the same people
    assert r.metrics["max_group_tvd_excess"] == 0.5


def test_small_groups_are_counted_apart(tiny_schema):
    train = by_sex(tiny_schema, 10, 190, "t")
    r = subgroups(train, train, by_sex(tiny_schema, 0, 190, "s"), tiny_schema)
    women = rows_of(r)["sex: female"]
    assert women["small"] and women["flags"] == ["under-represented"]
    assert women["share_ratio_ci_high"] == pytest.approx(share_upper(0, 190) / 0.05)
    assert r.metrics["flagged_groups"] == 0 and r.metrics["flagged_small_groups"] == 2
    assert r.metrics["groups_compared"] == 2 and r.metrics["small_groups"] == 3  # 65+ is empty
    assert rows_of(r)["age: 65+"]["share_ratio"] is None


# -- schemas without grouping attributes ---------------------------------------------------------
def state_schema():
    doc = minimal_doc()
    doc["attributes"] = [
        {
            "name": "state",
            "type": "categorical",
            "fhir": "Patient.address.state",
            "categories": ["CA", "NY"],
        },
        {"name": "deceased", "type": "boolean", "fhir": "Patient.deceased"},
    ]
    return parse_schema(doc)


def test_not_run_without_a_grouping_attribute_and_named_attributes_instead():
    schema = state_schema()
    patients = pd.DataFrame(
        {"patient_id": [f"p{i}" for i in range(6)], "state": ["CA", "NY"] * 3, "deceased": False}
    )
    c = Cohort.conform(schema, patients)[0]
    assert default_groups(schema) == []
    r = subgroups(c, c, c, schema)
    assert r.status == "not_run" and r.reason == (
        "the schema has no sex, age, race or ethnicity attribute to group by; "
        "name grouping attributes in the policy"
    )
    named = subgroups(c, c, c, schema, attributes=("state",))
    assert [row["group"] for row in named.details["groups"]] == ["state: CA", "state: NY"]
    assert named.parameters["attributes"] == ["state"]
    with pytest.raises(DataError, match="subgroup attributes \\['sex'\\] are not in schema"):
        subgroups(c, c, c, schema, attributes=("sex",))


def test_not_run_on_a_single_patient(tiny_schema):
    one = make_cohort(tiny_schema, [("a", "male", 40)])
    r = subgroups(one, one, one, tiny_schema)
    assert r.status == "not_run" and r.reason == "needs at least 2 training and synthetic patients"


def test_subgroup_flag_fires_when_a_group_is_removed(tiny_schema):
    train = random_cohort(tiny_schema, 200, seed=7, prefix="t")
    holdout = random_cohort(tiny_schema, 200, seed=9, prefix="h")
    synth = random_cohort(tiny_schema, 200, seed=8, prefix="s")
    labels_ = [g.label for g in default_groups(tiny_schema)]
    assert labels_ == ["sex: female", "sex: male", "age: 18-39", "age: 40-64", "age: 65+"]
    ok = (
        SubgroupEvaluator(AuditInputs(train, holdout, synth, tiny_schema), min_group_size=20)
        .evaluate()
        .result()
    )
    assert ok.metrics["flagged_groups"] == 0
    men = synth.patients.loc[synth.patients["sex"] == "male", "patient_id"]
    no_women = synth.subset(men)
    r = (
        SubgroupEvaluator(AuditInputs(train, holdout, no_women, tiny_schema), min_group_size=20)
        .evaluate()
        .result()
    )
    rows = {row["group"]: row for row in r.details["groups"]}
    assert rows["sex: female"]["n_synthetic"] == 0 and rows["sex: female"]["share_ratio"] == 0.0
    assert rows["sex: female"]["flags"] == ["under-represented"]
    assert rows["sex: female"]["n_train"] == int((train.patients["sex"] == "female").sum())
    assert r.metrics["under_represented_groups"] == 1 and r.metrics["min_share_ratio"] == 0.0
    assert rows["sex: female"]["events_per_patient_tvd"] is None  # no synthetic woman to compare
    same = SubgroupEvaluator(AuditInputs(train, holdout, train, tiny_schema)).evaluate().result()
    for row in same.details["groups"]:  # timelines of a group against themselves: no distance
        assert row["events_per_patient_tvd"] == 0.0 and row["gap_tvd"] == 0.0, row["group"]
        assert row["events_per_patient_tvd_baseline"] is not None


def test_subgroup_distorted_when_one_group_is_rendered_badly(tiny_schema):
    train = random_cohort(tiny_schema, 200, seed=7, prefix="t")
    holdout = random_cohort(tiny_schema, 200, seed=9, prefix="h")
    synth = random_cohort(tiny_schema, 200, seed=8, prefix="s")
    women = set(synth.patients.loc[synth.patients["sex"] == "female", "patient_id"])
    events = synth.events.copy()
    events.loc[events["patient_id"].isin(women), "value"] = 590.0  # glucose and hba1c clipped
    bent = Cohort.conform(tiny_schema, synth.patients, events, synth.conditions)[0]
    r = (
        SubgroupEvaluator(AuditInputs(train, holdout, bent, tiny_schema), min_group_size=20)
        .evaluate()
        .result()
    )
    rows = {row["group"]: row for row in r.details["groups"]}
    assert rows["sex: female"]["flags"] == ["distorted"]
    assert rows["sex: female"]["tvd_excess"] > 0.1 and rows["sex: male"]["flags"] == []
    assert r.metrics["distorted_groups"] >= 1 and r.metrics["under_represented_groups"] == 0
