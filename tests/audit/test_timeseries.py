"""Time-series fidelity: per-cohort quantities by hand, known shifts with known figures, the
evaluator's baseline and not-run reasons, and a gallery that never shows a real record."""

from __future__ import annotations

import numpy as np
import pytest

from medsynth.audit.base import AuditInputs
from medsynth.audit.timeseries import (
    TimeSeriesEvaluator,
    count_edges,
    count_labels,
    event_gaps,
    events_per_patient,
    gallery,
    gap_edges,
    lag1_correlation,
    mean_trajectory,
    patient_slopes,
    summarize_timeseries,
    timeseries_figures,
)
from tests.helpers import make_cohort, random_cohort

DAYS = 365.25  # a year, as the slopes count it


def two_visits(schema, prefix: str, gap: float, rise: float, n: int = 10):
    """``n`` men, each with glucose ``100 + i`` at day 0 and ``100 + i + rise`` ``gap`` days on."""
    rows = [(f"{prefix}{i}", "male", 40) for i in range(n)]
    events = [(f"{prefix}{i}", 0.0, "glucose", 100 + i) for i in range(n)]
    events += [(f"{prefix}{i}", gap, "glucose", 100 + i + rise) for i in range(n)]
    return make_cohort(schema, rows, events)


# -- public bins --------------------------------------------------------------------------------
def test_public_bins_for_counts_and_gaps():
    assert count_edges(5).tolist() == [0, 1, 2, 3, 4, 5, 6]  # the last bin holds the limit
    edges = count_edges(13)
    assert edges.tolist() == [*range(11), 12, 14]
    assert count_labels(edges) == [*(str(i) for i in range(10)), "10-11", "12-13"]
    assert gap_edges(365).tolist() == [0, 1, 7, 30, 91, 182, 365]
    assert gap_edges(1000).tolist() == [0, 1, 7, 30, 91, 182, 365, 730, 1000]
    assert gap_edges(5).tolist() == [0, 1, 5]  # spans beyond the horizon are cut


# -- per-cohort quantities ----------------------------------------------------------------------
def test_timeseries_figures_by_hand(tiny_schema):
    c = make_cohort(
        tiny_schema,
        [("a", "male", 40), ("b", "female", 50), ("c", "male", 60)],
        [
            ("a", 0, "glucose", 100),
            ("a", 73.05, "glucose", 110),
            ("a", 73.05, "hba1c", 6.0),
            ("b", 10, "glucose", 90),
        ],
    )
    assert events_per_patient(c).tolist() == [3, 1, 0]
    assert event_gaps(c).tolist() == [73.05]
    assert patient_slopes(c, "glucose").tolist() == pytest.approx([50.0])  # 10 in 0.2 years
    assert lag1_correlation(c, "glucose") == {"pairs": 1, "correlation": None}


def test_slopes_leave_out_patients_measured_at_one_time(tiny_schema):
    c = make_cohort(
        tiny_schema,
        [("a", "male", 40), ("b", "female", 50), ("c", "male", 60), ("d", "male", 70)],
        [
            ("a", 0, "glucose", 100),
            ("a", DAYS * 0.1, "glucose", 110),
            ("a", DAYS * 0.4, "glucose", 104),
            ("b", 5, "glucose", 90),  # one measurement
            ("c", 7, "glucose", 90),
            ("c", 7, "hba1c", 6.0),  # two channels at one time: no glucose slope either
            ("d", 0, "glucose", 300),
            ("d", DAYS / 4, "glucose", 200),
        ],
    )
    least_squares = np.polyfit([0, 0.1, 0.4], [100, 110, 104], 1)[0]  # per year
    assert patient_slopes(c, "glucose").tolist() == pytest.approx([least_squares, -400.0])
    assert patient_slopes(c, "hba1c").tolist() == []


def test_lag1_correlation_of_persistent_and_reversing_levels(tiny_schema):
    steady = two_visits(tiny_schema, "s", gap=30, rise=10)  # pairs (100 + i, 110 + i)
    assert lag1_correlation(steady, "glucose") == {"pairs": 10, "correlation": pytest.approx(1.0)}
    rows = [(f"r{i}", "male", 40) for i in range(10)]
    events = [(f"r{i}", 0.0, "glucose", 100 + i) for i in range(10)]
    events += [(f"r{i}", 30.0, "glucose", 200 - i) for i in range(10)]
    reversing = make_cohort(tiny_schema, rows, events)
    assert lag1_correlation(reversing, "glucose")["correlation"] == pytest.approx(-1.0)
    assert lag1_correlation(steady, "glucose", min_pairs=11)["correlation"] is None
    figures = timeseries_figures(steady, reversing)["channels"]["glucose"]
    assert figures["lag1_difference"] == pytest.approx(2.0)


