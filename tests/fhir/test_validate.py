"""The validator: each kind of problem it exists to catch is caught, and valid output passes.

A validator that always says "valid" would let every writer test pass, so each check here
starts from a valid resource or folder, breaks one thing and expects exactly that problem.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from medsynth.errors import DataError
from medsynth.fhir.resources import SYNTHETIC_TAG
from medsynth.fhir.validate import validate_output, validate_resource
from medsynth.fhir.write import write_fhir
from medsynth.simulate import simulate

META = {"tag": [SYNTHETIC_TAG]}
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": META,
    "gender": "female",
    "birthDate": "1980-02-29",
}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "meta": META,
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2021-03-04T10:11:12-05:00",
    "valueQuantity": {
        "value": 99,
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    },
}
CONDITION = {
    "resourceType": "Condition",
    "id": "c1",
    "meta": META,
    "clinicalStatus": {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
        ]
    },
    "verificationStatus": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "confirmed",
            }
        ]
    },
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
    "subject": {"reference": "Patient/p1"},
    "onsetDateTime": "2020-01-01T00:00:00Z",
}
UUID1, UUID2 = (
    "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
    "urn:uuid:7c9e6679-7425-40de-944b-e07fc1f90ae7",
)


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``path`` (dots; integers index lists) set or deleted."""
    out = copy.deepcopy(base)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = out
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


DELETE = object()


@pytest.mark.parametrize("resource", [PATIENT, OBSERVATION, CONDITION])
def test_valid_resources_pass(resource):
    assert validate_resource(resource, synthetic=True) == []


@pytest.mark.parametrize(
    ("resource", "path", "value", "expected"),
    [
        (
            PATIENT,
            "gender",
            "woman",
            ["gender: 'woman' is not one of ['male', 'female', 'other', 'unknown']"],
        ),
        (
            OBSERVATION,
            "status",
            "done",
            [
                "status: 'done' is not one of ['registered', "
                "'preliminary', 'final', 'amended', 'corrected', "
                "'cancelled', 'entered-in-error', 'unknown']"
            ],
        ),
        (
            CONDITION,
            "clinicalStatus.coding.0.code",
            "cured",
            [
                "clinicalStatus.coding[0].code: 'cured' is not one of ['active', 'recurrence', "
                "'relapse', 'inactive', 'remission', 'resolved']"
            ],
        ),
        (
            OBSERVATION,
            "valueQuantity.system",
            DELETE,
            ["valueQuantity: 'system' is a dependency of 'code'"],
        ),
    ],
)
def test_required_bindings_the_models_accept_are_caught(resource, path, value, expected):
    assert validate_resource(with_(resource, path, value)) == expected


def test_a_status_coding_of_another_system_does_not_count():
    bad = with_(CONDITION, "verificationStatus.coding.0.system", "http://example.org/x")
    (problem,) = validate_resource(bad)
    assert problem.startswith("verificationStatus.coding: ")
    assert problem.endswith(
        "no coding of the required system "
        "http://terminology.hl7.org/CodeSystem/condition-ver-status"
    )


def test_a_datetime_with_a_time_needs_a_zone():
    problems = validate_resource(with_(OBSERVATION, "effectiveDateTime", "2021-03-04T10:11:12"))
    assert len(problems) == 2
    assert problems[0].startswith("effectiveDateTime:") and problems[0].endswith("(R4B model)")
    assert problems[1].startswith("effectiveDateTime: '2021-03-04T10:11:12' does not match")
    assert validate_resource(with_(OBSERVATION, "effectiveDateTime", "2021-03-04")) == []


@pytest.mark.parametrize(
    ("resource", "path", "value"),
    [
        (PATIENT, "birthDate", "1981-02-29"),
        (OBSERVATION, "effectiveDateTime", "2021-04-31T10:11:12Z"),
        (CONDITION, "onsetDateTime", "2019-02-29T00:00:00+01:00"),
    ],
)
def test_dates_must_exist_on_the_calendar(resource, path, value):
    problems = validate_resource(with_(resource, path, value))
    assert f"{path}: not a real calendar date or time" in problems


def test_structure_errors_come_from_the_r4b_model():
    assert validate_resource(with_(OBSERVATION, "code", DELETE)) == [
        "code: Field required (R4B model)",
        "Observation: 'code' is a required property",
    ]
    assert validate_resource(with_(PATIENT, "colour", "blue")) == [
        "colour: Extra inputs are not permitted (R4B model)"
    ]
    assert validate_resource({"resourceType": "Spaceship"}) == [
        "resourceType: 'Spaceship' is not an R4 resource type"
    ]
    assert validate_resource(["not", "a", "resource"]) == [
        "(resource): not a JSON object with a resourceType"
    ]


def test_the_synthetic_tag_is_required_on_request():
    bare = with_(PATIENT, "meta", DELETE)
    assert validate_resource(bare) == []
    assert validate_resource(bare, synthetic=True) == [
        "meta.tag: no synthetic tag http://terminology.hl7.org/CodeSystem/v3-ActReason|HTEST"
    ]


