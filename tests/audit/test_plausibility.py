"""The audit's plausibility checks catch the failures a clinician sees in a timeline: a lab
repeated at one visit, a diagnosis after the last visit, a lab missing from visits, records
too short; and they pass on real patients."""

from __future__ import annotations

import pandas as pd

from medsynth.audit.base import AuditInputs
from medsynth.audit.policy import evaluate_policy, load_policy
from medsynth.audit.timeseries import TimeSeriesEvaluator
from medsynth.cohort import Cohort
from tests.helpers import make_cohort, random_cohort

CHECKS = {
    "time series: one value of a channel per visit",
    "time series: diagnoses inside the record",
    "time series: channels present at visits",
    "time series: visits per patient",
    "time series: values inside the bounds",
}


def _verdicts(train, holdout, synthetic, schema) -> dict[str, str]:
    result = TimeSeriesEvaluator(AuditInputs(train, holdout, synthetic, schema)).evaluate()
    checks = evaluate_policy(load_policy("default"), [result.result()])
    return {c.name: c.verdict for c in checks if c.name in CHECKS}


def _broken(cohort: Cohort) -> Cohort:
    """Every glucose doubled at its own visit, every onset a year after the last visit, and
    HbA1c removed from half the patients."""
    ev = cohort.events
    glucose = ev[ev["channel"] == "glucose"].assign(value=lambda d: d["value"] + 1.0)
    ids = cohort.patients["patient_id"].tolist()
    drop = ev["patient_id"].isin(ids[::2]) & (ev["channel"] == "hba1c")
    events = pd.concat([ev[~drop], glucose], ignore_index=True)
    last = ev.groupby("patient_id")["time"].max()
    conditions = cohort.conditions.assign(onset=lambda d: d["patient_id"].map(last) + 365.0)
    return Cohort(cohort.schema, cohort.patients, events, conditions, cohort.source)


def test_plausibility_checks_fail_on_broken_timelines_and_pass_on_real_ones(tiny_schema):
    train = random_cohort(tiny_schema, 120, seed=1, prefix="t")
    holdout = random_cohort(tiny_schema, 120, seed=2, prefix="h")
    fresh = random_cohort(tiny_schema, 120, seed=3, prefix="s")
    ok = _verdicts(train, holdout, fresh, tiny_schema)
    assert ok == dict.fromkeys(CHECKS, "PASS"), ok
    bad = _verdicts(train, holdout, _broken(fresh), tiny_schema)
    assert bad["time series: one value of a channel per visit"] == "FAIL"
    assert bad["time series: diagnoses inside the record"] == "FAIL"
    assert bad["time series: channels present at visits"] == "FAIL"
    assert bad["time series: values inside the bounds"] == "PASS"


def test_values_beyond_the_bounds_and_short_records_fail(tiny_schema):
    train = random_cohort(tiny_schema, 120, seed=1, prefix="t")
    holdout = random_cohort(tiny_schema, 120, seed=2, prefix="h")
    fresh = random_cohort(tiny_schema, 120, seed=3, prefix="s")
    events = fresh.events.copy()
    events.loc[events.index[:3], "value"] = 10_000.0  # glucose bound is 600
    first = events.sort_values("time").groupby("patient_id").head(1)
    beyond = Cohort(fresh.schema, fresh.patients, events, fresh.conditions, fresh.source)
    short = Cohort(fresh.schema, fresh.patients, first, fresh.conditions, fresh.source)
    assert (
        _verdicts(train, holdout, beyond, tiny_schema)["time series: values inside the bounds"]
        == "FAIL"
    )
    assert _verdicts(train, holdout, short, tiny_schema)["time series: visits per patient"] == (
        "FAIL"
    )


def test_a_cohort_without_events_is_not_a_pass(tiny_schema):
    train = random_cohort(tiny_schema, 60, seed=1, prefix="t")
    empty = make_cohort(tiny_schema, [(f"e{i}", "male", 40) for i in range(60)])
    verdicts = _verdicts(train, train, empty, tiny_schema)
    assert "PASS" not in verdicts.values()
