"""One person, one budget: the ledger recognises a dataset by its patients, so the same patients
under another name, file or format, reordered or read with another schema, land on the budget
they were first charged to, and no raw patient id reaches the ledger."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest

from medsynth.cohort import Cohort
from medsynth.errors import BudgetError
from medsynth.privacy.identity import Overlap, identity_keys, recognise
from medsynth.privacy.ledger import Ledger
from medsynth.schema import parse_schema
from medsynth.simulate import simulate
from tests.helpers import minimal_doc, privacy_record


@pytest.fixture()
def cohort(tiny_schema) -> Cohort:
    return simulate(tiny_schema, 60, random_state=8)


@pytest.fixture()
def book(tmp_path) -> Ledger:
    return Ledger.create(tmp_path / "ledger.jsonl")


def charge(book: Ledger, cohort: Cohort, name: str | None = None):
    name = name or cohort.source.budget_name
    return book.charge(name, privacy_record(1.0), patients=cohort.patient_ids)


def test_keys_are_keyed_short_and_hide_the_ids(cohort, book):
    keys = identity_keys(cohort.patient_ids)
    assert len(keys) == cohort.n_patients and all(len(k) == 16 for k in keys)
    assert identity_keys(reversed(cohort.patient_ids)) == keys  # order does not matter
    assert identity_keys([f" {p} " for p in cohort.patient_ids]) == keys
    assert not set(keys) & set(cohort.patient_ids)


def test_the_rule_on_exact_counts():
    registered = {"a": {"1", "2", "3", "4"}, "b": {"9"}}
    assert recognise(["1", "2", "5"], registered) == [Overlap("a", 2, 3, 4)]
    assert Overlap("a", 2, 3, 4).same  # 2 of the cohort's 3
    assert Overlap("a", 2, 5, 4).same  # half of the dataset's 4
    assert not Overlap("a", 1, 5, 4).same
    assert recognise(["7"], registered) == []


def test_the_same_patients_under_another_name_are_refused(book, cohort, tmp_path):
    charge(book, cohort, "cohort-a")
    before = book.path.read_bytes()
    refused = r"60 of its 60 patients are patients of dataset cohort-a"
    with pytest.raises(BudgetError, match=refused):
        charge(book, cohort, "cohort-b")
    assert book.path.read_bytes() == before  # nothing written
    charge(book, cohort, "cohort-a")  # the same budget: charged again, as it should be
    assert book.spent("cohort-a") == 2.0 and "cohort-b" not in book.datasets()


def test_re_encodings_land_on_the_same_budget(book, cohort, tmp_path):
    from medsynth.tabular import read_tables, write_tables

    charge(book, cohort)  # named by its fingerprint
    write_tables(cohort, tmp_path / "csv", format="csv")
    csv = read_tables(tmp_path / "csv")[0]
    reordered = cohort.subset(list(reversed(cohort.patient_ids)))
    one_more = Cohort.conform(
        cohort.schema,
        pd.concat([cohort.patients, cohort.patients.head(1).assign(patient_id="new")]),
        cohort.events,
        cohort.conditions,
    )[0]
    one_less = cohort.subset(cohort.patient_ids[1:])
    assert csv.source.budget_name != cohort.source.budget_name  # new files, new fingerprint
    for copy_ in (csv, reordered, one_more, one_less):
        with pytest.raises(BudgetError, match=f"patients of dataset {cohort.source.budget_name}"):
            charge(book, copy_, copy_.source.budget_name + "-copy")


def test_a_schema_that_drops_a_channel_or_widens_a_bound_changes_nothing(book, cohort):
    doc = copy.deepcopy(minimal_doc())
    doc["channels"] = doc["channels"][:1]
    doc["channels"][0]["max"] = 900
    other = Cohort.conform(parse_schema(doc), cohort.patients, cohort.events, cohort.conditions)[0]
    charge(book, cohort, "first")
    with pytest.raises(BudgetError, match="patients of dataset first"):
        charge(book, other, "second")


def test_an_edited_cohort_json_is_still_the_same_patients(book, cohort, tmp_path):
    folder = cohort.save(tmp_path / "cohort")
    charge(book, Cohort.load(folder))
    header = json.loads((folder / "cohort.json").read_text())
    header["source"]["fingerprint"] = "f" * 64
    (folder / "cohort.json").write_text(json.dumps(header))
    edited = Cohort.load(folder)
    assert edited.source.budget_name == "f" * 64
    with pytest.raises(BudgetError, match="patients of dataset"):
        charge(book, edited)


def test_other_patients_are_another_dataset_and_no_raw_id_is_stored(book, cohort, tiny_schema):
    others = simulate(tiny_schema, 40, random_state=9)
    others = others.subset(others.patient_ids)  # ids differ from the first cohort's
    renamed = Cohort.conform(
        tiny_schema,
        others.patients.assign(patient_id=lambda d: "x-" + d["patient_id"]),
        others.events.assign(patient_id=lambda d: "x-" + d["patient_id"]),
        others.conditions.assign(patient_id=lambda d: "x-" + d["patient_id"]),
    )[0]
    charge(book, cohort, "a")
    charge(book, renamed, "b")
    assert book.datasets() == ["a", "b"]
    assert {n: len(k) for n, k in book.identities().items()} == {"a": 60, "b": 40}
    data = book.path.read_text()
    assert not any(f'"{p}"' in data for p in [*cohort.patient_ids, *renamed.patient_ids])


def test_export_and_ingest_again_is_the_same_dataset(book, cohort, tmp_path):
    from medsynth.fhir.read import read_fhir
    from medsynth.fhir.write import write_fhir

    for layout in ("ndjson", "bundle"):
        write_fhir(cohort, tmp_path / layout, format=layout, random_state=3)
        again = read_fhir([tmp_path / layout], cohort.schema).cohort
        assert sorted(again.patient_ids) == sorted(cohort.patient_ids)  # the ids come back
        assert again.source.fingerprint != cohort.source.fingerprint
    charge(book, cohort, "original")
    with pytest.raises(BudgetError, match="patients of dataset original"):
        charge(book, again, again.source.budget_name)


def test_synthetic_patients_carry_no_source_id(tmp_path, tiny_schema):
    import dataclasses

    from medsynth.fhir.resources import SOURCE_ID_SYSTEM
    from medsynth.fhir.write import write_fhir

    fake = simulate(tiny_schema, 5, random_state=1)
    fake = dataclasses.replace(fake, source=dataclasses.replace(fake.source, kind="synthetic"))
    write_fhir(fake, tmp_path / "out", random_state=0)
    assert SOURCE_ID_SYSTEM not in (tmp_path / "out" / "Patient.ndjson").read_text()
