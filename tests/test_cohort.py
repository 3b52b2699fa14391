from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsynth.cohort import (
    CHANNEL_LIMIT,
    CLIPPED,
    DUPLICATE_CONDITION,
    MISSING_VALUE,
    ORPHAN,
    OUTSIDE_HORIZON,
    TOTAL_LIMIT,
    UNKNOWN_CATEGORY,
    UNKNOWN_CHANNEL,
    UNKNOWN_CONDITION,
    Cohort,
)
from medsynth.errors import DataError


def _frames():
    patients = pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p3"],
            "sex": ["female", "male", "woman"],
            "age": [17.0, 44.6, 95.0],
        }
    )
    events = pd.DataFrame(
        {
            "patient_id": ["p1"] * 5 + ["p2"] * 4 + ["ghost"],
            "time": [0.0, 10.0, 20.0, 30.0, 5.0, 0.0, 1.0, 400.0, 2.0, 0.0],
            "channel": ["glucose"] * 4
            + ["hba1c", "glucose", "heart_rate", "glucose", "hba1c", "glucose"],
            "value": [90.0, 700.0, 95.0, 99.0, 6.04, np.nan, 70.0, 100.0, 5.0, 1.0],
        }
    )
    conditions = pd.DataFrame(
        {
            "patient_id": ["p1", "p1", "p2", "p2"],
            "code": ["38341003", "38341003", "44054006", "38341003"],
            "onset": [40.0, -3.0, 1.0, 500.0],
        }
    )
    return patients, events, conditions


def test_conform_counts_every_change(tiny_schema):
    cohort, report = Cohort.conform(tiny_schema, *_frames())
    assert report.get(UNKNOWN_CATEGORY, "sex") == 1
    assert report.get(CLIPPED, "age") == 2
    assert report.get(CLIPPED, "glucose") == 1
    assert report.get(UNKNOWN_CHANNEL, "heart_rate") == 1
    assert report.get(MISSING_VALUE, "glucose") == 1
    assert report.get(OUTSIDE_HORIZON, "glucose") == 1
    assert report.get(ORPHAN, "events") == 1
    assert report.get(CHANNEL_LIMIT, "glucose") == 1  # p1 has 4 glucose, limit 3
    assert report.get(TOTAL_LIMIT, "events") == 0
    assert report.get(UNKNOWN_CONDITION, "44054006") == 1
    assert report.get(DUPLICATE_CONDITION, "38341003") == 1
    assert report.total() == 11
    pats = cohort.patients.set_index("patient_id")
    assert (
        pats.loc["p1", "age"] == 18 and pats.loc["p3", "age"] == 90 and pats.loc["p2", "age"] == 45
    )
    assert pd.isna(pats.loc["p3", "sex"])
    p1 = cohort.events[cohort.events.patient_id == "p1"]
    # earliest three glucose kept (truncation is by time), the clipped one at 600
    assert p1[p1.channel == "glucose"].value.tolist() == [90.0, 600.0, 95.0]
    assert p1[p1.channel == "hba1c"].value.tolist() == [6.0]  # rounded to 1 decimal
    cond = cohort.conditions.set_index(["patient_id", "code"])
    assert cond.loc[("p1", "38341003"), "onset"] == 0.0  # earliest, clipped into horizon
    assert cond.loc[("p2", "38341003"), "onset"] == 365.0


def test_total_limit_truncates_latest_events(tiny_schema):
    patients = pd.DataFrame({"patient_id": ["a"], "sex": ["male"], "age": [50]})
    events = pd.DataFrame(
        {
            "patient_id": ["a"] * 6,
            "time": [5, 4, 3, 2, 1, 0],
            "channel": ["glucose", "hba1c"] * 3,
            "value": [100.0] * 6,
        }
    )
    cohort, report = Cohort.conform(tiny_schema, patients, events)
    assert report.get(TOTAL_LIMIT, "events") == 1
    assert cohort.events.time.tolist() == [0, 1, 2, 3, 4]


def test_strict_refuses_out_of_bounds(tiny_schema):
    with pytest.raises(DataError, match="strict"):
        Cohort.conform(tiny_schema, *_frames(), strict=True)


def test_missing_column_is_a_clear_error(tiny_schema):
    patients, events, _ = _frames()
    with pytest.raises(DataError, match="missing column"):
        Cohort.conform(tiny_schema, patients, events.drop(columns="value"))


def test_save_load_round_trip_and_tamper(tiny_schema, tmp_path: Path):
    cohort, _ = Cohort.conform(tiny_schema, *_frames())
    out = cohort.save(tmp_path / "c")
    back = Cohort.load(out)
    assert back.content_hash() == cohort.content_hash()
    assert back.source == cohort.source
    pd.testing.assert_frame_equal(back.events, cohort.events)
    with pytest.raises(Exception, match="not empty"):
        cohort.save(out)
    cohort.save(out, overwrite=True)
    # a changed table is detected
    tables = Cohort.load(out)
    tables.patients.loc[0, "age"] = 77
    tables.patients.to_parquet(out / "patients.parquet", index=False)
    with pytest.raises(DataError, match="content_sha256"):
        Cohort.load(out)


@pytest.mark.parametrize("drop", ["source", "source.kind"])
def test_load_refuses_a_header_without_its_source(tiny_schema, tmp_path: Path, drop):
    cohort, _ = Cohort.conform(tiny_schema, *_frames())
    out = cohort.save(tmp_path / "c")
    header = json.loads((out / "cohort.json").read_text())
    if drop == "source":
        del header["source"]
    else:
        del header["source"]["kind"]
    (out / "cohort.json").write_text(json.dumps(header))
    with pytest.raises(DataError, match="field 'source' is missing or lacks"):
        Cohort.load(out)


