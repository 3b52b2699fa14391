"""The fidelity evaluator on tiny hand-made cohorts, and the contract every fidelity and utility
evaluator keeps on degenerate inputs (time series, utility and subgroups have their own files)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsynth.audit.base import AuditInputs
from medsynth.audit.fidelity import (
    FidelityEvaluator,
    _edge_labels,
    bin_counts,
    cramers_v,
    equal_width_edges,
    ks_statistic,
    tvd,
)
from medsynth.audit.subgroups import SubgroupEvaluator
from medsynth.audit.timeseries import TimeSeriesEvaluator, count_edges
from medsynth.audit.utility import UtilityEvaluator
from medsynth.errors import NotFittedError
from tests.helpers import make_cohort, random_cohort


# -- pure functions -----------------------------------------------------------------------------
def test_tvd_exact_values():
    assert tvd([3, 1], [3, 1]) == 0.0
    assert tvd([5, 0], [0, 7]) == 1.0
    assert tvd([1, 1], [2, 0]) == pytest.approx(0.5)
    assert tvd([0, 0], [1, 1]) is None
    with pytest.raises(ValueError, match="differ in length"):
        tvd([1], [1, 2])


def test_ks_exact_values():
    assert ks_statistic([1, 2, 3], [3, 2, 1]) == 0.0
    assert ks_statistic([1, 2], [5, 6]) == 1.0
    assert ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
    assert ks_statistic([], [1.0]) is None


def test_cramers_v_extremes():
    a = np.array([0, 0, 1, 1] * 5)
    assert cramers_v(a, a) == pytest.approx(1.0)
    assert cramers_v(a, np.array([0, 1, 0, 1] * 5)) == pytest.approx(0.0)
    assert cramers_v(a, np.zeros(20, dtype=int)) is None


def test_bins_close_left_and_clip_to_the_public_range():
    edges = equal_width_edges(0, 10, 2)
    assert edges.tolist() == [0.0, 5.0, 10.0]
    assert bin_counts(np.array([0, 4.9, 5, 10, 11, -1, np.nan]), edges).tolist() == [3, 3]
    assert count_edges(10).tolist() == list(range(12))
    assert _edge_labels(np.array([0.0, 1.0, 7.0, 365.0]), 0) == ("[0, 1)", "[1, 7)", "[7, 365]")
    assert _edge_labels(np.array([0.0, 2.5, 10.0])) == ("[0, 2.5)", "[2.5, 10]")


# -- fidelity -----------------------------------------------------------------------------------
def test_identical_cohorts_have_zero_distances(tiny_schema):
    c = random_cohort(tiny_schema, 80, seed=1)
    r = FidelityEvaluator(AuditInputs(c, c, c, tiny_schema)).evaluate().result()
    assert r.status == "ok" and r.kind == "fidelity"
    for key in (
        "attribute_tvd_max",
        "channel_tvd_max",
        "channel_ks_max",
        "condition_prevalence_diff_max",
        "cramers_v_diff_max",
        "correlation_diff_max",
    ):
        assert r.metrics[key] == 0.0, key
    assert r.baseline["attribute_tvd_max"] == 0.0


def test_disjoint_cohorts_have_distance_one(tiny_schema):
    young = make_cohort(
        tiny_schema,
        [(f"a{i}", "female", 20) for i in range(5)],
        [(f"a{i}", 0, "glucose", 50) for i in range(5)],
    )
    old = make_cohort(
        tiny_schema,
        [(f"b{i}", "male", 85) for i in range(5)],
        [(f"b{i}", 0, "glucose", 500) for i in range(5)],
        [(f"b{i}", "38341003") for i in range(5)],
    )
    r = FidelityEvaluator(AuditInputs(young, young, old, tiny_schema)).evaluate().result()
    assert r.metrics["attribute_tvd_max"] == 1.0
    marg = r.details["marginals"]
    assert marg["attributes"]["sex"]["tvd"] == 1.0 and marg["attributes"]["age"]["ks"] == 1.0
    assert marg["channels"]["glucose"]["tvd"] == 1.0 and marg["channels"]["glucose"]["ks"] == 1.0
    assert marg["channels"]["hba1c"]["tvd"] is None  # no values on either side
    assert r.metrics["condition_prevalence_diff_max"] == 1.0


def test_fidelity_not_run_on_a_single_patient(tiny_schema):
    one = make_cohort(tiny_schema, [("x", "male", 40)])
    ev = FidelityEvaluator(AuditInputs(one, one, one, tiny_schema))
    with pytest.raises(NotFittedError):
        ev.result()
    r = ev.evaluate().result()
    assert r.status == "not_run" and "at least 2 patients" in r.reason


# -- contract and degenerate inputs -------------------------------------------------------------
EVALUATORS = [
    (FidelityEvaluator, {}),
    (TimeSeriesEvaluator, {}),
    (UtilityEvaluator, {"target": {"condition": "38341003"}, "bootstrap": 10}),
    (SubgroupEvaluator, {"target": {"condition": "38341003"}, "min_group_size": 5}),
]


def degenerate_inputs(schema) -> dict[str, AuditInputs]:
    normal = random_cohort(schema, 60, seed=1, prefix="n")
    holdout = random_cohort(schema, 40, seed=2, prefix="h")
    constant = make_cohort(
        schema,
        [(f"c{i}", "female", 50) for i in range(30)],
        [(f"c{i}", 0.0, "glucose", 100) for i in range(30)],
        [(f"c{i}", "38341003") for i in range(30)],
    )
    no_events = make_cohort(schema, [(f"e{i}", "male", 30 + i) for i in range(30)])
    return {
        "constant synthetic": AuditInputs(normal, holdout, constant, schema),
        "constant everything": AuditInputs(constant, constant, constant, schema),
        "synthetic is the holdout": AuditInputs(normal, holdout, holdout, schema),
        "no events anywhere": AuditInputs(no_events, no_events, no_events, schema),
        "empty synthetic": AuditInputs(normal, holdout, make_cohort(schema, []), schema),
        "empty holdout": AuditInputs(normal, make_cohort(schema, []), normal, schema),
        "one patient each": AuditInputs(
            *(make_cohort(schema, [(p, "male", 40)], [(p, 0.0, "glucose", 90)]) for p in "abc"),
            schema,
        ),
    }


@pytest.mark.parametrize("evaluator,params", EVALUATORS, ids=lambda x: getattr(x, "name", ""))
def test_evaluator_contract_and_degenerate_inputs(evaluator, params, tiny_schema):
    for case, inputs in degenerate_inputs(tiny_schema).items():
        ev = evaluator(inputs, **params)
        with pytest.raises(NotFittedError):
            ev.result()
        assert ev.evaluate() is ev
        r = ev.result()
        assert r.name == evaluator.name and r.kind in ("fidelity", "utility"), case
        assert r.status in ("ok", "not_run") and (r.status == "ok" or r.reason), case
        json.dumps(r.to_dict(), allow_nan=False)
