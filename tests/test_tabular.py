"""CSV / Parquet cohort tables: exact output, lossless round trips, precise errors."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from medsynth._io import OutputExistsError
from medsynth.cohort import Cohort
from medsynth.errors import DataError
from medsynth.schema import Attribute, parse_schema
from medsynth.tabular import TABLES_FORMAT, read_tables, write_tables
from tests.helpers import minimal_doc


@pytest.fixture(scope="module")
def schema():
    doc = minimal_doc()
    doc["attributes"] = [
        {
            "name": "sex",
            "type": "categorical",
            "fhir": "Patient.gender",
            "categories": ["female", "male"],
        },
        {
            "name": "zip3",
            "type": "categorical",
            "fhir": "Patient.address.zip3",
            "categories": ["021", "100"],
        },
        {"name": "deceased", "type": "boolean", "fhir": "Patient.deceased"},
    ]
    parsed = parse_schema(doc)
    # A date attribute is built directly: the value objects allow it (see Attribute.date_bounds).
    birth = Attribute(
        name="birth_date", type="date", fhir="Patient.birthDate", min="1900-01-01", max="2020-12-31"
    )
    sex, zip3, deceased = parsed.attributes
    return dataclasses.replace(parsed, attributes=(sex, birth, zip3, deceased))


@pytest.fixture(scope="module")
def cohort(schema):
    patients = pd.DataFrame(
        {
            "patient_id": ["p1", "p2"],
            "sex": ["female", None],
            "birth_date": ["1970-06-15", None],
            "zip3": ["021", None],
            "deceased": [True, None],
        }
    )
    events = pd.DataFrame(
        {
            "patient_id": ["p1", "p1", "p2"],
            "time": [0.0, 1 / 3, 2.5],
            "channel": ["glucose", "hba1c", "glucose"],
            "value": [95.0, 6.1, 101.0],
        }
    )
    conditions = pd.DataFrame({"patient_id": ["p2"], "code": ["38341003"], "onset": [0.25]})
    return Cohort.conform(schema, patients, events, conditions)[0]


def test_csv_output_is_exact(cohort, tmp_path):
    out = write_tables(cohort, tmp_path / "t")
    assert sorted(p.name for p in out.iterdir()) == [
        "conditions.csv",
        "events.csv",
        "patients.csv",
        "tables.json",
    ]
    assert (out / "patients.csv").read_text() == (
        "patient_id,sex,birth_date,zip3,deceased\np1,female,1970-06-15,021,true\np2,,,,\n"
    )
    assert (out / "events.csv").read_text() == (
        "patient_id,time,channel,value\n"
        "p1,0.0,glucose,95.0\n"
        "p1,0.3333333333333333,hba1c,6.1\n"
        "p2,2.5,glucose,101.0\n"
    )
    assert (out / "conditions.csv").read_text() == "patient_id,code,onset\np2,38341003,0.25\n"
    header = json.loads((out / "tables.json").read_text())
    assert header["format"] == TABLES_FORMAT and header["table_format"] == "csv"
    assert header["schema"] == "tiny" and header["schema_sha256"] == cohort.schema.sha256
    assert {k: v["rows"] for k, v in header["tables"].items()} == {
        "patients": 2,
        "events": 3,
        "conditions": 1,
    }
    assert header["source"] == cohort.source.to_dict()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip_is_lossless(cohort, schema, tmp_path, fmt):
    write_tables(cohort, tmp_path / fmt, format=fmt)
    back, report = read_tables(tmp_path / fmt, schema)
    assert report.counts == ()
    assert back.content_hash() == cohort.content_hash()
    pd.testing.assert_frame_equal(back.patients, cohort.patients)
    pd.testing.assert_frame_equal(back.events, cohort.events)
    pd.testing.assert_frame_equal(back.conditions, cohort.conditions)
    assert back.source.kind == "tables" and len(back.source.fingerprint) == 64
    (tmp_path / fmt / "tables.json").unlink()  # the format is found from the files
    assert read_tables(tmp_path / fmt, schema)[0].content_hash() == cohort.content_hash()


def test_the_schema_comes_from_the_header_when_not_given(tiny_schema, tmp_path):
    events = pd.DataFrame(
        {"patient_id": ["p1"], "time": [0.5], "channel": ["hba1c"], "value": [6.25]}
    )
    cohort, _ = Cohort.conform(
        tiny_schema, pd.DataFrame({"patient_id": ["p1"], "age": [40]}), events
    )
    out = write_tables(cohort, tmp_path / "t")
    header = json.loads((out / "tables.json").read_text())
    assert header["dataset_schema"] == tiny_schema.raw
    back, report = read_tables(out)
    assert back.schema == tiny_schema and back.content_hash() == cohort.content_hash()
    assert report.counts == ()
    header["schema_sha256"] = "0" * 64
    (out / "tables.json").write_text(json.dumps(header))
    with pytest.raises(DataError, match=r"tables.json: field 'schema_sha256' is 000000000000"):
        read_tables(out)
    assert read_tables(out, tiny_schema)[0].content_hash() == cohort.content_hash()
    (out / "tables.json").unlink()
    with pytest.raises(DataError, match="no tables.json naming the dataset schema"):
        read_tables(out)


def test_output_is_refused_unless_overwrite(cohort, tmp_path):
    write_tables(cohort, tmp_path / "t")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_tables(cohort, tmp_path / "t", format="parquet")
    write_tables(cohort, tmp_path / "t", format="parquet", overwrite=True)
    assert sorted(p.suffix for p in (tmp_path / "t").iterdir()) == [
        ".json",
        ".parquet",
        ".parquet",
        ".parquet",
    ]
    with pytest.raises(DataError, match="'xlsx' is not one of csv, parquet"):
        write_tables(cohort, tmp_path / "u", format="xlsx")  # type: ignore[arg-type]
    assert not (tmp_path / "u").exists()


def _write(
    folder,
    patients="patient_id,sex\np1,female\n",
    events="patient_id,time,channel,value\n",
    conditions="patient_id,code,onset\n",
):
    folder.mkdir()
    for name, text in (("patients", patients), ("events", events), ("conditions", conditions)):
        if text is not None:
            (folder / f"{name}.csv").write_text(text)
    return folder


@pytest.mark.parametrize(
    "tables, message",
    [
        (
            {"events": "patient_id,time,channel,value\np1,1,glucose,90\np1,abc,glucose,91\n"},
            r"events.csv, line 3, column 'time': 'abc' is not a number",
        ),
        (
            {"conditions": "patient_id,code,onset\np1,38341003,soon\n"},
            r"conditions.csv, line 2, column 'onset': 'soon' is not a number",
        ),
        (
            {"patients": "patient_id,sex,deceased\np1,female,maybe\n"},
            r"patients.csv, line 2, column 'deceased': 'maybe' is not a boolean",
        ),
        (
            {"patients": "patient_id,birth_date\np1,1970-06-15\np2,1970-13-01\n"},
            r"patients.csv, line 3, column 'birth_date': '1970-13-01' is not a date",
        ),
        (
            {"patients": "patient_id,sex\np1,female\n,male\n"},
            r"patients.csv, line 3, column 'patient_id': empty value",
        ),
        (
            {"events": "patient_id,time,channel\np1,1,glucose\n"},
            r"events.csv: missing column\(s\) \['value'\], unknown column\(s\) \[\]",
        ),
        (
            {"patients": "patient_id,gender\np1,female\n"},
            r"patients.csv: missing column\(s\) \[\], unknown column\(s\) \['gender'\]",
        ),
        ({"patients": None}, r"no patients table \(patients.csv or patients.parquet\)"),
    ],
)
def test_bad_tables_name_file_row_and_column(schema, tmp_path, tables, message):
    folder = _write(tmp_path / "t", **tables)
    with pytest.raises(DataError, match=message):
        read_tables(folder, schema)


def test_parquet_errors_name_the_row(cohort, schema, tmp_path):
    out = write_tables(cohort, tmp_path / "t", format="parquet")
    events = pd.read_parquet(out / "events.parquet").astype({"time": "str"})
    events.loc[1, "time"] = "later"
    events.to_parquet(out / "events.parquet", index=False)
    with pytest.raises(DataError, match=r"events.parquet, row 2, column 'time': 'later'"):
        read_tables(out, schema)


def test_values_go_through_conform(schema, tmp_path):
    folder = _write(
        tmp_path / "t",
        patients="patient_id,sex,zip3\np1,woman,021\n",
        events="patient_id,time,channel,value\np1,1,glucose,900\np1,2,glucose,\n",
        conditions=None,
    )
    back, report = read_tables(folder, schema)
    assert report.to_dict() == {
        "clipped to bounds": {"glucose": 1},
        "missing or non-finite value dropped": {"glucose": 1},
        "unknown category set to missing": {"sex": 1},
    }
    assert pd.isna(back.patients.loc[0, "birth_date"])  # no column: missing
    assert pd.isna(back.patients.loc[0, "sex"]) and back.patients.loc[0, "zip3"] == "021"
    assert list(back.events.value) == [600.0]  # clipped; the empty value dropped
    assert len(back.conditions) == 0
    with pytest.raises(DataError, match="strict mode"):
        read_tables(folder, schema, strict=True)