def test_mean_trajectory_by_public_time_bin(tiny_schema):
    c = two_visits(tiny_schema, "p", gap=40, rise=10, n=4)  # days 0 and 40, values 100..103 +10
    edges = [0.0, 36.5, 73.0, 365.0]
    assert mean_trajectory(c, "glucose", edges) == [101.5, 111.5, None]
    assert mean_trajectory(c, "hba1c", edges) == [None, None, None]


# -- comparison ---------------------------------------------------------------------------------
def test_a_known_change_of_visit_spacing_gives_known_figures(tiny_schema):
    """Same patients, same values, visits 3 days apart in the real cohort and 10 days apart in
    the synthetic one: only the gap and slope figures move, by known amounts."""
    real = two_visits(tiny_schema, "r", gap=3, rise=10)
    synth = two_visits(tiny_schema, "s", gap=10, rise=10)
    fig = timeseries_figures(real, synth)
    assert fig["gaps"]["real"] == [0, 10, 0, 0, 0, 0]  # [1, 7) days
    assert fig["gaps"]["synthetic"] == [0, 0, 10, 0, 0, 0]  # [7, 30) days
    m = summarize_timeseries(fig)
    assert m["gap_tvd"] == 1.0 and m["gap_ks"] == 1.0
    assert m["events_per_patient_tvd"] == 0.0 and m["channel_share_tvd"] == 0.0
    assert m["lag1_diff_max"] == pytest.approx(0.0, abs=1e-12)
    glucose = fig["channels"]["glucose"]
    assert glucose["slope_real"] == pytest.approx(10 * DAYS / 3)  # per year
    assert glucose["slope_synthetic"] == pytest.approx(10 * DAYS / 10)
    assert m["slope_diff_max"] == pytest.approx((10 * DAYS / 3 - 10 * DAYS / 10) / (600 - 20))
    assert m["slope_ks_max"] == 1.0
    assert fig["channels"]["hba1c"]["slope_ks"] is None  # no hba1c on either side


def test_a_known_change_of_record_length_and_channel_mix(tiny_schema):
    real = two_visits(tiny_schema, "r", gap=3, rise=10)  # 2 glucose events each
    rows = [(f"s{i}", "male", 40) for i in range(10)]
    events = [(f"s{i}", 0.0, "glucose", 100) for i in range(10)]
    events += [(f"s{i}", t, "hba1c", 6.0) for i in range(10) for t in (3.0, 6.0)]
    synth = make_cohort(tiny_schema, rows, events)  # 3 events each, one glucose and two hba1c
    fig = timeseries_figures(real, synth)
    assert fig["events_per_patient"]["real"] == [0, 0, 10, 0, 0, 0]
    assert fig["events_per_patient"]["synthetic"] == [0, 0, 0, 10, 0, 0]
    assert fig["events_per_patient"]["tvd"] == 1.0
    assert fig["channel_share"]["real"] == [20, 0] and fig["channel_share"]["synthetic"] == [10, 20]
    assert fig["channel_share"]["tvd"] == pytest.approx(2 / 3)  # |1 - 1/3| = |0 - 2/3|


# -- evaluator ----------------------------------------------------------------------------------
def test_a_copy_of_the_training_data_scores_zero_and_shows_no_timeline(tiny_schema):
    train = random_cohort(tiny_schema, 40, seed=21, prefix="t")
    holdout = random_cohort(tiny_schema, 40, seed=22, prefix="h")
    r = TimeSeriesEvaluator(AuditInputs(train, holdout, train, tiny_schema)).evaluate().result()
    assert r.status == "ok" and r.kind == "fidelity"
    for name in ("events_per_patient_tvd", "gap_tvd", "gap_ks", "channel_share_tvd"):
        assert r.metrics[name] == 0.0, name
    assert r.baseline["events_per_patient_tvd"] > 0  # fresh patients differ by chance
    shown = r.details["gallery"]
    with_two_times = int((train.events.groupby("patient_id")["time"].nunique() >= 2).sum())
    assert shown["patients"] == [] and shown["excluded_copies"] == with_two_times > 0
    assert "exact copies of real records (never shown)" in shown["note"]


