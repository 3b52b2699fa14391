"""Attribute disclosure: inference from quasi-identifiers, training against holdout patients."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medsynth.audit.attribute import (
    AttributeDisclosure,
    Secret,
    infer_by_quasi_identifiers,
    quasi_identifier_codes,
    resolve_secret,
    secret_values,
)
from medsynth.audit.base import AuditInputs
from medsynth.cohort import Cohort
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


def test_a_copy_of_the_training_data_discloses_diagnoses():
    r = AttributeDisclosure(copy_inputs()).evaluate().result()
    m = r.metrics
    assert r.ok and r.parameters["quasi_identifiers"] == [
        "age",
        "sex",
        "race",
        "ethnicity",
        "state",
    ]
    assert m["success_train"].value > 0.9 and m["risk"].ci_low > 0.4
    assert m["risk"].value == pytest.approx(m["success_train"].value - m["success_control"].value)
    assert r.baseline["success_train"] == m["success_control"].value
    assert r.details["exact_match_share"]["train"] == 1.0


def test_fresh_draws_disclose_nothing_beyond_the_population():
    m = AttributeDisclosure(fresh_inputs()).evaluate().result().metrics
    assert m["risk"].ci_low <= 0.0 <= m["risk"].ci_high
    assert abs(m["risk"].value) < 0.1


@pytest.mark.parametrize(
    "secret",
    [{"condition": "38341003"}, {"channel": "glucose", "statistic": "last"}, {"attribute": "race"}],
)
def test_other_secrets(secret):
    copied = AttributeDisclosure(copy_inputs(), secret=secret).evaluate().result()
    fresh = AttributeDisclosure(fresh_inputs(), secret=secret).evaluate().result()
    assert copied.metrics["success_train"].value > 0.9
    assert copied.metrics["risk"].value > fresh.metrics["risk"].value + 0.15
    if "attribute" in secret:
        assert "race" not in copied.parameters["quasi_identifiers"]


def test_exact_answer_on_a_hand_made_cohort():
    """Synthetic records: QIs (sex, age band) -> secret. A target with a matching cell gets the
    majority; one without gets the vote of the records with the fewest mismatches."""
    synthetic = np.array([[0, 3], [0, 3], [0, 3], [1, 5], [1, 6]])
    secret = np.array([2, 2, 1, 0, 1])
    targets = np.array([[0, 3], [1, 5], [0, 5], [1, 9]])
    guess, exact = infer_by_quasi_identifiers(targets, synthetic, secret)
    # [0, 5]: one mismatch with rows 0-2 (secret 2, 2, 1) and with row 3 (0): votes 2, 1, 2
    # [1, 9]: one mismatch with rows 3, 4 (secrets 0 and 1): a tie goes to the smaller code
    assert guess.tolist() == [2, 0, 2, 0]
    assert exact.tolist() == [True, True, False, False]


def test_quasi_identifiers_use_public_bands():
    schema = attack_schema()
    patients = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c", "d"],
            "sex": ["female", "male", None, "male"],
            "age": [18, 27, 28, None],
            "race": "white",
            "ethnicity": "hispanic",
            "state": "CA",
        }
    )
    cohort = Cohort.conform(schema, patients)[0]
    codes = quasi_identifier_codes(cohort, ["sex", "age"], 10.0)
    assert codes[:, 0].tolist() == [0, 1, 2, 1]  # female, male, missing
    assert codes[:, 1].tolist() == [0, 0, 1, 8]  # [18, 28), [28, 38), missing after 8 bands


def test_secrets_are_resolved_from_the_schema():
    schema = attack_schema()
    assert resolve_secret(None, schema) == Secret("diagnoses")
    assert resolve_secret([{"condition": "nope"}, {"channel": "hba1c"}], schema) == Secret(
        "channel", "hba1c"
    )
    assert resolve_secret([{"condition": "nope"}], schema) is None
    with pytest.raises(DataError, match="secret condition 'nope' is not in schema"):
        resolve_secret({"condition": "nope"}, schema)
    with pytest.raises(DataError, match="is not one of 'diagnoses'"):
        resolve_secret({"colour": "red"}, schema)
    train, holdout, _ = cohorts()
    a, b = secret_values([train, holdout], Secret("diagnoses"))
    assert a.dtype == np.int64 and len(a) == 150 and len(b) == 150
    bands = secret_values([without_events(train)], Secret("channel", "glucose"))[0]
    assert set(bands.tolist()) == {3}  # never measured


def test_bad_parameters_and_degenerate_inputs():
    with pytest.raises(DataError, match=r"'quasi_identifiers': \['zip'\] not in schema"):
        AttributeDisclosure(copy_inputs(), quasi_identifiers=["zip"]).evaluate()
    r = AttributeDisclosure(copy_inputs(), secret=[{"condition": "nope"}]).evaluate().result()
    assert r.status == "not_run" and "none of the secrets" in r.reason
    train, holdout, fresh = cohorts()
    schema = attack_schema()
    tiny = AuditInputs(first(train, 3), first(holdout, 3), first(fresh, 3), schema)
    r = AttributeDisclosure(tiny).evaluate().result()
    assert r.status == "not_run" and "too few patients" in r.reason
    leaked = AuditInputs(train, holdout, holdout, schema)
    assert "exactly the holdout" in AttributeDisclosure(leaked).evaluate().result().reason
    flat = AuditInputs(
        constant(schema, 20, "t"), constant(schema, 20, "h"), constant(schema, 20, "s", 60), schema
    )
    r = AttributeDisclosure(flat).evaluate().result()
    assert r.ok and r.metrics["risk"].value == 0.0


def test_result_is_aggregate_json():
    r = AttributeDisclosure(copy_inputs(random_state=5)).evaluate().result()
    text = json.dumps(r.to_dict())
    train, _, _ = cohorts()
    assert not any(pid in text for pid in train.patient_ids)
    assert r.parameters["seed"] == 5 and "diagnoses" in r.parameters["secret"]
