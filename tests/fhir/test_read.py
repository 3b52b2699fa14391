"""FHIR ingest: exact mappings of hand-written Bundles and bulk files, and every bad case."""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import hashlib
import json
import shutil
import tracemalloc
import zlib
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsynth.errors import DataError
from medsynth.fhir.read import (
    DUPLICATE_PATIENT,
    DUPLICATE_RESOURCE,
    NOTE_BEFORE_BIRTH,
    NOTE_EARLY_ONSET,
    NOTE_NO_ONSET,
    NOTE_NO_TIME_ZERO,
    UNRESOLVED_SUBJECT,
    read_fhir,
)
from medsynth.fhir.read_map import (
    BAD_TIME,
    CANCELLED,
    COMPARATOR,
    ENTERED_IN_ERROR,
    NO_CODE,
    NO_SUBJECT,
    NO_TIME,
    NO_VALUE,
    NON_NUMERIC,
    REFUTED,
    Skip,
    age_years,
    map_condition,
    map_observation,
    map_patient,
    normalize_condition_code,
    normalize_reference,
    parse_date,
    parse_datetime,
)
from medsynth.fhir.read_sources import (
    BAD_GZIP,
    BAD_JSON,
    BAD_RESOURCE_TYPE,
    EMPTY_FILE,
    NO_RESOURCE_TYPE,
    NOT_OBJECT,
    _NonFiniteAsStrings,
)
from medsynth.schema import parse_schema
from medsynth.schema.model import ICD10CM as ICD10
from tests.helpers import minimal_doc

FIXTURES = Path(__file__).parent / "fixtures"
BUNDLE = FIXTURES / "transaction_bundle.json"
BULK = FIXTURES / "bulk"
BAD = FIXTURES / "bad_lines.ndjson"
UTC = dt.timezone.utc


def _digests(paths: list[Path]) -> dict[Path, tuple[str, int]]:
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in paths}


def _gzip(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.compress(src.read_bytes(), mtime=0))
    return dst


def _events(result) -> list[tuple[str, float, str, float]]:
    return list(result.cohort.events.itertuples(index=False, name=None))


def _issues(result) -> list[tuple[str, str | None, str | None, str]]:
    return [(i.location, i.resource_id, i.field, i.reason) for i in result.issues]


# Both fixtures hold the same two patients (general-adult anchors at the last event minus 1826
# days): pat-a's last observation is 2021-06-01T00:00Z, so time zero is 2016-06-01T00:00Z;
# pat-b's only observation is dated "2019-05", i.e. 2019-05-01, so time zero is 2014-05-01.
EXPECTED_EVENTS = [
    ("pat-a", 1318 + 8 / 24, "glucose", 95.0),  # 2020-01-10T08:00Z, 95.4 -> 0 decimals
    ("pat-a", 1369 + 14.5 / 24, "systolic_bp", 128.0),  # 2020-03-01T09:30-05:00
    ("pat-a", 1369 + 14.5 / 24, "diastolic_bp", 82.0),
    ("pat-a", 1826.0, "weight", 70.2),  # 70.24 kg -> 1 decimal
    ("pat-b", 1826.0, "heart_rate", 61.0),
]
EXPECTED_CONDITIONS = [
    ("pat-a", "38341003", 0.0),  # 2015-04-01, before time zero
    ("pat-a", "15777000", 1095.5),
]  # 2019-06-01T12:00Z


def _check_two_patients(result) -> None:
    pats = result.cohort.patients.set_index("patient_id")
    assert list(pats.index) == ["pat-a", "pat-b"]
    a, b = pats.loc["pat-a"], pats.loc["pat-b"]
    assert (a.sex, a.age, a.race, a.ethnicity, a.state, a.deceased) == (
        "female",
        45.0,
        "black",
        "not_hispanic",
        "MA",
        False,
    )  # born 1970-06-15, at 2016-06-01
    assert (b.sex, b.age, b.state, b.deceased) == ("male", 64.0, "NY", True)  # born "1950"
    assert pd.isna(b.race) and pd.isna(b.ethnicity)
    events = _events(result)
    assert [e[0::2] for e in events] == [e[0::2] for e in EXPECTED_EVENTS]
    assert [e[3] for e in events] == [e[3] for e in EXPECTED_EVENTS]
    assert [e[1] for e in events] == pytest.approx([e[1] for e in EXPECTED_EVENTS], abs=1e-9)
    assert list(result.cohort.conditions.itertuples(index=False, name=None)) == EXPECTED_CONDITIONS
    assert result.conformance.counts == ()


def test_transaction_bundle_with_urn_uuid_references(general_schema):
    result = read_fhir([BUNDLE], general_schema)
    _check_two_patients(result)
    assert result.issues == ()
    c = result.counts
    assert c.files == 1
    assert dict(c.read) == {
        "Observation": 5,
        "Condition": 3,
        "Patient": 2,
        "Bundle": 1,
        "Encounter": 1,
    }
    assert dict(c.mapped) == {"patients": 2, "observations": 4, "events": 5, "conditions": 2}
    assert dict(c.ignored_types) == {"(Bundle entry without resource)": 1, "Encounter": 1}
    assert dict(c.ignored_codes) == {
        "Condition http://snomed.info/sct|444814009": 1,
        "Observation http://loinc.org|72514-3": 1,
    }
    assert dict(c.skipped) == {}
    assert dict(c.notes) == {NOTE_EARLY_ONSET: 1}
    assert result.cohort.source.kind == "fhir"


def test_bulk_folder_with_patient_id_references(general_schema):
    result = read_fhir([BULK], general_schema)
    _check_two_patients(result)
    assert result.issues == ()
    assert result.counts.files == 4  # README.txt is not a FHIR file
    assert dict(result.counts.read) == {
        "Observation": 4,
        "Condition": 2,
        "Patient": 2,
        "Encounter": 1,
    }
    # the mean-pressure component of the panel is outside the schema
    assert dict(result.counts.ignored_codes) == {"Observation component http://loinc.org|8478-0": 1}
    bundle = read_fhir([BUNDLE], general_schema).cohort
    assert result.cohort.content_hash() == bundle.content_hash()
    assert result.cohort.source.fingerprint != bundle.source.fingerprint