def test_baseline_needs_a_holdout_and_reasons_name_the_short_side(tiny_schema):
    train = two_visits(tiny_schema, "t", gap=3, rise=10)
    synth = two_visits(tiny_schema, "s", gap=10, rise=10)
    empty = make_cohort(tiny_schema, [])
    r = TimeSeriesEvaluator(AuditInputs(train, empty, synth, tiny_schema)).evaluate().result()
    assert r.status == "ok" and r.baseline == {} and r.metrics["gap_tvd"] == 1.0
    one = make_cohort(tiny_schema, [("a", "male", 40)], [("a", 0.0, "glucose", 100)])
    short = TimeSeriesEvaluator(AuditInputs(one, empty, synth, tiny_schema)).evaluate().result()
    assert short.status == "not_run"
    assert short.reason == (
        "needs 2+ patients with events per cohort: train has 1 patients and 1 events"
    )
    assert short.parameters["gallery_patients"] == 4


def test_timeseries_identical_is_zero_and_gallery_is_synthetic(tiny_schema):
    real = random_cohort(tiny_schema, 60, seed=2, prefix="r")
    synth = random_cohort(tiny_schema, 60, seed=3, prefix="s")
    same = TimeSeriesEvaluator(AuditInputs(real, real, real, tiny_schema)).evaluate().result()
    assert same.metrics["events_per_patient_tvd"] == 0.0 and same.metrics["gap_ks"] == 0.0
    assert same.metrics["lag1_diff_max"] == 0.0
    r = TimeSeriesEvaluator(AuditInputs(real, real, synth, tiny_schema)).evaluate().result()
    rows = [p["row"] for p in r.details["gallery"]["patients"]]
    assert len(rows) == 4 and rows == sorted(set(rows)) and "patient_id" not in str(r.details)
    assert same.metrics["slope_ks_max"] == 0.0


def test_gallery_draws_whole_synthetic_timelines(tiny_schema):
    c = make_cohort(
        tiny_schema,
        [("a", "male", 40), ("b", "female", 50), ("c", "male", 60)],
        [
            ("a", 0, "glucose", 100),
            ("a", 30, "glucose", 110),
            ("a", 30, "hba1c", 6.0),
            ("b", 10, "glucose", 90),
        ],
        [("a", "38341003")],
    )
    g = gallery(c, n_patients=5, n_channels=1, random_state=0)
    assert g["horizon_days"] == 365.0
    assert [p["row"] for p in g["patients"]] == [0]  # the only one with 2+ events
    assert g["note"].startswith("1 of the 5 requested synthetic timelines could be shown")
    a = g["patients"][0]
    assert a["attributes"] == [["sex", "male"], ["age", "40"]] and a["events"] == 3
    assert a["conditions"] == [{"code": "38341003", "display": "Hypertension", "onset": 0.0}]
    assert list(a["channels"]) == ["glucose"]
    assert a["channels"]["glucose"]["time"] == [0.0, 30.0]
    assert a["channels"]["glucose"]["value"] == [100.0, 110.0]
    copy = gallery(c, real=[c])  # an exact copy of a real record is never drawn
    assert copy["patients"] == [] and copy["excluded_copies"] == 1
    assert "1 of those are exact copies of real records (never shown)" in copy["note"]


def test_gallery_picks_by_position_when_synthetic_ids_equal_real_ids(tiny_schema):
    real = random_cohort(tiny_schema, 30, seed=4, prefix="sim-")
    synth = random_cohort(tiny_schema, 30, seed=5, prefix="sim-")  # same ids, other records
    assert synth.patient_ids == real.patient_ids
    g = gallery(synth, n_patients=3, real=[real], random_state=1)
    assert len(g["patients"]) == 3 and g["excluded_copies"] == 0 and g["note"] == ""
    first = g["patients"][0]
    pid = synth.patient_ids[first["row"]]
    mine = synth.events[synth.events["patient_id"] == pid]
    assert first["events"] == len(mine)  # the timeline is the synthetic row's, not the real one
    copied = gallery(real, n_patients=3, real=[real, synth])
    with_two = int((real.events.groupby("patient_id")["time"].nunique() >= 2).sum())
    assert copied["patients"] == [] and copied["eligible"] == 0
    assert copied["excluded_copies"] == with_two > 0


def test_timeseries_not_run_without_events(tiny_schema):
    c = make_cohort(tiny_schema, [("a", "male", 40), ("b", "female", 50)])
    r = TimeSeriesEvaluator(AuditInputs(c, c, c, tiny_schema)).evaluate().result()
    assert r.status == "not_run" and "0 events" in r.reason
