"""Small simulated cohorts for the privacy-attack tests, built once per test session.

A cut-down general-adult schema (the quasi-identifiers sex, age, race, ethnicity and state,
three conditions, three channels, short records) and, from the rule-based simulator:
a source of 300 patients split half/half into train and holdout, and an independent draw of
150 patients from the same distribution (another seed) as the honest synthetic cohort.
"""

from __future__ import annotations

import copy
import functools

import pandas as pd

from medsynth.audit.base import AuditInputs
from medsynth.cohort import Cohort
from medsynth.schema import DatasetSchema, load_schema, parse_schema
from medsynth.simulate import simulate

KEEP_ATTRIBUTES = ("sex", "age", "race", "ethnicity", "state")
KEEP_CONDITIONS = ("38341003", "44054006", "55822004")
KEEP_CHANNELS = ("systolic_bp", "glucose", "hba1c")


@functools.lru_cache(maxsize=1)
def attack_schema() -> DatasetSchema:
    doc = copy.deepcopy(load_schema("general-adult").raw)
    doc["name"] = "attack-test"
    doc["attributes"] = [a for a in doc["attributes"] if a["name"] in KEEP_ATTRIBUTES]
    doc["conditions"]["codes"] = [
        c for c in doc["conditions"]["codes"] if c["code"] in KEEP_CONDITIONS
    ]
    doc["channels"] = [c for c in doc["channels"] if c["name"] in KEEP_CHANNELS]
    doc["panels"] = []
    doc["limits"] = {"max_events_per_channel": 4, "max_events_total": 10, "max_conditions": 3}
    return parse_schema(doc)


@functools.lru_cache(maxsize=1)
def cohorts() -> tuple[Cohort, Cohort, Cohort]:
    """(train, holdout, fresh): 150 / 150 real patients and 150 fresh simulated ones."""
    schema = attack_schema()
    train, holdout = simulate(schema, 300, random_state=1).split(0.5, random_state=0)
    fresh = simulate(schema, 150, random_state=2)
    return train, holdout, fresh


def copy_inputs(**kw) -> AuditInputs:
    """The synthetic cohort is the training cohort itself: every attack must succeed."""
    train, holdout, _ = cohorts()
    return AuditInputs(train, holdout, train, attack_schema(), **kw)


def fresh_inputs(**kw) -> AuditInputs:
    """The synthetic cohort is an independent draw: no attack may succeed beyond chance."""
    train, holdout, fresh = cohorts()
    return AuditInputs(train, holdout, fresh, attack_schema(), **kw)


def without_events(cohort: Cohort) -> Cohort:
    """The same patients and conditions with an empty time series."""
    return Cohort.conform(
        cohort.schema, cohort.patients, cohort.events.iloc[0:0], cohort.conditions
    )[0]


def first(cohort: Cohort, n: int) -> Cohort:
    """The first ``n`` patients of a cohort."""
    return cohort.subset(cohort.patient_ids[:n])


def constant(schema: DatasetSchema, n: int, prefix: str, age: int = 50) -> Cohort:
    """``n`` patients with the same attributes, no condition and no event."""
    patients = pd.DataFrame(
        {
            "patient_id": [f"{prefix}{i}" for i in range(n)],
            "sex": "female",
            "age": age,
            "race": "white",
            "ethnicity": "not_hispanic",
            "state": "CA",
        }
    )
    return Cohort.conform(schema, patients)[0]