def test_gzipped_inputs_read_like_plain_ones(general_schema, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    _gzip(BUNDLE, folder / "bundle.json.gz")
    plain = read_fhir([BUNDLE], general_schema).cohort
    assert read_fhir([folder], general_schema).cohort.content_hash() == plain.content_hash()
    bulk = tmp_path / "bulk"
    bulk.mkdir()
    for f in BULK.glob("*.ndjson"):
        _gzip(f, bulk / f"{f.name}.gz")
    result = read_fhir([bulk], general_schema)
    assert result.counts.files == 4 and result.issues == ()
    assert result.cohort.content_hash() == plain.content_hash()
    whole = (folder / "bundle.json.gz").read_bytes()
    (folder / "bundle.json.gz").write_bytes(whole[: len(whole) // 2])
    cut = read_fhir([folder], general_schema)
    assert [(i.reason, i.location.split(" ")[0]) for i in cut.issues if i.reason == BAD_GZIP] == [
        (BAD_GZIP, "after")
    ]


def test_zip3_and_a_single_resource_file(general_doc, tmp_path):
    general_doc["attributes"].append(
        {
            "name": "zip3",
            "type": "categorical",
            "fhir": "Patient.address.zip3",
            "categories": ["021", "100"],
        }
    )
    schema = parse_schema(general_doc)
    pats = read_fhir([BULK], schema).cohort.patients.set_index("patient_id")
    assert pats.loc["pat-a", "zip3"] == "021" and pats.loc["pat-b", "zip3"] == "100"
    single = tmp_path / "patient.json"
    single.write_text(
        json.dumps(
            {"resourceType": "Patient", "id": "solo", "gender": "other", "birthDate": "2000-02-29"}
        )
    )
    result = read_fhir([single], schema)
    assert result.cohort.patient_ids == ["solo"]
    assert dict(result.counts.notes) == {NOTE_NO_TIME_ZERO: 1}  # no events: age unknown
    assert pd.isna(result.cohort.patients.loc[0, "age"])
    assert pd.isna(result.cohort.patients.loc[0, "sex"])  # "other" not in the schema


BAD_EXPECTED = [  # (location, resource id, field, reason), in the order met
    ("line 2", None, None, BAD_JSON),
    ("line 3", None, None, NOT_OBJECT),
    ("line 4", "no-type", "resourceType", NO_RESOURCE_TYPE),
    ("line 5", "lower-case-type", "resourceType", BAD_RESOURCE_TYPE),
    ("line 6", "no-subject", "subject.reference", NO_SUBJECT),
    ("line 8", "text-value", "valueQuantity.value", NON_NUMERIC),
    ("line 9", "nan-value", "valueQuantity.value", NON_NUMERIC),
    ("line 10", "no-time", "effective[x]", NO_TIME),
    (
        "line 11",
        "wrong-unit",
        "valueQuantity.code",
        "unit mismatch: mmol/L for channel glucose expects mg/dL",
    ),
    ("line 12", "retracted", "status", ENTERED_IN_ERROR),
    ("line 14", "no-code", "code.coding", NO_CODE),
    ("line 15", "bound", "valueQuantity.comparator", COMPARATOR),
    ("line 16", "string-value", "valueQuantity", NO_VALUE),
    (
        "line 19",
        "half-panel",
        "component[1].valueQuantity.code",
        "unit mismatch: kPa for channel diastolic_bp expects mm[Hg] or mmHg",
    ),
    ("line 21", "refuted", "verificationStatus", REFUTED),
    ("line 22", "bad-date", "effectiveDateTime", BAD_TIME),
    ("line 23", "p1", "id", DUPLICATE_PATIENT),
    # resolved (and reported) after every file is read
    ("line 7", "ghost-subject", "subject.reference", UNRESOLVED_SUBJECT),
]


def test_every_bad_line_is_an_issue_and_the_rest_is_read(general_schema):
    result = read_fhir([BAD], general_schema)
    assert _issues(result) == BAD_EXPECTED
    assert all(i.file == str(BAD) for i in result.issues)
    assert sum(result.counts.skipped.values()) == 18
    assert result.counts.skipped[NON_NUMERIC] == 2
    assert dict(result.counts.read) == {"Observation": 14, "Condition": 3, "Patient": 2}
    assert dict(result.counts.mapped) == {
        "patients": 1,
        "observations": 2,
        "events": 2,
        "conditions": 1,
    }
    assert dict(result.counts.ignored_codes) == {
        "Condition http://snomed.info/sct|444814009": 1,
        "Observation http://loinc.org|72514-3": 1,
    }
    assert dict(result.counts.notes) == {NOTE_NO_ONSET: 1}
    # p1: first Patient kept (female, born 1980-01-01); last event 2020-01-01 -> zero 2015-01-01
    pat = result.cohort.patients.iloc[0]
    assert (pat.patient_id, pat.sex, pat.age) == ("p1", "female", 35.0)
    assert _events(result) == [
        ("p1", 1826.0, "systolic_bp", 120.0),
        ("p1", 1826.0, "glucose", 90.0),
    ]
    assert list(result.cohort.conditions.itertuples(index=False, name=None)) == [
        ("p1", "44054006", 0.0)
    ]
    text = result.summary()
    assert "skipped: 18 issue(s)" in text
    assert (
        f"{BAD}, line 7: Observation 'ghost-subject' subject.reference: "
        f"{UNRESOLVED_SUBJECT} ('Patient/nobody')"
    ) in text


def test_empty_truncated_and_broken_files(general_schema, tmp_path):
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "blank.ndjson").write_text("\n  \n")
    (tmp_path / "empty.json.gz").write_bytes(gzip.compress(b""))
    (tmp_path / "array.json").write_text("[]")
    (tmp_path / "no_type.json").write_text('{"id": "x"}')
    bundle = BUNDLE.read_text()
    cut = bundle.index('"fullUrl": "urn:uuid:0a9e7c0e-0000-4000-8000-00000000a003"')
    (tmp_path / "cut_bundle.json").write_text(bundle[:cut])  # two whole entries, then EOF
    result = read_fhir([tmp_path], general_schema)
    assert sorted((Path(i.file).name, i.location, i.reason) for i in result.issues) == [
        ("array.json", "whole file", NOT_OBJECT),
        ("blank.ndjson", "whole file", EMPTY_FILE),
        ("cut_bundle.json", "after entry 1", BAD_JSON),
        ("cut_bundle.json", "entry 0", UNRESOLVED_SUBJECT),  # its Patient was cut off
        ("cut_bundle.json", "entry 1", UNRESOLVED_SUBJECT),
        ("empty.json", "whole file", EMPTY_FILE),
        ("empty.json.gz", "whole file", EMPTY_FILE),
        ("no_type.json", "resource", NO_RESOURCE_TYPE),
    ]
    assert result.cohort.n_patients == 0


def test_subject_resolution_by_id_and_full_url_in_any_order(tiny_schema, tmp_path):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                    "subject": {"reference": "Patient/p9"},
                    "effectiveDateTime": "2021-01-01T00:00:00Z",
                    "valueQuantity": {"value": 6.04, "unit": "%"},
                }
            },
            {
                "resource": {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "entry": [
                        {
                            "fullUrl": "urn:uuid:7e57",
                            "resource": {
                                "resourceType": "Patient",
                                "id": "p9",
                                "birthDate": "2000-01-01",
                            },
                        }
                    ],
                }
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                    "subject": {"reference": "urn:uuid:7e57"},
                    "effectiveDateTime": "2021-01-03T12:00:00Z",
                    "valueQuantity": {
                        "value": 101,
                        "system": "http://unitsofmeasure.org",
                        "code": "mg/dL",
                    },
                }
            },
        ],
    }
    path = tmp_path / "nested.json"
    path.write_text(json.dumps(bundle))
    result = read_fhir([path], tiny_schema)  # tiny: anchor first_event
    assert result.issues == ()
    assert _events(result) == [("p9", 0.0, "hba1c", 6.0), ("p9", 2.5, "glucose", 101.0)]
    assert result.cohort.patients.loc[0, "age"] == 21.0
    assert result.counts.read["Bundle"] == 2