def _bundle(kind: str = "transaction") -> dict[str, Any]:
    obs = with_(OBSERVATION, "subject", {"reference": UUID1})
    return {
        "resourceType": "Bundle",
        "id": "b1",
        "meta": META,
        "type": kind,
        "entry": [
            {
                "fullUrl": UUID1,
                "resource": PATIENT,
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": UUID2,
                "resource": obs,
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


def test_bundle_entries_are_checked_inside():
    assert validate_resource(_bundle(), synthetic=True) == []
    assert validate_resource(with_(_bundle(), "type", "pile")) == [
        "type: 'pile' is not one of ['document', 'message', 'transaction', "
        "'transaction-response', 'batch', 'batch-response', 'history', 'searchset', "
        "'collection']"
    ]
    assert validate_resource(with_(_bundle(), "entry.1.request", DELETE)) == [
        "entry[1]: 'request' is a required property"
    ]
    assert validate_resource(with_(_bundle(), "entry.0.request.method", "SEND")) == [
        "entry[0].request.method: 'SEND' is not one of ['GET', 'HEAD', 'POST', 'PUT', "
        "'DELETE', 'PATCH']"
    ]
    assert validate_resource(with_(_bundle(), "entry.0.resource.gender", "x")) == [
        "entry[0].resource.gender: 'x' is not one of ['male', 'female', 'other', 'unknown']"
    ]
    assert validate_resource(with_(_bundle(), "entry.1.resource.meta", DELETE), synthetic=True) == [
        "entry[1].resource.meta.tag: no synthetic tag "
        "http://terminology.hl7.org/CodeSystem/v3-ActReason|HTEST"
    ]


# -- whole folders ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def written(general_schema, tmp_path_factory) -> dict[str, Path]:
    cohort = simulate(general_schema, 6, random_state=8)
    root = tmp_path_factory.mktemp("written")
    write_fhir(cohort, root / "ndjson", random_state=2)
    write_fhir(cohort, root / "bundle", format="bundle", patients_per_bundle=4, random_state=2)
    return {"ndjson": root / "ndjson", "bundle": root / "bundle"}


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_written_folders_pass(written):
    for folder in written.values():
        summary = validate_output(folder)
        assert summary.ok and summary.errors == () and summary.total > 6


def test_a_dangling_reference_across_the_ndjson_set(written, tmp_path):
    out = _copy(written["ndjson"], tmp_path / "o")
    encounters = _lines(out / "Encounter.ndjson")
    dropped = json.loads(encounters[0])["id"]
    (out / "Encounter.ndjson").write_text("".join(encounters[1:]))
    obs = [json.loads(line) for line in _lines(out / "Observation.ndjson")]
    n_refs = sum(o["encounter"]["reference"] == f"Encounter/{dropped}" for o in obs)
    summary = validate_output(out)
    assert n_refs >= 1 and summary.n_errors == n_refs + 2
    dangling = [e for e in summary.errors if "does not resolve in the ndjson set" in e]
    assert len(dangling) == n_refs
    assert dangling[0].startswith("Observation.ndjson:")
    assert f"encounter.reference: Encounter/{dropped} does not resolve" in dangling[0]
    assert (
        f"manifest.json: Encounter.ndjson has {len(encounters) - 1} resources, the "
        f"manifest says {len(encounters)}"
    ) in summary.errors
    assert "manifest.json: sha256 of Encounter.ndjson does not match" in summary.errors


def test_bad_lines_and_duplicate_ids_in_ndjson(written, tmp_path):
    out = _copy(written["ndjson"], tmp_path / "o")
    (out / "manifest.json").unlink()
    patients = _lines(out / "Patient.ndjson")
    (out / "Patient.ndjson").write_text("".join([*patients, patients[0], "{oops\n"]))
    summary = validate_output(out)
    pid = json.loads(patients[0])["id"]
    n = len(patients)
    assert summary.errors == (
        f"Patient.ndjson:{n + 1}: Patient/{pid}: id used twice in the ndjson set",
        f"Patient.ndjson:{n + 2}: not JSON: Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1)",
    )


def test_a_reference_leaving_its_bundle(written, tmp_path):
    out = _copy(written["bundle"], tmp_path / "b")
    first, second = sorted(out.glob("bundle-*.json"))
    doc = json.loads(first.read_text())
    stranger = json.loads(second.read_text())["entry"][0]["fullUrl"]
    doc["entry"][1]["resource"]["subject"]["reference"] = stranger
    first.write_text(json.dumps(doc))
    summary = validate_output(out)
    assert summary.errors == (
        f"{first.name}: entry[1].resource.subject.reference: {stranger} does not resolve "
        "inside the Bundle",
        f"manifest.json: sha256 of {first.name} does not match",
    )


def test_bundle_full_urls_must_be_unique_uuids(written, tmp_path):
    out = _copy(written["bundle"], tmp_path / "b")
    (out / "manifest.json").unlink()
    first = sorted(out.glob("bundle-*.json"))[0]
    doc = json.loads(first.read_text())
    doc["entry"][2]["fullUrl"] = doc["entry"][1]["fullUrl"]
    doc["entry"][3]["fullUrl"] = "Encounter/123"
    first.write_text(json.dumps(doc))
    errors = validate_output(out).errors
    assert errors[:2] == (
        f"{first.name}: entry[2].fullUrl: {doc['entry'][1]['fullUrl']} appears twice",
        f"{first.name}: entry[3].fullUrl: 'Encounter/123' is not a urn:uuid",
    )


def test_manifest_must_list_every_file(written, tmp_path):
    out = _copy(written["ndjson"], tmp_path / "o")
    (out / "Condition.ndjson").rename(out / "Extra.ndjson")
    summary = validate_output(out)
    assert "manifest.json: Extra.ndjson is not listed in output" in summary.errors
    assert "manifest.json: lists Condition.ndjson, which is missing" in summary.errors
    assert hashlib.sha256((out / "Extra.ndjson").read_bytes()).hexdigest()  # file still there


def test_validate_output_needs_a_folder_with_resources(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        validate_output(tmp_path / "missing")
    with pytest.raises(DataError, match="holds no"):
        validate_output(tmp_path)
