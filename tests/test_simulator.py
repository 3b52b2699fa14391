"""The rule-based simulator: determinism, streaming, schema conformance and physiology."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest

import medsynth.simulate as simulate_module
from medsynth.cohort import Cohort
from medsynth.errors import DataError
from medsynth.schema import Attribute, DatasetSchema, parse_schema
from medsynth.simulate import simulate, simulate_chunks, simulate_conformed, simulation_source
from medsynth.simulator.block import to_channel
from medsynth.simulator.concepts import concept_for_code
from medsynth.simulator.plan import make_plan
from medsynth.simulator.streams import Streams
from tests.helpers import minimal_doc

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.fixture(scope="module")
def general(general_schema: DatasetSchema) -> Cohort:
    return simulate(general_schema, 600, random_state=3)


@pytest.fixture(scope="module")
def liver(liver_schema: DatasetSchema) -> Cohort:
    return simulate(liver_schema, 300, random_state=5)


def _odd_doc() -> dict[str, Any]:
    """A schema unlike the shipped ones: ICD-10 codes, odd units, unknown and narrow channels."""
    doc = minimal_doc()
    doc["name"] = "odd"
    doc["time"] = {
        "anchor": "fixed_date",
        "anchor_date": "2020-01-01",
        "horizon_days": 730,
        "output_start": "2020-01-01",
    }
    doc["limits"] = {"max_events_per_channel": 6, "max_events_total": 14, "max_conditions": 2}
    doc["attributes"] = [
        {
            "name": "gender",
            "type": "categorical",
            "fhir": "Patient.gender",
            "categories": ["female", "male", "other", "unknown"],
        },
        {
            "name": "zip3",
            "type": "categorical",
            "fhir": "Patient.address.zip3",
            "categories": ["100", "606", "945"],
        },
        {"name": "dead", "type": "boolean", "fhir": "Patient.deceased"},
    ]
    doc["conditions"] = {
        "system": ICD10,
        "codes": [
            {"code": "I10", "display": "Essential hypertension"},
            {"code": "E11.9", "display": "Type 2 diabetes without complications"},
            {"code": "Z99.89", "display": "Dependence on other enabling machines"},
        ],
    }
    doc["channels"] = [
        {
            "name": "glucose_si",
            "code": "2339-0",
            "display": "Glucose",
            "unit": "mmol/L",
            "min": 1,
            "max": 40,
            "category": "laboratory",
            "decimals": 1,
        },
        {
            "name": "sbp",
            "code": "8480-6",
            "display": "Systolic blood pressure",
            "unit": "mm[Hg]",
            "min": 100,
            "max": 140,
            "category": "vital-signs",
            "decimals": 0,
        },
        {
            "name": "iron",
            "code": "2498-4",
            "display": "Iron",
            "unit": "ug/dL",
            "min": 5,
            "max": 400,
            "normal": [60, 170],
            "category": "laboratory",
            "decimals": 0,
        },
        {
            "name": "grip",
            "code": "83174-3",
            "display": "Grip strength",
            "unit": "kg",
            "min": 0.25,
            "max": 80.75,
            "category": "vital-signs",
            "decimals": 1,
        },
    ]
    return doc


@pytest.fixture(scope="module")
def odd_schema() -> DatasetSchema:
    schema = parse_schema(_odd_doc())
    # A birth-date attribute of type date, added after parsing: the JSON Schema's generic
    # numeric "min"/"max" types currently refuse the date bounds a date attribute needs.
    born = Attribute("born", "date", "Patient.birthDate", min="1930-01-01", max="2004-12-31")
    return dataclasses.replace(schema, attributes=(*schema.attributes, born))


def _empty_doc() -> dict[str, Any]:
    doc = minimal_doc()
    doc["channels"] = []
    doc["conditions"]["codes"] = []
    return doc


# -- API, determinism and streaming ---------------------------------------------------------------
def test_same_seed_same_cohort_and_different_seed_different(general_schema):
    a = simulate(general_schema, 150, random_state=11)
    b = simulate(general_schema, 150, random_state=11)
    c = simulate(general_schema, 150, random_state=12)
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != c.content_hash()
    assert a.source == b.source != c.source


def test_generator_random_state_is_reproducible(tiny_schema):
    a = simulate(tiny_schema, 50, random_state=np.random.default_rng(4))
    b = simulate(tiny_schema, 50, random_state=np.random.default_rng(4))
    assert a.content_hash() == b.content_hash()


def test_source_identifies_schema_size_and_seed(general_schema, general):
    assert general.source == simulation_source(general_schema, 600, 3)
    assert general.source.kind == "simulated"
    assert len(general.source.fingerprint) == 64
    assert simulation_source(general_schema, 601, 3).fingerprint != general.source.fingerprint
    assert "no real data" in general.source.description


def test_patient_ids_are_unique_and_padded(general):
    ids = general.patient_ids
    assert len(set(ids)) == 600
    assert ids[:2] == ["sim-000000", "sim-000001"]
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("n", "chunk_size"), [(5, 1), (250, 16), (250, 64), (250, 100), (250, 250), (250, 1000)]
)
def test_chunks_equal_one_call(monkeypatch, tiny_schema, n, chunk_size):
    monkeypatch.setattr(simulate_module, "BLOCK_SIZE", 64)  # several blocks per call
    whole = simulate(tiny_schema, n, random_state=9)
    chunks = list(simulate_chunks(tiny_schema, n, random_state=9, chunk_size=chunk_size))
    assert [c.n_patients for c in chunks] == [
        min(chunk_size, n - i) for i in range(0, n, chunk_size)
    ]
    assert all(c.source == whole.source for c in chunks)
    for table in ("patients", "events", "conditions"):
        joined = pd.concat([getattr(c, table) for c in chunks], ignore_index=True)
        pd.testing.assert_frame_equal(joined, getattr(whole, table))


def test_blocks_are_stable_prefixes(tiny_schema):
    small = simulate(tiny_schema, 40, random_state=2)
    large = simulate(tiny_schema, 90, random_state=2)
    first = large.subset(small.patient_ids)
    # Same block streams: the first 40 patients do not depend on how many follow them.
    for table in ("patients", "events", "conditions"):
        pd.testing.assert_frame_equal(getattr(first, table), getattr(small, table))


def test_accepts_schema_name(tiny_schema):
    assert simulate("liver-panel", 5, random_state=1).schema.name == "liver-panel"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_patients": 0}, "n_patients must be >= 1, got 0"),
        ({"n_patients": 2.5}, "n_patients must be an integer"),
        ({"random_state": -1}, "random_state must be >= 0, got -1"),
        ({"random_state": "x"}, "random_state must be an int >= 0 or a numpy Generator"),
        ({"chunk_size": 0}, "chunk_size must be >= 1, got 0"),
    ],
)
def test_bad_arguments_are_refused(tiny_schema, kwargs, message):
    args = {"n_patients": 10, "random_state": 0, "chunk_size": None, **kwargs}
    with pytest.raises(DataError, match=message):
        simulate_conformed(tiny_schema, args.pop("n_patients"), **args)  # refused at once


# -- schema conformance -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["general", "liver", "tiny", "odd", "empty"])
def test_output_needs_no_conformance_changes(request, name):
    schema = {
        "general": lambda: request.getfixturevalue("general_schema"),
        "liver": lambda: request.getfixturevalue("liver_schema"),
        "tiny": lambda: request.getfixturevalue("tiny_schema"),
        "odd": lambda: request.getfixturevalue("odd_schema"),
        "empty": lambda: parse_schema(_empty_doc()),
    }[name]()
    reports = [r for _, r in simulate_conformed(schema, 300, random_state=1, chunk_size=120)]
    assert [r.counts for r in reports] == [(), (), ()]


def _check_inside(cohort: Cohort) -> None:
    schema = cohort.schema
    ev = cohort.events
    for ch in schema.channels:
        v = ev.loc[ev["channel"] == ch.name, "value"]
        assert v.between(ch.min, ch.max).all(), ch.name
        if ch.decimals is not None:
            assert np.allclose(v, v.round(ch.decimals)), ch.name
    assert ev["time"].between(0, schema.time.horizon_days).all()
    assert np.allclose(ev["time"] * 86400, np.round(ev["time"] * 86400))
    lim = schema.limits
    assert ev.groupby(["patient_id", "channel"]).size().max() <= lim.max_events_per_channel
    assert ev.groupby("patient_id").size().max() <= lim.max_events_total
    cond = cohort.conditions
    assert cond["onset"].between(0, schema.time.horizon_days).all()
    assert cond.groupby("patient_id").size().max() <= lim.max_conditions


def test_values_times_and_limits_inside_schema(general, liver, odd_schema, tiny_schema):
    for cohort in (
        general,
        liver,
        simulate(odd_schema, 300, random_state=2),
        simulate(tiny_schema, 300, random_state=2),
    ):
        _check_inside(cohort)


def test_tight_limits_are_reached_but_never_exceeded(tiny_schema):
    ev = simulate(tiny_schema, 300, random_state=4).events
    per_patient = ev.groupby("patient_id").size()
    assert per_patient.max() == 5
    assert ev.groupby(["patient_id", "channel"]).size().max() == 3


def test_odd_schema_attributes_and_units(odd_schema):
    cohort = simulate(odd_schema, 400, random_state=8)
    pat = cohort.patients
    assert set(pat["gender"]) <= {"female", "male", "other", "unknown"}
    assert {"female", "male"} <= set(pat["gender"])
    assert set(pat["zip3"]) == {"100", "606", "945"}
    assert pat["born"].between(pd.Timestamp("1930-01-01"), pd.Timestamp("2004-12-31")).all()
    assert str(pat["dead"].dtype) == "boolean"
    ev = cohort.events
    glucose = ev.loc[ev["channel"] == "glucose_si", "value"]
    assert 4.5 < glucose.median() < 7.5  # mmol/L, not mg/dL
    iron = ev.loc[ev["channel"] == "iron", "value"]
    assert 60 < iron.median() < 170  # an unknown channel centres in its normal range
    assert iron.std() > 5
    assert set(cohort.conditions["code"]) == {"I10", "E11.9", "Z99.89"}


def test_fixed_date_and_first_event_anchors(liver, odd_schema):
    first = liver.events.groupby("patient_id")["time"].min()
    assert (first == 0).all()
    odd = simulate(odd_schema, 200, random_state=1).events.groupby("patient_id")["time"].min()
    assert (odd > 0).mean() > 0.5  # records start after the fixed anchor date


def test_last_event_anchor_puts_last_visit_at_the_horizon(general):
    last = general.events.groupby("patient_id")["time"].max()
    assert (last == general.schema.time.horizon_days).all()


def test_schema_without_channels_or_conditions():
    cohort = simulate(parse_schema(_empty_doc()), 30, random_state=0)
    assert cohort.n_patients == 30
    assert cohort.events.empty and cohort.conditions.empty


# -- physiology ---------------------------------------------------------------------------------
def _per_patient_mean(cohort: Cohort, channel: str) -> pd.Series:
    ev = cohort.events
    return ev[ev["channel"] == channel].groupby("patient_id")["value"].mean()


def _with_condition(cohort: Cohort, code: str) -> set[str]:
    return set(cohort.conditions.loc[cohort.conditions["code"] == code, "patient_id"])


def test_age_raises_systolic_pressure(general):
    sbp = _per_patient_mean(general, "systolic_bp")
    age = general.patients.set_index("patient_id")["age"].loc[sbp.index]
    assert np.corrcoef(age, sbp)[0, 1] > 0.15


def test_hypertension_raises_systolic_pressure(general):
    sbp = _per_patient_mean(general, "systolic_bp")
    ht = sbp.index.isin(_with_condition(general, "38341003"))
    assert 0.2 < ht.mean() < 0.8
    assert sbp[ht].mean() - sbp[~ht].mean() > 5


def test_diabetes_raises_hba1c_and_glucose(general):
    diabetic = _with_condition(general, "44054006")
    for channel, margin in (("hba1c", 1.0), ("glucose", 25.0)):
        means = _per_patient_mean(general, channel)
        dm = means.index.isin(diabetic)
        assert means[dm].mean() - means[~dm].mean() > margin, channel


def test_ckd_raises_creatinine_and_men_are_taller(general):
    creat = _per_patient_mean(general, "creatinine")
    ckd = creat.index.isin(_with_condition(general, "431855005"))
    assert creat[ckd].mean() > 1.3 * creat[~ckd].mean()
    height = _per_patient_mean(general, "height")
    sex = general.patients.set_index("patient_id")["sex"].loc[height.index]
    assert height[sex == "male"].mean() - height[sex == "female"].mean() > 8


def test_liver_disease_raises_liver_enzymes(liver):
    alt = _per_patient_mean(liver, "alt")
    sick = alt.index.isin(_with_condition(liver, "B18.2") | _with_condition(liver, "K76.0"))
    assert alt[sick].mean() > 1.5 * alt[~sick].mean()


def _lag1_within(cohort: Cohort, channel: str, min_count: int = 4) -> float:
    ev = cohort.events[cohort.events["channel"] == channel].sort_values(["patient_id", "time"])
    grouped = ev.groupby("patient_id")["value"]
    dev = ev["value"] - grouped.transform("mean")
    prev = dev.groupby(ev["patient_id"]).shift(1)
    keep = prev.notna() & (grouped.transform("size") >= min_count)
    return float(np.corrcoef(dev[keep], prev[keep])[0, 1])


def test_trajectories_are_autocorrelated_within_patients(liver, general):
    assert _lag1_within(liver, "alt") > 0.3  # a lab over years of follow-up
    assert _lag1_within(general, "weight") > 0.3  # a vital sign over five years


def test_visit_gaps_are_irregular_and_shorter_for_sicker_patients(liver):
    visits = liver.events.drop_duplicates(["patient_id", "time"]).sort_values(
        ["patient_id", "time"]
    )
    gaps = visits.groupby("patient_id")["time"].diff().dropna()
    assert gaps.std() / gaps.mean() > 0.3
    mean_gap = visits.groupby("patient_id")["time"].apply(lambda t: t.diff().mean()).dropna()
    n_cond = liver.conditions.groupby("patient_id").size().reindex(mean_gap.index, fill_value=0)
    assert mean_gap[n_cond >= 2].mean() < mean_gap[n_cond == 0].mean()


def test_deceased_patients_are_older(general):
    pat = general.patients
    dead = pat["deceased"].astype(bool)
    assert 0 < dead.mean() < 0.3
    assert pat.loc[dead, "age"].mean() > pat.loc[~dead, "age"].mean() + 10


# -- pieces ---------------------------------------------------------------------------------------
def test_to_channel_rounds_inside_bounds(odd_schema):
    grip = odd_schema.channel_by_name["grip"]  # bounds 0.25 and 80.75 with one decimal
    out = to_channel(np.array([-3.0, 0.25, 0.26, 40.04, 80.75, 99.0]), grip)
    assert out.tolist() == [0.3, 0.3, 0.3, 40.0, 80.7, 80.7]


@pytest.mark.parametrize(
    ("code", "system", "key"),
    [
        ("K74.3", ICD10, "pbc"),
        ("K74.60", ICD10, "cirrhosis"),
        ("I85.00", ICD10, "varices"),
        ("E11.9", ICD10, "diabetes"),
        ("Z99.89", ICD10, None),
        ("38341003", "http://snomed.info/sct", "hypertension"),
        ("271737000", "http://snomed.info/sct", "anemia"),
    ],
)
def test_condition_codes_map_to_concepts(code, system, key):
    assert concept_for_code(code, system) == key


def test_plan_recognises_clinic_and_units(liver_schema, general_schema, odd_schema):
    assert make_plan(liver_schema).clinic and not make_plan(general_schema).clinic
    plan = {cp.channel.name: cp for cp in make_plan(odd_schema).channels}
    assert plan["glucose_si"].known and plan["glucose_si"].scale == pytest.approx(1 / 18.016)
    assert not plan["iron"].known and not plan["grip"].known


def test_streams_are_named_and_independent():
    a, b = Streams(1, 0), Streams(1, 0)
    assert np.array_equal(a.normal("x", 5), b.normal("x", 5))
    assert not np.array_equal(a.normal("x", 5), a.normal("y", 5))
    assert not np.array_equal(a.normal("x", 5), Streams(1, 1).normal("x", 5))


def test_adding_a_channel_leaves_other_values_unchanged():
    base = minimal_doc()
    base["limits"]["max_events_total"] = 100
    doc = copy.deepcopy(base)
    doc["channels"].append(
        {
            "name": "ldl",
            "code": "18262-6",
            "display": "LDL",
            "unit": "mg/dL",
            "min": 10,
            "max": 400,
            "category": "laboratory",
            "decimals": 0,
        }
    )
    wide = simulate(parse_schema(doc), 80, random_state=6)
    narrow = simulate(parse_schema(base), 80, random_state=6)
    pd.testing.assert_frame_equal(wide.patients, narrow.patients)
    key = ["patient_id", "time", "channel"]
    both = narrow.events.merge(wide.events, on=key, suffixes=("_narrow", "_wide"))
    assert len(both) > 0.8 * len(narrow.events)
    assert (both["value_narrow"] == both["value_wide"]).all()


@pytest.mark.parametrize("max_total", [200, 12])
def test_measurement_groups_are_simulated_whole(general_schema, max_total):
    doc = copy.deepcopy(general_schema.raw)
    doc["measurement_groups"] = [
        {"name": "body", "channels": ["height", "weight", "bmi"]},  # height alone: share 0.5
        {"name": "mixed", "channels": ["heart_rate", "glucose"]},  # across two visit groups
    ]
    doc["limits"]["max_events_total"] = max_total
    schema = parse_schema(doc)
    reports = [r for _, r in simulate_conformed(schema, 200, random_state=6, chunk_size=200)]
    assert [r.counts for r in reports] == [()]
    cohort = simulate(schema, 200, random_state=6)
    _check_inside(cohort)
    ev = cohort.events
    for group in schema.measurement_groups:
        held = ev[ev["channel"].isin(group.channels)]
        per_visit = held.groupby(["patient_id", "time"])["channel"].agg(tuple)
        assert len(per_visit) > 0 and set(per_visit) == {group.channels}, group.name