def test_fixed_date_anchor_and_condition_only_patients(general_doc, tmp_path):
    general_doc["time"].update(anchor="fixed_date", anchor_date="2020-01-01", timezone="-05:00")
    schema = parse_schema(general_doc)
    result = read_fhir([BULK], schema)
    # time zero 2020-01-01T05:00Z; glucose at 2020-01-10T08:00Z
    glucose = result.cohort.events.set_index("channel").loc["glucose"]
    assert glucose.time == pytest.approx(9 + 3 / 24, abs=1e-9)
    # pat-b's heart rate (2019-05-01, read at -05:00) precedes time zero: dropped by conform
    assert (
        result.conformance.as_counter()[("event outside the time horizon dropped", "heart_rate")]
        == 1
    )
    ages = result.cohort.patients.set_index("patient_id").age
    assert (ages["pat-a"], ages["pat-b"]) == (49.0, 70.0)


def test_first_event_anchor_falls_back_to_conditions(tiny_schema, tmp_path):
    path = tmp_path / "Condition.ndjson"
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"resourceType": "Patient", "id": "c1", "birthDate": "1960-07-01"},
                {
                    "resourceType": "Condition",
                    "subject": {"reference": "Patient/c1"},
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
                    "onsetDateTime": "2010-07-01",
                },
            ]
        )
    )
    result = read_fhir([path], tiny_schema)
    assert result.cohort.patients.loc[0, "age"] == 50.0
    assert list(result.cohort.conditions.onset) == [0.0]
    assert dict(result.counts.notes) == {}


def test_time_zero_before_birth_is_noted_and_clipped(general_schema, tmp_path):
    path = tmp_path / "baby.ndjson"
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"resourceType": "Patient", "id": "b1", "birthDate": "2019-06-01"},
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "subject": {"reference": "Patient/b1"},
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                    "effectiveDateTime": "2020-01-01",
                    "valueQuantity": {"value": 35, "unit": "kg"},
                },
            ]
        )
    )
    result = read_fhir([path], general_schema)  # time zero 2015-01-01: age -5
    assert dict(result.counts.notes) == {NOTE_BEFORE_BIRTH: 1}
    assert result.conformance.get("clipped to bounds", "age") == 1
    assert result.cohort.patients.loc[0, "age"] == 18.0


def test_strict_mode_raises_on_out_of_bounds_values(tiny_schema, tmp_path):
    path = tmp_path / "o.ndjson"
    path.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"},
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "subject": {"reference": "Patient/p1"},
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                    "effectiveDateTime": "2020-01-01",
                    "valueQuantity": {"value": 900, "unit": "mg/dL"},
                },
            ]
        )
    )
    lenient = read_fhir([path], tiny_schema)
    assert lenient.conformance.get("clipped to bounds", "glucose") == 1
    assert list(lenient.cohort.events.value) == [600.0]
    with pytest.raises(DataError, match="strict mode"):
        read_fhir([path], tiny_schema, strict=True)


