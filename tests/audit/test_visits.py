"""Visit-level figures: the definitions of the shared pbcseq export's README, and the structure
counts that plausible timelines never break."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

from medsynth.audit.visits import structure_counts, visit_figures, visit_table
from medsynth.schema import load_schema, parse_schema
from tests.helpers import make_cohort, minimal_doc

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "pbcseq-fhir"


def _schema():
    doc = copy.deepcopy(minimal_doc())
    doc["limits"]["max_events_per_channel"] = 5
    doc["limits"]["max_events_total"] = 10
    return parse_schema(doc)


def test_a_visit_is_a_patient_day_and_repeats_are_counted_per_day() -> None:
    schema = _schema()
    rows = [("a", "female", 40), ("b", "male", 50)]
    events = [
        ("a", 0.0, "glucose", 100.0),
        ("a", 0.2, "glucose", 101.0),  # same day: a repeat, not a second visit
        ("a", 0.2, "hba1c", 5.5),
        ("a", 30.0, "glucose", 110.0),
        ("b", 0.0, "hba1c", 6.0),
    ]
    cohort = make_cohort(schema, rows, events, [("a", "38341003")])
    table = visit_table(cohort)
    assert list(table.index) == [("a", 0), ("a", 30), ("b", 0)]
    assert table.loc[("a", 0), "glucose"] == 100.0  # the visit's first value
    counts = structure_counts(cohort)
    assert counts["repeat_cells"] == 1 and counts["cells"] == 4
    assert counts["onsets_after_last_visit"] == 0 and counts["onsets"] == 1


def test_onsets_after_the_last_visit_are_counted() -> None:
    schema = _schema()
    cohort = make_cohort(
        schema,
        [("a", "female", 40)],
        [("a", 0.0, "glucose", 100.0), ("a", 10.0, "glucose", 90.0)],
        [("a", "38341003")],
    )
    late = cohort.conditions.copy()
    late["onset"] = 11.0
    moved = type(cohort)(cohort.schema, cohort.patients, cohort.events, late, cohort.source)
    assert structure_counts(moved)["onsets_after_last_visit"] == 1
    assert structure_counts(cohort)["onsets_after_last_visit"] == 0


def test_a_cohort_against_itself_scores_zero() -> None:
    schema = _schema()
    rows = [(f"p{i}", "female", 40 + i) for i in range(6)]
    events = [(f"p{i}", 7.0 * k, "glucose", 90.0 + i + k) for i in range(6) for k in range(i + 1)]
    cohort = make_cohort(schema, rows, events)
    figures = visit_figures(cohort, cohort)
    assert figures.lab_tvd == 0.0 and figures.visits_tvd == 0.0 and figures.gap_tvd == 0.0
    assert figures.presence_max_gap == 0.0


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared pbcseq export not found at {SHARED}")
def test_reproduces_the_real_holdout_floors_of_the_shared_export(tmp_path) -> None:
    """README: real holdout vs real train gives lab TVD 0.041, visits TVD 0.160, gap TVD
    0.043, lag-1 MAD 0.029. Ingest clips five values to the schema's bounds, which moves the
    lab figure in its fourth decimal, so each is matched to 0.001."""
    spec = importlib.util.spec_from_file_location("pbc_split", SHARED / "split.py")
    assert spec is not None and spec.loader is not None
    split = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(split)
    split.main("pbcseq", str(SHARED), str(tmp_path / "split"))  # the README's own split
    from medsynth.sources import open_source

    schema = load_schema(SHARED / "pbcseq.dataset.json")
    train = open_source([tmp_path / "split" / "train"], schema).cohort
    holdout = open_source([tmp_path / "split" / "holdout"], schema).cohort
    assert (train.n_patients, holdout.n_patients) == (218, 94)
    figures = visit_figures(train, holdout)
    assert figures.lab_tvd == pytest.approx(0.041, abs=1e-3)
    assert figures.visits_tvd == pytest.approx(0.160, abs=1e-3)
    assert figures.gap_tvd == pytest.approx(0.043, abs=1e-3)
    assert figures.lag1_mad == pytest.approx(0.029, abs=1e-3)
    assert figures.repeat_cells == 0 and figures.onsets_after_last_visit == 0
    assert figures.visits_real == 1339
