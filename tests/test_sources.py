"""open_source: a cohort folder, a tables folder and FHIR all open as the same cohort; bad input
gives a DataError that names what was wrong."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from medsynth.cohort import Cohort
from medsynth.errors import DataError
from medsynth.fhir.write import write_fhir
from medsynth.schema import parse_schema
from medsynth.simulate import simulate
from medsynth.sources import is_cohort_dir, is_tables_dir, open_source
from medsynth.tabular import write_tables
from tests.helpers import minimal_doc


@pytest.fixture(scope="module")
def cohort(tiny_schema) -> Cohort:
    return simulate(tiny_schema, 12, random_state=3)


@pytest.fixture(scope="module")
def written(cohort, tmp_path_factory):
    """The cohort as a cohort folder, as CSV tables and as bulk FHIR."""
    root = tmp_path_factory.mktemp("sources")
    cohort.save(root / "cohort")
    write_tables(cohort, root / "tables")
    write_fhir(cohort, root / "fhir", random_state=1)
    return root


def records(c: Cohort) -> list[tuple[str, str, str]]:
    """Each patient's attributes, events and conditions, ids left out, in a canonical order
    (the FHIR writer invents patient ids)."""
    out = []
    attributes = c.patients.drop(columns="patient_id").to_numpy().tolist()
    for pid, attrs in zip(c.patient_ids, attributes, strict=True):
        ev = c.events[c.events["patient_id"] == pid][["time", "channel", "value"]]
        cond = c.conditions[c.conditions["patient_id"] == pid][["code", "onset"]]
        out.append(
            (
                repr(attrs),
                repr(sorted(ev.itertuples(index=False, name=None))),
                repr(sorted(cond.itertuples(index=False, name=None))),
            )
        )
    return sorted(out)


def test_a_cohort_folder_opens_as_the_saved_cohort(written, cohort, tiny_schema):
    assert is_cohort_dir(written / "cohort") and not is_tables_dir(written / "cohort")
    opened = open_source([written / "cohort"], None)
    assert opened.kind == "cohort folder" and opened.ingest is None
    assert opened.cohort.content_hash() == cohort.content_hash()
    assert opened.lines() == [f"cohort folder: 12 patients, {len(cohort.events)} events"]
    with_schema = open_source([str(written / "cohort")], tiny_schema)  # a str works too
    assert with_schema.cohort.content_hash() == cohort.content_hash()


def test_a_cohort_folder_refuses_another_schema(written):
    other = parse_schema({**minimal_doc(), "name": "other"})
    with pytest.raises(DataError) as err:
        open_source([written / "cohort"], other)
    text = str(err.value)
    assert "built with schema 'tiny'" in text and "not the given 'other'" in text
    assert "drop --schema or re-run ingest" in text


def test_a_tables_folder_opens_as_the_same_cohort(written, cohort, tiny_schema):
    assert is_tables_dir(written / "tables") and not is_cohort_dir(written / "tables")
    for schema in (None, tiny_schema):  # without a schema, the one tables.json embeds
        opened = open_source([written / "tables"], schema)
        assert opened.kind == "cohort tables" and opened.ingest is None
        assert opened.cohort.schema.sha256 == cohort.schema.sha256
        assert opened.cohort.patient_ids == cohort.patient_ids
        assert records(opened.cohort) == records(cohort)
        assert opened.lines() == [f"cohort tables: 12 patients, {len(cohort.events)} events"]


def test_tables_out_of_bounds_are_clipped_or_refused_in_strict_mode(cohort, tmp_path):
    folder = write_tables(cohort, tmp_path / "tables")
    events = pd.read_csv(folder / "events.csv")
    row = events.index[events["channel"] == "glucose"][0]
    events.loc[row, "value"] = 9999.0  # glucose is bounded to [20, 600]
    events.to_csv(folder / "events.csv", index=False)
    clipped = open_source([folder], None).cohort
    assert clipped.events.loc[clipped.events["channel"] == "glucose", "value"].max() == 600.0
    with pytest.raises(DataError, match="outside their channel bounds.*strict mode"):
        open_source([folder], None, strict=True)


def test_fhir_opens_through_the_reader_with_its_account(written, cohort, tiny_schema):
    opened = open_source([written / "fhir"], tiny_schema)
    assert opened.kind == "FHIR" and opened.ingest is not None
    assert opened.ingest.issues == ()
    assert opened.cohort.n_patients == 12
    assert records(opened.cohort) == records(cohort)
    lines = opened.lines()
    assert lines == list(opened.ingest.lines())
    assert any(line.startswith("mapped: 12 patients") for line in lines)


def test_fhir_needs_a_schema(written):
    with pytest.raises(DataError, match="reading FHIR needs --schema"):
        open_source([written / "fhir"], None)


def test_bad_sources_give_a_clear_data_error(written, tiny_schema, tmp_path):
    with pytest.raises(DataError, match="no source given"):
        open_source([], tiny_schema)
    with pytest.raises(DataError) as err:
        open_source([written / "cohort", tmp_path / "nope", tmp_path / "gone"], tiny_schema)
    assert str(err.value) == f"source not found: {tmp_path / 'nope'}, {tmp_path / 'gone'}"
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not FHIR")
    with pytest.raises(DataError, match="no FHIR files .* found in"):
        open_source([junk], tiny_schema)
    broken = tmp_path / "broken-cohort"
    broken.mkdir()
    (broken / "cohort.json").write_text("{not json")
    with pytest.raises(DataError, match="broken-cohort: cannot read cohort"):
        open_source([broken], None)
    header = tmp_path / "broken-tables"
    header.mkdir()
    (header / "tables.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DataError, match="field 'format' is 'something else'"):
        open_source([header], None)


def test_a_cohort_folder_is_not_read_as_fhir_beside_other_sources(written, tiny_schema):
    """Given with other paths, a cohort or tables folder would be scanned for FHIR JSON files and
    open as an empty cohort; it is refused, naming the folders."""
    for pair in (
        [written / "cohort", written / "fhir"],
        [written / "fhir", written / "tables"],
        [written / "cohort", written / "cohort"],
    ):
        with pytest.raises(DataError, match="opens on its own") as err:
            open_source(pair, tiny_schema)
        named = [p for p in pair if p.name != "fhir"]
        assert all(str(p) in str(err.value) for p in named)
    files = [written / "fhir" / "Patient.ndjson", written / "fhir" / "Observation.ndjson"]
    two = open_source(files, tiny_schema)  # FHIR files still go together
    assert two.kind == "FHIR" and two.cohort.n_patients == 12
    assert len(two.cohort.events) == len(open_source([written / "fhir"], tiny_schema).cohort.events)