def test_inputs_are_never_modified(general_schema, tmp_path):
    copy = tmp_path / "inputs"
    shutil.copytree(FIXTURES, copy)
    _gzip(BUNDLE, copy / "b.json.gz")
    whole = (copy / "b.json.gz").read_bytes()
    (copy / "cut.json.gz").write_bytes(whole[: len(whole) // 2])  # truncated
    (copy / "nan.json").write_text(BUNDLE.read_text().replace("95.4", "NaN"))
    files = sorted(p for p in copy.rglob("*") if p.is_file())
    before = _digests(files)
    result = read_fhir([copy], general_schema)
    assert {BAD_GZIP, NON_NUMERIC, BAD_JSON} <= set(result.counts.skipped)
    assert _digests(files) == before
    assert sorted(p for p in copy.rglob("*") if p.is_file()) == files  # nothing created


def test_reading_is_deterministic_and_order_independent(general_schema):
    first = read_fhir([BUNDLE, BULK, BAD], general_schema)
    again = read_fhir([BUNDLE, BULK, BAD], general_schema)
    other = read_fhir([BAD, BULK, BUNDLE], general_schema, progress=True)
    assert first.cohort.content_hash() == again.cohort.content_hash()
    assert json.loads(json.dumps(first.to_dict())) == again.to_dict()
    assert first.issues == again.issues and first.counts == again.counts
    assert first.summary() == again.summary()
    assert first.cohort.source == other.cohort.source
    # the same patient ids appear in BUNDLE and BULK: the second copies are reported
    assert first.counts.skipped[DUPLICATE_PATIENT] == 3
    assert first.counts.skipped[DUPLICATE_RESOURCE] == 6


def test_the_same_export_given_twice_counts_once(general_schema):
    once = read_fhir([BUNDLE], general_schema)
    twice = read_fhir([BUNDLE, BULK], general_schema)  # same resources, same ids
    assert dict(twice.counts.skipped) == {DUPLICATE_PATIENT: 2, DUPLICATE_RESOURCE: 6}
    assert [
        (i.location, i.resource_type, i.resource_id)
        for i in twice.issues
        if i.reason == DUPLICATE_RESOURCE
    ] == [
        ("line 1", "Condition", "cond-htn"),
        ("line 2", "Condition", "cond-prediabetes"),
        ("line 1", "Observation", "obs-glucose"),
        ("line 2", "Observation", "obs-bp"),
        ("line 4", "Observation", "obs-weight"),
        ("line 5", "Observation", "obs-hr"),
    ]
    for table in ("patients", "events", "conditions"):
        pd.testing.assert_frame_equal(getattr(twice.cohort, table), getattr(once.cohort, table))


def test_fingerprint_follows_names_and_bytes_not_location(general_schema, tmp_path):
    a, b = tmp_path / "a" / "bulk", tmp_path / "b" / "bulk"
    shutil.copytree(BULK, a)
    shutil.copytree(BULK, b)
    fp = read_fhir([a], general_schema).cohort.source.fingerprint
    assert read_fhir([b], general_schema).cohort.source.fingerprint == fp
    (b / "Encounter.ndjson").write_text((b / "Encounter.ndjson").read_text() + "\n")
    assert read_fhir([b], general_schema).cohort.source.fingerprint != fp
    (a / "Encounter.ndjson").rename(a / "Encounters.ndjson")
    assert read_fhir([a], general_schema).cohort.source.fingerprint != fp


def test_one_path_may_be_given_alone(general_schema):
    alone = read_fhir(BULK, general_schema).cohort
    assert alone.content_hash() == read_fhir([BULK], general_schema).cohort.content_hash()
    assert read_fhir(str(BUNDLE), general_schema).cohort.n_patients == 2


def test_missing_sources_are_errors(general_schema, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_fhir([tmp_path / "nope"], general_schema)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no FHIR files"):
        read_fhir([tmp_path], general_schema)


@pytest.mark.parametrize("layout", ["bundle.json", "bulk.ndjson", "bulk.ndjson.gz"])
def test_memory_does_not_grow_with_file_size(general_schema, tmp_path, layout):
    encounter = json.dumps(
        {
            "resource": {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": "Patient/p"},
            }
        }
    )

    def export(n: int) -> Path:
        if layout == "bundle.json":
            text = (
                '{"resourceType": "Bundle", "type": "collection", "entry": ['
                + ",".join([encounter] * n)
                + "]}"
            )
        else:
            text = "\n".join([encounter[len('{"resource": ') : -1]] * n)
        path = tmp_path / f"{n}.{layout}"
        data = text.encode()
        path.write_bytes(gzip.compress(data, 1, mtime=0) if layout.endswith(".gz") else data)
        return path

    peaks = []
    read_fhir([BULK], general_schema)  # warm caches outside the measurement
    for n in (4_000, 16_000):
        path = export(n)
        tracemalloc.start()
        result = read_fhir([path], general_schema)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert result.counts.ignored_types["Encounter"] == n
    assert 16_000 * len(encounter) > 2_000_000  # several times the largest read buffer
    assert peaks[1] < 1.25 * peaks[0], peaks  # holding the entries would add > 2 MB


# -- the robustness cases, one by one, with exact counts ------------------------------------------
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
P1 = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-01-01"}


def _obs(value, *, rid=None, day=1, code="2339-0", unit="mg/dL", subject="Patient/p1"):
    res = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": subject},
        "effectiveDateTime": f"2020-01-{day:02d}T00:00:00Z",
        "valueQuantity": {"value": value, "system": UCUM, "code": unit},
    }
    return {"id": rid, **res} if rid else res


def _cond(code, *, rid=None, system="http://snomed.info/sct", **extra):
    res = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2020-01-01",
        **extra,
    }
    return {"id": rid, **res} if rid else res


def _ndjson(path: Path, *items) -> Path:
    """One line per item: dicts as JSON (NaN allowed, as Python writes it), strings verbatim."""
    path.write_text("\n".join(i if isinstance(i, str) else json.dumps(i) for i in items) + "\n")
    return path


def _bundle(path: Path, *resources, full_urls=()) -> Path:
    entries = [{"resource": r} for r in resources]
    for entry, url in zip(entries, full_urls, strict=False):
        if url:
            entry["fullUrl"] = url
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    return path


def _gzip_cut(text: bytes, cut: int) -> bytes:
    """A gzip stream of ``text[:cut]`` that ends without its end-of-stream marker."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    return z.compress(text[:cut]) + z.flush(zlib.Z_FULL_FLUSH)


def test_malformed_json_lines(tiny_schema, tmp_path):
    path = _ndjson(
        tmp_path / "o.ndjson",
        P1,
        '{"resourceType": "Observation", "status": ',
        _obs(90),
        '{"resourceType": "Observation"}}',
        _obs(95, day=2),
    )
    result = read_fhir([path], tiny_schema)
    assert _issues(result) == [("line 2", None, None, BAD_JSON), ("line 4", None, None, BAD_JSON)]
    assert dict(result.counts.skipped) == {BAD_JSON: 2}
    assert dict(result.counts.read) == {"Observation": 2, "Patient": 1}
    assert _events(result) == [("p1", 0.0, "glucose", 90.0), ("p1", 1.0, "glucose", 95.0)]


def test_a_utf8_byte_order_mark_is_read_past(tiny_schema, tmp_path):
    bom = b"\xef\xbb\xbf"
    lines = "\n".join(json.dumps(r) for r in (P1, _obs(90))).encode()
    (tmp_path / "a.ndjson").write_bytes(bom + lines)
    (tmp_path / "b.ndjson.gz").write_bytes(gzip.compress(bom + lines, mtime=0))
    doc = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (P1, _obs(90))],
    }
    (tmp_path / "c.json").write_bytes(bom + json.dumps(doc).encode())
    (tmp_path / "d.json").write_bytes(bom + json.dumps(P1).encode())
    for name in ("a.ndjson", "b.ndjson.gz", "c.json"):
        result = read_fhir([tmp_path / name], tiny_schema)
        assert result.issues == () and _events(result) == [("p1", 0.0, "glucose", 90.0)], name
    assert read_fhir([tmp_path / "d.json"], tiny_schema).cohort.patient_ids == ["p1"]


def test_wrong_resource_types(tiny_schema, tmp_path):
    path = _ndjson(
        tmp_path / "o.ndjson",
        P1,
        {"resourceType": "Observaton", "id": "typo"},
        {"resourceType": "observation", "id": "lower"},
        {"resourceType": ["Observation"], "id": "list"},
        {"resourceType": "Encounter", "id": "e1", "status": "finished"},
        _obs(90),
    )
    result = read_fhir([path], tiny_schema)
    assert _issues(result) == [
        ("line 2", "typo", "resourceType", BAD_RESOURCE_TYPE),
        ("line 3", "lower", "resourceType", BAD_RESOURCE_TYPE),
        ("line 4", "list", "resourceType", BAD_RESOURCE_TYPE),
    ]
    assert result.issues[0].detail == "'Observaton'"
    assert dict(result.counts.skipped) == {BAD_RESOURCE_TYPE: 3}
    assert dict(result.counts.read) == {"Encounter": 1, "Observation": 1, "Patient": 1}
    assert dict(result.counts.ignored_types) == {"Encounter": 1}  # a real type, not used
    assert result.counts.mapped["events"] == 1
    bundle = _bundle(tmp_path / "b.json", P1, {"resourceType": "Patiant", "id": "x"}, _obs(90))
    in_bundle = read_fhir([bundle], tiny_schema)
    assert _issues(in_bundle) == [("entry 1", "x", "resourceType", BAD_RESOURCE_TYPE)]
    assert in_bundle.counts.mapped["events"] == 1


def test_missing_subjects(tiny_schema, tmp_path):
    no_subject = {k: v for k, v in _obs(90, rid="none").items() if k != "subject"}
    path = _ndjson(
        tmp_path / "o.ndjson",
        P1,
        no_subject,
        {**_obs(90, rid="empty"), "subject": {}},
        {**_obs(90, rid="blank"), "subject": {"reference": "  "}},
        {**_obs(90, rid="display"), "subject": {"display": "Jane Doe"}},
        {**_cond("38341003", rid="cond"), "subject": None},
        _obs(90, rid="ghost", subject="Patient/nobody"),
        _obs(91, day=3),
    )
    result = read_fhir([path], tiny_schema)
    assert _issues(result) == [
        *[
            (f"line {n}", rid, "subject.reference", NO_SUBJECT)
            for n, rid in enumerate(("none", "empty", "blank", "display", "cond"), start=2)
        ],
        ("line 7", "ghost", "subject.reference", UNRESOLVED_SUBJECT),
    ]
    assert dict(result.counts.skipped) == {NO_SUBJECT: 5, UNRESOLVED_SUBJECT: 1}
    assert dict(result.counts.mapped) == {
        "patients": 1,
        "observations": 1,
        "events": 1,
        "conditions": 0,
    }
    assert _events(result) == [("p1", 0.0, "glucose", 91.0)]


def test_retracted_and_cancelled_observations_are_skipped(tiny_schema, tmp_path):
    path = _ndjson(
        tmp_path / "o.ndjson",
        P1,
        {**_obs(80, rid="err"), "status": "entered-in-error"},
        {**_obs(81, rid="cancel"), "status": "cancelled"},
        {**_obs(82, rid="prelim"), "status": "preliminary"},
    )
    result = read_fhir([path], tiny_schema)
    assert _issues(result) == [
        ("line 2", "err", "status", ENTERED_IN_ERROR),
        ("line 3", "cancel", "status", CANCELLED),
    ]
    assert _events(result) == [("p1", 0.0, "glucose", 82.0)]


def test_unknown_codes_are_counted_and_not_mapped(tiny_schema, tmp_path):
    path = _ndjson(
        tmp_path / "o.ndjson",
        P1,
        _obs(3, code="72514-3", unit="{score}"),
        {**_obs(90), "code": {"coding": [{"system": "http://example.org/lab", "code": "2339-0"}]}},
        {**_obs(90, rid="text-only"), "code": {"text": "blood sugar"}},
        _cond("444814009"),
        _cond("38341003", system=ICD10),
        _cond("38341003"),
        _obs(90),
    )
    result = read_fhir([path], tiny_schema)
    assert dict(result.counts.ignored_codes) == {
        "Condition http://hl7.org/fhir/sid/icd-10-cm|38341003": 1,
        "Condition http://snomed.info/sct|444814009": 1,
        "Observation http://example.org/lab|2339-0": 1,
        "Observation http://loinc.org|72514-3": 1,
    }
    assert _issues(result) == [("line 4", "text-only", "code.coding", NO_CODE)]
    assert dict(result.counts.mapped) == {
        "patients": 1,
        "observations": 1,
        "events": 1,
        "conditions": 1,
    }
    assert list(result.cohort.conditions.code) == ["38341003"]


def test_unit_mismatch_is_an_issue_unless_the_schema_declares_the_alias(tiny_schema, tmp_path):
    no_unit = _obs(90, rid="none", day=4)
    no_unit["valueQuantity"] = {"value": 90}
    lower = _obs(101, rid="lower", day=3)
    lower["valueQuantity"] = {"value": 101, "unit": "mg/dl"}
    path = _ndjson(
        tmp_path / "o.ndjson",
        P1,
        _obs(90),
        _obs(5.1, rid="mmol", day=2, unit="mmol/L"),
        lower,
        no_unit,
    )
    result = read_fhir([path], tiny_schema)
    assert _issues(result) == [
        (
            "line 3",
            "mmol",
            "valueQuantity.code",
            "unit mismatch: mmol/L for channel glucose expects mg/dL",
        ),
        (
            "line 4",
            "lower",
            "valueQuantity.unit",
            "unit mismatch: mg/dl for channel glucose expects mg/dL",
        ),
        (
            "line 5",
            "none",
            "valueQuantity.unit",
            "unit mismatch: no unit for channel glucose expects mg/dL",
        ),
    ]
    assert _events(result) == [("p1", 0.0, "glucose", 90.0)]
    doc = minimal_doc()
    doc["channels"][0]["unit_aliases"] = ["mg/dl"]
    aliased = read_fhir([path], parse_schema(doc))
    assert [i.reason for i in aliased.issues] == [
        "unit mismatch: mmol/L for channel glucose expects mg/dL or mg/dl",
        "unit mismatch: no unit for channel glucose expects mg/dL or mg/dl",
    ]
    assert _events(aliased) == [("p1", 0.0, "glucose", 90.0), ("p1", 2.0, "glucose", 101.0)]


def test_values_out_of_bounds_are_clipped_and_counted(tiny_schema, tmp_path):
    old = {**P1, "birthDate": "1920-01-01"}  # 100 at time zero: age 90
    path = _ndjson(
        tmp_path / "o.ndjson",
        old,
        _obs(900),
        _obs(5, day=2),
        _obs(300, day=3),
        _obs(2.04, code="4548-4", unit="%"),
        _obs(19, day=2, code="4548-4", unit="%"),
    )
    result = read_fhir([path], tiny_schema)
    assert result.issues == ()
    assert result.conformance.to_dict() == {
        "clipped to bounds": {"age": 1, "glucose": 2, "hba1c": 2}
    }
    assert _events(result) == [
        ("p1", 0.0, "glucose", 600.0),
        ("p1", 0.0, "hba1c", 3.0),
        ("p1", 1.0, "glucose", 20.0),
        ("p1", 1.0, "hba1c", 18.0),
        ("p1", 2.0, "glucose", 300.0),
    ]
    assert result.cohort.patients.loc[0, "age"] == 90.0
    assert "       2  clipped to bounds: glucose" in result.lines()


def test_nan_and_non_finite_values(tiny_schema, tmp_path):
    raw = ["NaN", "Infinity", "-Infinity", "1e999", '"95"', "true", "null"]
    lines = [json.dumps(_obs("V", rid=f"v{i}")).replace('"V"', text) for i, text in enumerate(raw)]
    path = _ndjson(tmp_path / "o.ndjson", P1, *lines, _obs(90, day=2))
    result = read_fhir([path], tiny_schema)
    assert _issues(result) == [
        (f"line {i + 2}", f"v{i}", "valueQuantity.value", NON_NUMERIC) for i in range(7)
    ]
    assert [i.detail for i in result.issues] == [  # as written: the tokens are read as text
        f"{v} for channel glucose"
        for v in ("'NaN'", "'Infinity'", "'-Infinity'", "'1e999'", "'95'", "True", "None")
    ]
    assert dict(result.counts.skipped) == {NON_NUMERIC: 7}
    assert _events(result) == [("p1", 0.0, "glucose", 90.0)]
    # NaN and Infinity are not JSON, but Python writes them: in a Bundle too they cost their
    # resource only, and the entries after them are read
    bundle = _bundle(
        tmp_path / "b.json",
        P1,
        _obs(90),
        _obs(float("nan"), rid="nan", day=2),
        _obs(float("-inf"), rid="inf", day=2),
        _obs(91, day=3),
    )
    assert "NaN" in bundle.read_text() and "-Infinity" in bundle.read_text()
    in_bundle = read_fhir([bundle], tiny_schema)
    assert _issues(in_bundle) == [
        ("entry 2", "nan", "valueQuantity.value", NON_NUMERIC),
        ("entry 3", "inf", "valueQuantity.value", NON_NUMERIC),
    ]
    assert [i.detail for i in in_bundle.issues] == [
        "'NaN' for channel glucose",
        "'-Infinity' for channel glucose",
    ]
    assert _events(in_bundle) == [("p1", 0.0, "glucose", 90.0), ("p1", 2.0, "glucose", 91.0)]


def test_empty_files(tiny_schema, tmp_path):
    (tmp_path / "a.ndjson").write_bytes(b"")
    (tmp_path / "b.json").write_bytes(b"")
    (tmp_path / "c.ndjson").write_text("\n  \n")
    (tmp_path / "d.json.gz").write_bytes(gzip.compress(b"", mtime=0))
    (tmp_path / "e.ndjson.gz").write_bytes(gzip.compress(b" \n", mtime=0))
    (tmp_path / "f.json").write_text('{"resourceType": "Bundle", "type": "collection"}')
    (tmp_path / "g.json").write_text('{"resourceType": "Bundle", "type": "batch", "entry": []}')
    result = read_fhir([tmp_path], tiny_schema)
    assert [(Path(i.file).name, i.location, i.reason) for i in result.issues] == [
        (name, "whole file", EMPTY_FILE)
        for name in ("a.ndjson", "b.json", "c.ndjson", "d.json.gz", "e.ndjson.gz")
    ]
    assert result.counts.files == 7
    assert dict(result.counts.read) == {"Bundle": 2}
    assert dict(result.counts.skipped) == {EMPTY_FILE: 5}
    assert result.cohort.n_patients == 0 and len(result.cohort.events) == 0


def test_truncated_gzip_is_an_issue_and_keeps_what_came_before(tiny_schema, tmp_path):
    lines = [json.dumps(r) for r in (P1, *(_obs(90 + d, day=d) for d in range(1, 6)))]
    text = "\n".join(lines).encode() + b"\n"
    bulk = tmp_path / "Observation.ndjson.gz"
    bulk.write_bytes(_gzip_cut(text, text.index(lines[4].encode())))  # lines 1-4 survive
    result = read_fhir([bulk], tiny_schema)
    assert _issues(result) == [("after line 4", None, None, BAD_GZIP)]
    assert result.issues[0].detail.startswith("EOFError: Compressed file ended")
    assert dict(result.counts.read) == {"Observation": 3, "Patient": 1}
    assert [e[3] for e in _events(result)] == [91.0, 92.0, 93.0]

    doc = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (P1, _obs(90), _obs(91, day=2), _obs(92, day=3))],
    }
    data = json.dumps(doc).encode()
    bundle = tmp_path / "bundle.json.gz"
    bundle.write_bytes(_gzip_cut(data, data.index(json.dumps(doc["entry"][3]).encode())))
    cut = read_fhir([bundle], tiny_schema)
    assert _issues(cut) == [("after entry 2", None, None, BAD_GZIP)]
    assert [e[3] for e in _events(cut)] == [90.0, 91.0]

    (tmp_path / "fake.ndjson.gz").write_bytes(b"not gzip at all\n")
    fake = read_fhir([tmp_path / "fake.ndjson.gz"], tiny_schema)
    assert _issues(fake) == [("start of file", None, None, BAD_GZIP)]


def test_references_by_urn_uuid_and_by_patient_id(tiny_schema, tmp_path):
    a, b = "urn:uuid:0a0a0a0a-0000-4000-8000-000000000001", "urn:uuid:0b0b0b0b-0000-4000-8000-2"
    nameless = {"resourceType": "Patient", "gender": "male", "birthDate": "1990-01-01"}
    refs = [
        (a, 1),
        ("Patient/p1", 2),
        ("https://example.org/fhir/Patient/p1/_history/3", 3),
        (b, 1),
        (f"Patient/{b.removeprefix('urn:uuid:')}", 2),
        ("urn:uuid:0c0c0c0c-0000-4000-8000-000000000003", 1),
        ("p1", 1),
    ]
    observations = [
        _obs(90 + i, rid=f"o{i}", day=day, subject=ref) for i, (ref, day) in enumerate(refs)
    ]
    path = _bundle(tmp_path / "t.json", P1, nameless, *observations, full_urls=(a, b))
    result = read_fhir([path], tiny_schema)
    nameless_id = b.removeprefix("urn:uuid:")
    assert result.cohort.patient_ids == [nameless_id, "p1"]
    assert _events(result) == [
        (nameless_id, 0.0, "glucose", 93.0),
        (nameless_id, 1.0, "glucose", 94.0),
        ("p1", 0.0, "glucose", 90.0),
        ("p1", 1.0, "glucose", 91.0),
        ("p1", 2.0, "glucose", 92.0),
    ]
    assert _issues(result) == [
        ("entry 7", "o5", "subject.reference", UNRESOLVED_SUBJECT),
        ("entry 8", "o6", "subject.reference", UNRESOLVED_SUBJECT),
    ]
    # the same resources as bulk ndjson, Observations in a file read before the Patients'
    folder = tmp_path / "bulk"
    folder.mkdir()
    _ndjson(folder / "Observation.ndjson", *observations[1:3])
    _ndjson(folder / "Patient.ndjson", P1)
    bulk = read_fhir([folder], tiny_schema)
    assert bulk.issues == ()
    assert _events(bulk) == [("p1", 0.0, "glucose", 91.0), ("p1", 1.0, "glucose", 92.0)]


def test_the_printed_account_is_exact(tiny_schema, tmp_path):
    path = _ndjson(
        tmp_path / "export.ndjson",
        P1,
        _obs(90),
        _obs(900, day=2),
        _obs(5.1, rid="m", day=3, unit="mmol/L"),
        _obs(3, code="72514-3"),
        {"resourceType": "Encounter", "id": "e"},
        _cond("38341003", rid="c"),
    )
    lines = read_fhir([path], tiny_schema).lines()
    assert lines[:-1] == [
        "read 1 file(s), 7 resources: Observation 4, Condition 1, Encounter 1, Patient 1",
        "mapped: 1 patients, 2 observations -> 2 events, 1 conditions",
        "ignored (types not in the schema): Encounter 1",
        "ignored (codes not in the schema): 1 resources, 1 codes; most frequent:",
        "       1  Observation http://loinc.org|72514-3",
        "skipped: 1 issue(s)",
        "       1  unit mismatch: mmol/L for channel glucose expects mg/dL",
        f"          {path}, line 4: Observation 'm' valueQuantity.code: unit mismatch: mmol/L "
        "for channel glucose expects mg/dL (value 5.1)",
        "conformed to the schema (clipped, dropped, truncated):",
        "       1  clipped to bounds: glucose",
    ]
    assert lines[-1].startswith("cohort: 1 patients, 2 events, 1 conditions (source ")


_JUNK_DOC = json.dumps(
    {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:j", "resource": {**P1, "id": "j1"}},
            {"resource": _obs(95, rid="j2", subject="urn:uuid:j")},
            {"resource": {**_cond("38341003"), "subject": {"reference": "Patient/j1"}}},
        ],
    }
).encode()


@st.composite
def _corrupted(draw) -> bytes:
    """Valid Bundle or ndjson text with a slice cut out, replaced or duplicated."""
    text = draw(
        st.sampled_from(
            [
                _JUNK_DOC,
                b"\n".join(
                    json.dumps(e["resource"]).encode() for e in json.loads(_JUNK_DOC)["entry"]
                ),
            ]
        )
    )
    i = draw(st.integers(0, len(text)))
    j = draw(st.integers(i, min(len(text), i + 40)))
    return (
        text[:i] + draw(st.sampled_from([b"", text[i:j], b"NaN", b"\x00\xff", b'"'])) + text[j:]
        if draw(st.booleans())
        else text[:i]
    )


@settings(max_examples=80, deadline=None)
@given(
    junk=st.one_of(st.binary(max_size=200), _corrupted()),
    suffix=st.sampled_from([".ndjson", ".json", ".ndjson.gz", ".json.gz", ".gz.json"]),
    compress=st.booleans(),
)
def test_no_file_content_stops_a_run(tiny_schema, tmp_path_factory, junk, suffix, compress):
    folder = tmp_path_factory.mktemp("junk")
    if compress and suffix.endswith(".gz"):
        junk = gzip.compress(junk, mtime=0)[: len(junk) // 2 + 10]
    (folder / f"x{suffix}").write_bytes(junk)
    _ndjson(folder / "good.ndjson", P1, _obs(90))
    result = read_fhir([folder], tiny_schema)
    assert result.cohort.patient_ids[-1] == "p1"
    assert _events(result)[-1] == ("p1", 0.0, "glucose", 90.0)
    assert all(i.file.endswith(f"x{suffix}") for i in result.issues)


# -- pure helpers ----------------------------------------------------------------------------------
PLUS2 = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2019", dt.datetime(2019, 1, 1, tzinfo=PLUS2)),
        ("2019-05", dt.datetime(2019, 5, 1, tzinfo=PLUS2)),
        ("2019-05-02", dt.datetime(2019, 5, 2, tzinfo=PLUS2)),
        ("2019-05-02T10:00:00Z", dt.datetime(2019, 5, 2, 10, tzinfo=UTC)),
        ("2019-05-02T10:00:00-05:00", dt.datetime(2019, 5, 2, 15, tzinfo=UTC)),
        ("2019-05-02T10:00", dt.datetime(2019, 5, 2, 10, tzinfo=PLUS2)),
    ],
)
def test_parse_datetime(text, expected):
    assert parse_datetime(text, PLUS2) == expected.timestamp()


def test_parse_datetime_fractions_and_garbage():
    assert (
        parse_datetime("2019-05-02T10:00:00.250+00:00", UTC)
        == dt.datetime(2019, 5, 2, 10, tzinfo=UTC).timestamp() + 0.25
    )
    for bad in (
        "2019-13",
        "2019-02-30",
        "May 2019",
        "",
        "2019-05-02 10:00",
        None,
        20190502,
        "2019-05-02T10:00:00+25:00",
    ):
        assert parse_datetime(bad, UTC) is None
    assert parse_date("1950") == dt.date(1950, 1, 1) and parse_date("1950-02-30") is None


class _Chunks:
    """A byte stream that returns at most ``size`` bytes per read."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.at = data, size, 0

    def read(self, n: int = -1) -> bytes:
        end = self.at + (min(n, self.size) if n > 0 else self.size)
        out, self.at = self.data[self.at : end], min(end, len(self.data))
        return out


def test_bare_non_finite_tokens_become_strings_across_any_chunk_border():
    doc = (
        b'{"a": [NaN, -Infinity, Infinity, "NaN \\" Infinity \\\\", "x\\\\", '
        b'{"NaN": NaN}], "b": "-Infinity", "c": -5, "d": [1.5e3, -0.5, null, true]}'
    )
    expected = {
        "a": ["NaN", "-Infinity", "Infinity", 'NaN " Infinity \\', "x\\", {"NaN": "NaN"}],
        "b": "-Infinity",
        "c": -5,
        "d": [1500.0, -0.5, None, True],
    }
    for size in range(1, len(doc) + 1):
        stream = _NonFiniteAsStrings(_Chunks(doc, size))
        assert stream.read(0) == b""
        out = b"".join(iter(lambda s=stream: s.read(7), b""))
        assert json.loads(out) == expected, size


def test_age_years():
    assert age_years(dt.date(1970, 6, 15), dt.date(2016, 6, 14)) == 45
    assert age_years(dt.date(1970, 6, 15), dt.date(2016, 6, 15)) == 46
    assert age_years(dt.date(2000, 2, 29), dt.date(2021, 2, 28)) == 20
    assert age_years(dt.date(2000, 2, 29), dt.date(2021, 3, 1)) == 21


def test_normalize_reference_and_codes():
    assert normalize_reference("urn:uuid:abc") == "urn:uuid:abc"
    assert normalize_reference("Patient/7") == "Patient/7"
    assert normalize_reference("https://x.org/fhir/Patient/7/_history/2") == "Patient/7"
    assert normalize_reference("Group/7") == "Group/7"
    icd = "http://hl7.org/fhir/sid/icd-10-cm"
    assert normalize_condition_code("k743", icd) == "K74.3"
    assert normalize_condition_code("K74.60", icd) == "K74.60"
    assert normalize_condition_code("38341003", "http://snomed.info/sct") == "38341003"


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.sampled_from(
        [
            "http://loinc.org",
            "2339-0",
            "8480-6",
            "38341003",
            "mg/dL",
            "Patient/pat-a",
            "2020-01-01",
            "ombCategory",
            "entered-in-error",
            "",
        ]
    ),
    st.text(max_size=4),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=6,
)
_RESOURCES = [
    json.loads(line)
    for name in ("Observation", "Condition", "Patient")
    for line in (BULK / f"{name}.ndjson").read_text().splitlines()
    if line.strip()
]


def _paths(obj, prefix=()):
    yield prefix
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for key, value in items:
        yield from _paths(value, (*prefix, key))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mappers_never_fail_on_mutated_resources(general_schema, data):
    """Any element of a valid resource replaced by any JSON: mapped, ignored or Skip, no crash."""
    res = copy.deepcopy(data.draw(st.sampled_from(_RESOURCES)))
    for _ in range(data.draw(st.integers(1, 3))):
        *parent, key = data.draw(st.sampled_from(list(_paths(res))[1:]))
        target = res
        for step in parent:
            target = target[step]
        target[key] = data.draw(_JSON)
    for mapper in (map_observation, map_condition, lambda r, s: map_patient(r, "urn:uuid:x", s)):
        try:
            mapper(res, general_schema)
        except Skip:
            pass
