"""Singling out, linkability, record matches and the DCR share: a copy of the training data
must be caught, fresh patients from the same population must not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsynth.audit.base import AuditInputs
from medsynth.audit.features import (
    nearest,
    patient_features,
    row_keys,
    same_records,
    split_blocks,
)
from medsynth.audit.reidentification import DcrShare, Linkability, RecordMatches, SinglingOut
from medsynth.errors import DataError
from tests.audit.attack_cohorts import (
    attack_schema,
    cohorts,
    constant,
    copy_inputs,
    first,
    fresh_inputs,
    without_events,
)

ATTACKS = (SinglingOut, Linkability, RecordMatches, DcrShare)


def test_singling_out():
    copied = SinglingOut(copy_inputs()).evaluate().result()
    m = copied.metrics
    # each of the 150 synthetic records is tried once; a record with a twin gives none
    assert 140 <= m["predicates"] <= 150 and m["targets"] == 150
    assert m["success_train"].value == 1.0  # unique among the synthetic = unique among train
    assert m["risk"].ci_low > 0.4
    fresh = SinglingOut(fresh_inputs()).evaluate().result().metrics
    assert fresh["risk"].ci_low <= 0.0 <= fresh["risk"].ci_high
    limited = SinglingOut(copy_inputs(), max_columns=2, n_predicates=50).evaluate().result()
    assert limited.details["variables_per_predicate"]["max"] <= 2
    train, holdout, fresh = cohorts()
    few = AuditInputs(train, holdout, first(fresh, 20), attack_schema())
    assert SinglingOut(few).evaluate().result().metrics["predicates"] <= 20  # no record twice


def test_linkability():
    copied = Linkability(copy_inputs()).evaluate().result()
    assert copied.parameters["view_a"] == ["sex", "age", "race", "ethnicity", "state"]
    assert copied.parameters["view_b"] == ["conditions", "systolic_bp", "glucose", "hba1c"]
    assert copied.metrics["success_train"].value > 0.95 and copied.metrics["risk"].ci_low > 0.8
    fresh = Linkability(fresh_inputs()).evaluate().result().metrics
    assert fresh["risk"].ci_low <= 0.0 <= fresh["risk"].ci_high
    views = Linkability(copy_inputs(), view_a=["conditions", "glucose"]).evaluate().result()
    assert views.parameters["view_b"][0] == "sex" and views.ok
    with pytest.raises(DataError, match="view_a names unknown block"):
        Linkability(copy_inputs(), view_a=["shoe_size"]).evaluate()


def test_record_matches():
    copied = RecordMatches(copy_inputs()).evaluate().result()
    m = copied.metrics
    assert m["exact_match_rate"].value == 1.0 and m["exact_matches"] == 150
    assert copied.baseline["exact_match_rate"] == 0.0 and m["risk"].ci_low > 0.9
    fresh = RecordMatches(fresh_inputs()).evaluate().result()
    assert fresh.metrics["exact_matches"] == 0
    assert fresh.metrics["risk"].ci_low <= 0.0 <= fresh.metrics["risk"].ci_high
    assert fresh.metrics["near_match_rate"].value < 0.1
    hist = fresh.details["distance_histogram"]
    assert sum(hist["synthetic_to_train"]) == 150 and len(hist["edges"]) == 21
    with pytest.raises(DataError, match="'near_quantile' must be in"):
        RecordMatches(fresh_inputs(), near_quantile=1.5).evaluate()


def test_distinctive_copies():
    """A copy of 150 distinctive training records is 150 copies, at least 140 beyond chance;
    fresh patients have no distinctive record in common with the real ones."""
    copied = RecordMatches(copy_inputs()).evaluate().result()
    copies = copied.metrics["distinctive_copies"]
    assert copies.value == 150 and copies.ci_low > 140 and copies.ci_high == 150
    assert copied.metrics["distinctive_matches"] == 150
    assert copied.details["distinctive"]["matches_holdout"] == 0
    assert copied.details["distinctive"]["training_share"] == 0.5
    fresh = RecordMatches(fresh_inputs()).evaluate().result()
    assert fresh.metrics["distinctive_copies"].ci_high == 0.0
    assert fresh.baseline["distinctive_copies"] == 0.0


def test_dcr_share():
    copied = DcrShare(copy_inputs()).evaluate().result()
    assert copied.metrics["share"].value == 1.0 and copied.metrics["dcr_train_median"] == 0.0
    fresh = DcrShare(fresh_inputs()).evaluate().result()
    share = fresh.metrics["share"]
    assert share.ci_low <= 0.5 <= share.ci_high and fresh.baseline["share"] == 0.5
    assert fresh.metrics["dcr_train_median"] > 0


def test_dcr_share_uses_equal_sized_real_samples():
    """A holdout a third the size of train must not push the share towards train."""
    train, holdout, fresh = cohorts()
    small = first(holdout, 50)
    r = DcrShare(AuditInputs(train, small, fresh, attack_schema())).evaluate().result()
    assert r.details["targets"] == 50
    assert r.metrics["share"].ci_low <= 0.5 <= r.metrics["share"].ci_high


@pytest.mark.parametrize("attack", ATTACKS)
def test_degenerate_inputs_give_not_run_never_a_crash(attack):
    train, holdout, fresh = cohorts()
    schema = attack_schema()
    tiny = AuditInputs(first(train, 3), first(holdout, 3), first(fresh, 3), schema)
    r = attack(tiny).evaluate().result()
    assert r.status == "not_run" and "too few patients" in r.reason
    leaked = attack(AuditInputs(train, holdout, holdout, schema)).evaluate().result()
    assert leaked.status == "not_run" and "exactly the holdout" in leaked.reason
    flat = AuditInputs(
        constant(schema, 20, "t"), constant(schema, 20, "h"), constant(schema, 20, "s", 60), schema
    )
    r = attack(flat).evaluate().result()
    assert r.ok or r.reason  # constant records: a figure or a stated reason
    bare = AuditInputs(
        without_events(train), without_events(holdout), without_events(train), schema
    )
    r = attack(bare).evaluate().result()
    assert r.ok
    json.dumps(r.to_dict())


def test_identical_constant_records_cannot_be_singled_out():
    schema = attack_schema()
    flat = AuditInputs(
        constant(schema, 20, "t"), constant(schema, 20, "h"), constant(schema, 20, "s", 60), schema
    )
    r = SinglingOut(flat).evaluate().result()
    assert r.status == "not_run" and "twin" in r.reason


def test_results_hold_no_record():
    train, holdout, _ = cohorts()
    ids = train.patient_ids + holdout.patient_ids
    for attack in ATTACKS:
        text = json.dumps(attack(copy_inputs()).evaluate().result().to_dict())
        assert not any(pid in text for pid in ids), attack.name


# -- features -------------------------------------------------------------------------------------
def test_features_come_from_the_schema_and_are_cached():
    train, _, _ = cohorts()
    fm = patient_features(train)
    assert patient_features(train) is fm
    assert fm.values.shape == (150, len(fm.names))
    assert fm.values.min() >= -1.0 and fm.values.max() <= 1.0
    assert fm.names[:3] == ("sex=female", "sex=male", "age")
    assert fm.blocks["glucose"] == tuple(
        fm.names.index(f"glucose:{s}") for s in ("count", "mean", "last", "slope")
    )
    # one patient's features do not depend on the rest of the cohort
    one = first(train, 1)
    assert np.array_equal(patient_features(one).values[0], fm.values[0])
    assert split_blocks(fm, None)[0] == ["sex", "age", "race", "ethnicity", "state"]
    assert split_blocks(fm, list(fm.blocks))[1] == []  # Linkability reports it NOT RUN
    with pytest.raises(DataError, match="unknown block"):
        split_blocks(fm, ["shoe_size"])


def test_series_summaries_exact_values():
    import pandas as pd

    from medsynth.cohort import Cohort

    schema = attack_schema()
    patients = pd.DataFrame(
        {"patient_id": ["a"], "sex": "male", "age": 40, "race": "asian"}
    ).assign(ethnicity="hispanic", state="NY")
    events = pd.DataFrame(
        {
            "patient_id": ["a", "a"],
            "time": [0.0, 365.25],
            "channel": ["glucose", "glucose"],
            "value": [78.0, 136.0],
        }
    )
    cohort = Cohort.conform(schema, patients, events)[0]
    fm = patient_features(cohort)
    row = dict(zip(fm.names, fm.values[0], strict=True))
    span = 600 - 20  # glucose bounds
    assert row["glucose:count"] == pytest.approx(2 / 4)  # per-channel limit 4
    assert row["glucose:mean"] == pytest.approx((107 - 20) / span)
    assert row["glucose:last"] == pytest.approx((136 - 20) / span)
    assert row["glucose:slope"] == pytest.approx(58 / span)  # 58 mg/dL per year
    assert row["hba1c:count"] == 0 and row["hba1c:mean"] == 0
    assert row["sex=male"] == pytest.approx(2**-0.5) and row["sex=female"] == 0


def test_nearest_and_row_keys():
    ref = np.array([[0.0, 0.0], [1.0, 1.0]])
    dist, idx = nearest(ref, np.array([[0.9, 1.0], [0.0, 0.0]]))
    assert idx[:, 0].tolist() == [1, 0] and dist[1, 0] == 0.0
    assert dist[0, 0] == pytest.approx(0.1)
    keys = row_keys(np.array([[0.0, -0.0], [0.0, 0.0]]))
    assert keys[0] == keys[1]
    train, holdout, _ = cohorts()
    assert same_records(patient_features(train), patient_features(train))
    assert not same_records(patient_features(train), patient_features(holdout))


def test_features_of_dates_booleans_and_missing_values():
    import copy

    import pandas as pd

    from medsynth.audit.attribute import quasi_identifier_codes
    from medsynth.cohort import Cohort
    from medsynth.schema import parse_schema

    doc = copy.deepcopy(attack_schema().raw)
    doc["attributes"] = [a for a in doc["attributes"] if a["name"] != "age"] + [
        {"name": "birth", "type": "date", "fhir": "Patient.birthDate"}
        | {"min": "1930-01-01", "max": "2010-01-01"},
        {"name": "dead", "type": "boolean", "fhir": "Patient.deceased"},
    ]
    schema = parse_schema(doc)
    patients = pd.DataFrame(
        {"patient_id": ["a", "b"], "sex": ["female", None], "birth": ["1970-01-01", None]}
    ).assign(race="white", ethnicity="hispanic", state="CA", dead=[True, None])
    cohort = Cohort.conform(schema, patients)[0]
    fm = patient_features(cohort)
    a, b = (dict(zip(fm.names, row, strict=True)) for row in fm.values)
    assert a["birth"] == pytest.approx(0.5, abs=1e-3) and a["birth:missing"] == 0
    assert b["birth"] == 0 and b["birth:missing"] == 1
    assert a["dead"] == 1 and b["dead"] == 0.5
    assert b["sex=female"] == b["sex=male"] == 0
    codes = quasi_identifier_codes(cohort, ["sex", "birth", "dead"], 10.0)
    assert codes.tolist() == [[0, 5, 1], [2, 10, 2]]  # missing is a level of its own