def test_failed_save_leaves_nothing(tiny_schema, tmp_path: Path, monkeypatch):
    cohort, _ = Cohort.conform(tiny_schema, *_frames())

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError):
        cohort.save(tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_split_is_seeded_and_patient_level(tiny_schema):
    patients = pd.DataFrame(
        {"patient_id": [f"p{i}" for i in range(20)], "sex": "female", "age": 40}
    )
    events = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(20)],
            "time": 0.0,
            "channel": "glucose",
            "value": 100.0,
        }
    )
    cohort, _ = Cohort.conform(tiny_schema, patients, events)
    train, hold = cohort.split(0.3, random_state=7)
    again, _ = cohort.split(0.3, random_state=7)
    assert train.patient_ids == again.patient_ids
    assert len(hold.patient_ids) == 6 and not set(train.patient_ids) & set(hold.patient_ids)
    assert set(hold.events.patient_id) == set(hold.patient_ids)
    with pytest.raises(DataError):
        cohort.split(1.0, random_state=0)


def test_neighbouring_cohorts_share_schema_but_not_fingerprint(tiny_schema):
    patients, events, conditions = _frames()
    a, _ = Cohort.conform(tiny_schema, patients, events, conditions)
    b, _ = Cohort.conform(tiny_schema, patients.iloc[:2], events, conditions)
    assert a.schema.sha256 == b.schema.sha256
    assert a.source.fingerprint != b.source.fingerprint


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False), min_size=1, max_size=20))
def test_values_always_inside_bounds_and_rounded(tiny_schema, values):
    n = len(values)
    patients = pd.DataFrame({"patient_id": ["x"], "sex": ["male"], "age": [30]})
    events = pd.DataFrame(
        {
            "patient_id": ["x"] * n,
            "time": np.linspace(0, 300, n),
            "channel": ["hba1c"] * n,
            "value": values,
        }
    )
    cohort, report = Cohort.conform(tiny_schema, patients, events)
    v = cohort.events.value.to_numpy()
    assert ((v >= 3) & (v <= 18)).all()
    assert np.allclose(v, np.round(v, 1))
    assert len(v) + report.get(CHANNEL_LIMIT, "hba1c") == n


def test_content_hash_is_deterministic(tiny_schema):
    a, _ = Cohort.conform(tiny_schema, *_frames())
    b, _ = Cohort.conform(tiny_schema, *_frames())
    assert a.content_hash() == b.content_hash()
    assert len(bytes.fromhex(a.content_hash())) == hashlib.sha256().digest_size


def _grouped_schema(max_per_channel: int = 3, max_total: int = 5):
    from medsynth.schema import parse_schema
    from tests.helpers import minimal_doc

    doc = minimal_doc()
    doc["measurement_groups"] = [{"name": "labs", "channels": ["glucose", "hba1c"]}]
    doc["limits"].update(max_events_per_channel=max_per_channel, max_events_total=max_total)
    return parse_schema(doc)


def test_conform_drops_and_counts_incomplete_groups():
    from medsynth.cohort import INCOMPLETE_GROUP, REPEATED_GROUP_VALUE

    schema = _grouped_schema()
    patients = pd.DataFrame({"patient_id": ["a", "b"]})
    events = pd.DataFrame(
        {
            "patient_id": ["a", "a", "a", "a", "a", "b", "b"],
            "time": [0.0, 0.0, 5.0, 9.0, 9.0, 1.0, 1.0],
            "channel": ["hba1c", "glucose", "glucose", "glucose", "glucose", "hba1c", "hba1c"],
            "value": [6.0, 100.0, 90.0, 80.0, 85.0, 5.0, 5.5],
        }
    )
    cohort, report = Cohort.conform(schema, patients, events)
    kept = cohort.events
    assert kept[["patient_id", "time", "channel"]].values.tolist() == [
        ["a", 0.0, "glucose"],
        ["a", 0.0, "hba1c"],
    ]
    assert report.get(INCOMPLETE_GROUP, "glucose") == 2  # a@5, a@9 (its first value)
    assert report.get(INCOMPLETE_GROUP, "hba1c") == 1  # b@1 (its first value)
    assert report.get(REPEATED_GROUP_VALUE, "glucose") == 1
    assert report.get(REPEATED_GROUP_VALUE, "hba1c") == 1
    assert report.total() == 5 == len(events) - len(kept)


def test_limits_keep_groups_whole():
    from medsynth.cohort import INCOMPLETE_GROUP

    schema = _grouped_schema(max_per_channel=2, max_total=3)
    patients = pd.DataFrame({"patient_id": ["a"]})
    times = [0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    channels = ["glucose", "hba1c", "glucose", "glucose", "hba1c", "glucose", "hba1c"]
    events = pd.DataFrame({"patient_id": "a", "time": times, "channel": channels, "value": 100.0})
    events.loc[events["channel"] == "hba1c", "value"] = 6.0
    cohort, report = Cohort.conform(schema, patients, events)
    # The lone glucose at day 1 goes first, so the per-channel limit (2) sees whole groups and
    # cuts the day-3 group whole; the total limit (3) then cuts the day-2 group in half and
    # its remainder goes too.
    assert cohort.events[["time", "channel"]].values.tolist() == [
        [0.0, "glucose"],
        [0.0, "hba1c"],
    ]
    assert report.get(INCOMPLETE_GROUP, "glucose") == 2
    assert report.get(CHANNEL_LIMIT, "glucose") == report.get(CHANNEL_LIMIT, "hba1c") == 1
    assert report.get(TOTAL_LIMIT, "events") == 1
    assert report.total() == len(events) - len(cohort.events)
