from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from medsynth.errors import SchemaError
from medsynth.schema import load_schema, parse_schema, schemas_dir, shipped_schemas
from tests.helpers import minimal_doc


def test_shipped_schemas_load(general_schema, liver_schema):
    assert set(shipped_schemas()) >= {"general-adult", "liver-panel"}
    assert "55284-4" not in general_schema.channel_by_code  # a panel code, not a channel
    assert "55284-4" in general_schema.panel_by_code
    assert general_schema.panel_by_code["85354-9"].components == ("systolic_bp", "diastolic_bp")
    assert general_schema.channel_by_code["2160-0"].name == "creatinine"  # alias
    assert liver_schema.condition_system == "http://hl7.org/fhir/sid/icd-10-cm"
    assert (
        general_schema.attribute_by_fhir["us-core-race"].category_for_code("2106-3").value
        == "white"
    )
    assert (
        general_schema.attribute_by_name["state"].category_for_code("Massachusetts").value == "MA"
    )


def test_schema_hash_is_stable(general_schema):
    again = load_schema(schemas_dir() / "general-adult.dataset.json")
    assert again.sha256 == general_schema.sha256
    assert again == general_schema


def test_minimal_schema_is_valid():
    schema = parse_schema(minimal_doc())
    assert schema.channel_names == ("glucose", "hba1c")
    assert schema.limits.max_conditions == 2


def _problems(doc) -> list[str]:
    with pytest.raises(SchemaError) as info:
        parse_schema(doc)
    return [str(p) for p in info.value.problems]


def test_structural_problems_are_all_reported_with_paths():
    doc = minimal_doc()
    doc["channels"][1]["unit"] = ""
    doc["channels"][0]["category"] = "imaging"
    doc["attributes"][1].pop("min")
    doc["limits"]["max_events_total"] = 0
    problems = _problems(doc)
    assert any(p.startswith("$.channels[1].unit:") for p in problems)
    assert any(p.startswith("$.channels[0].category:") for p in problems)
    assert any(p.startswith("$.attributes[1]:") and "'min'" in p for p in problems)
    assert any(p.startswith("$.limits.max_events_total:") for p in problems)
    assert len(problems) == 4


def test_semantic_problems_are_all_reported():
    doc = minimal_doc()
    doc["channels"][0]["min"] = 700  # min above max
    doc["channels"][1]["code"] = "2339-0"  # duplicate LOINC code
    doc["attributes"][0]["categories"] = ["female", "woman"]  # not a FHIR gender
    doc["panels"] = [
        {
            "name": "bp",
            "code": "85354-9",
            "display": "BP",
            "category": "vital-signs",
            "components": ["systolic_bp"],
        }
    ]  # unknown channel
    doc["time"]["anchor"] = "fixed_date"  # without anchor_date
    problems = _problems(doc)
    joined = "\n".join(problems)
    assert "$.channels[0]: min 700 must be below max 600" in joined
    assert "LOINC code '2339-0' names more than one" in joined
    assert "$.attributes[0].categories[1]: 'woman' is not a FHIR administrative gender" in joined
    assert "$.panels[0].components[0]: 'systolic_bp' is not a channel name" in joined
    assert "$.time: anchor 'fixed_date' needs 'anchor_date'" in joined
    assert len(problems) == 5


def test_bad_home_for_type_and_duplicate_names():
    doc = minimal_doc()
    doc["attributes"].append(
        {"name": "glucose", "type": "numeric", "fhir": "Patient.gender", "min": 0, "max": 1}
    )
    problems = "\n".join(_problems(doc))
    assert "name 'glucose' is used more than once" in problems
    assert "two attributes map to the same FHIR element 'Patient.gender'" in problems
    assert "$.attributes[2].type: Patient.gender holds a categorical attribute" in problems


def test_bad_files(tmp_path: Path):
    with pytest.raises(SchemaError, match="no such file or shipped schema"):
        load_schema(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_schema(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "other"}))
    with pytest.raises(SchemaError) as info:
        load_schema(wrong)
    assert str(wrong) in str(info.value)
    assert any(p.where == "$.format" for p in info.value.problems)


def test_invalid_calendar_date_is_caught():
    doc = minimal_doc()
    doc["time"]["output_start"] = "2022-02-30"
    assert any(p.startswith("$.time.output_start:") for p in _problems(doc))


def test_date_attribute_takes_date_bounds_and_numeric_takes_numbers():
    doc = minimal_doc()
    doc["attributes"] = [a for a in doc["attributes"] if a["fhir"] != "Patient.birthDate"]
    doc["attributes"].append(
        {
            "name": "birth",
            "type": "date",
            "fhir": "Patient.birthDate",
            "min": "1900-01-01",
            "max": "2020-12-31",
        }
    )
    birth = parse_schema(doc).attribute_by_name["birth"]
    assert (birth.type, birth.min, birth.max) == ("date", "1900-01-01", "2020-12-31")
    doc["attributes"][-1]["min"] = 5
    with pytest.raises(SchemaError, match=r"\$\.attributes\[1\]\.min"):
        parse_schema(doc)
    numeric = minimal_doc()
    age = next(a for a in numeric["attributes"] if a["type"] == "numeric")
    age["max"] = "120"
    with pytest.raises(SchemaError, match=r"\.max: '120' is not of type 'number'"):
        parse_schema(numeric)


def test_min_events_total_defaults_to_zero_and_is_checked_against_the_limits():
    doc = copy.deepcopy(load_schema("general-adult").raw)
    doc["limits"].pop("min_events_total", None)
    assert parse_schema(doc).limits.min_events_total == 0
    doc["limits"]["min_events_total"] = 2
    assert parse_schema(doc).limits.min_events_total == 2
    doc["limits"]["min_events_total"] = doc["limits"]["max_events_total"] + 1
    with pytest.raises(SchemaError, match="min_events_total"):
        parse_schema(doc)
