"""The FHIR writer: valid R4 (R4B models + required bindings), content, layout, streaming.

The fast path builds plain dicts; the central test here proves, resource by resource, that
each dict equals what the ``fhir.resources.R4B`` model makes of it and passes
:func:`medsynth.fhir.validate.validate_resource`, on simulated cohorts of both shipped schemas
and on a hand-built cohort that reaches every branch of the builders.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fhir.resources.R4B import get_fhir_model_class

from medsynth._io import OutputExistsError
from medsynth.cohort import Cohort
from medsynth.errors import DataError, MedsynthError
from medsynth.fhir.names import ANY_GIVEN, FAMILY, FEMALE_GIVEN, MALE_GIVEN
from medsynth.fhir.resources import IDENTIFIER_SYSTEM, SOURCE_ID_SYSTEM, SYNTHETIC_TAG
from medsynth.fhir.validate import validate_output, validate_resource
from medsynth.fhir.write import Manifest, write_fhir
from medsynth.schema import DatasetSchema, parse_schema
from medsynth.simulate import simulate, simulate_chunks

TYPES = ("Patient", "Encounter", "Observation", "Condition")
LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def read_ndjson(folder: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        t: [json.loads(line) for line in (folder / f"{t}.ndjson").read_text().splitlines()]
        for t in TYPES
        if (folder / f"{t}.ndjson").exists()
    }


def read_bundles(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("bundle-*.json"))]


# -- a hand-built cohort that reaches every branch --------------------------------------------
@pytest.fixture(scope="module")
def edge_schema(general_schema: DatasetSchema) -> DatasetSchema:
    doc = copy.deepcopy(general_schema.raw)
    doc["name"] = "edge"
    doc["time"].update(anchor="first_event", timezone="-05:00")
    doc["time"]["output_spread_days"] = 3
    doc["attributes"].append(
        {
            "name": "zip3",
            "type": "categorical",
            "fhir": "Patient.address.zip3",
            "categories": ["021", "945"],
        }
    )
    doc["conditions"] = {
        "system": "http://hl7.org/fhir/sid/icd-10-cm",
        "codes": [
            {"code": "I10", "display": "Essential hypertension"},
            {"code": "E11.9", "display": "Type 2 diabetes"},
        ],
    }
    return parse_schema(doc)


@pytest.fixture(scope="module")
def edge_cohort(edge_schema: DatasetSchema) -> Cohort:
    na = pd.NA
    patients = pd.DataFrame(
        {
            "patient_id": ["a", "b", "c"],
            "sex": ["female", "male", na],
            "age": [18.0, 90.0, na],
            "race": ["other", "white", na],
            "ethnicity": ["hispanic", na, "not_hispanic"],
            "state": ["MA", na, "CA"],
            "deceased": pd.array([True, False, na], dtype="boolean"),
            "zip3": ["021", na, "945"],
        }
    )
    events = pd.DataFrame(
        [
            # a: a visit with BP, a repeated systolic, a lone diastolic later that day, -0.04
            ("a", 0.0, "systolic_bp", 120.0),
            ("a", 0.0, "diastolic_bp", 80.0),
            ("a", 0.0, "systolic_bp", 118.0),
            ("a", 0.0, "potassium", 4.0),
            ("a", 0.25, "diastolic_bp", 79.0),
            ("a", 0.25, "glucose", 99.0),
            ("a", 30.5, "heart_rate", 61.0),
            ("a", 400.0, "creatinine", 0.81),
            # b: one event; c: none
            ("b", 0.0, "hba1c", 6.55),
        ],
        columns=["patient_id", "time", "channel", "value"],
    )
    conditions = pd.DataFrame(
        [("a", "I10", 0.0), ("a", "E11.9", 200.5), ("c", "I10", 0.0)],
        columns=["patient_id", "code", "onset"],
    )
    cohort, _ = Cohort.conform(edge_schema, patients, events, conditions)
    return cohort


@pytest.fixture(scope="module")
def cohorts(general_schema, liver_schema, edge_cohort) -> dict[str, Cohort]:
    return {
        "general-adult": simulate(general_schema, 12, random_state=3),
        "liver-panel": simulate(liver_schema, 8, random_state=4),
        "edge": edge_cohort,
    }


@pytest.mark.parametrize("name", ["general-adult", "liver-panel", "edge"])
def test_fast_path_dicts_equal_the_r4b_models_and_validate(name, cohorts, tmp_path):
    manifest = write_fhir(cohorts[name], tmp_path / "out", random_state=5)
    written = read_ndjson(tmp_path / "out")
    assert {t: len(v) for t, v in written.items()} == manifest.counts
    for rtype, resources in written.items():
        model = get_fhir_model_class(rtype)
        for res in resources:
            assert model.model_validate(res).model_dump(mode="json", exclude_none=True) == res
            assert validate_resource(res, synthetic=True) == []
    assert json.loads(model.model_validate(res).model_dump_json()) == res  # its own JSON too


@pytest.mark.parametrize("layout", ["ndjson", "bundle"])
@pytest.mark.parametrize("name", ["general-adult", "liver-panel", "edge"])
def test_every_output_validates_with_resolving_references(name, layout, cohorts, tmp_path):
    manifest = write_fhir(
        cohorts[name], tmp_path / "out", format=layout, random_state=1, patients_per_bundle=5
    )
    summary = validate_output(tmp_path / "out")
    assert summary.errors == () and summary.ok
    assert summary.total == manifest.total and summary.files == len(manifest.files)
    assert {t: summary.counts[t] for t in manifest.counts if manifest.counts[t]} == {
        t: n for t, n in manifest.counts.items() if n
    }


def test_bundles_are_transactions_of_whole_patients(cohorts, tmp_path):
    cohort = cohorts["general-adult"]
    manifest = write_fhir(cohort, tmp_path / "b", format="bundle", patients_per_bundle=5)
    bundles = read_bundles(tmp_path / "b")
    assert [f.url for f in manifest.files] == [
        "bundle-000001.json",
        "bundle-000002.json",
        "bundle-000003.json",
    ]
    assert [
        sum(e["resource"]["resourceType"] == "Patient" for e in b["entry"]) for b in bundles
    ] == [5, 5, 2]
    seen = Counter()
    for b in bundles:
        assert b["type"] == "transaction" and b["meta"]["tag"] == [SYNTHETIC_TAG]
        urls = {e["fullUrl"] for e in b["entry"]}
        for e in b["entry"]:
            res = e["resource"]
            seen[res["resourceType"]] += 1
            assert e["fullUrl"] == f"urn:uuid:{res['id']}"
            assert e["request"] == {"method": "POST", "url": res["resourceType"]}
            for key in ("subject", "encounter"):
                if key in res:
                    assert res[key]["reference"] in urls
    assert dict(seen) == manifest.counts
    assert [f.count for f in manifest.files] == [len(b["entry"]) for b in bundles]


def test_observations_codes_units_and_panels(cohorts, tmp_path):
    schema = cohorts["general-adult"].schema
    write_fhir(cohorts["general-adult"], tmp_path / "o")
    obs = read_ndjson(tmp_path / "o")["Observation"]
    panels = [o for o in obs if o["code"]["coding"][0]["code"] == "85354-9"]
    singles = [o for o in obs if "valueQuantity" in o]
    assert len(panels) + len(singles) == len(obs) and panels
    for o in obs:
        assert o["status"] == "final" and o["code"]["coding"][0]["system"] == LOINC
        (cat,) = o["category"]
        assert cat["coding"][0]["system"] == OBS_CATEGORY
        assert cat["coding"][0]["code"] in ("vital-signs", "laboratory")
    for o in singles:
        ch = schema.channel_by_code[o["code"]["coding"][0]["code"]]
        q = o["valueQuantity"]
        assert (q["system"], q["code"], q["unit"]) == (UCUM, ch.unit, ch.unit)
        assert q["value"] == round(q["value"], ch.decimals) and ch.min <= q["value"] <= ch.max
        assert o["category"][0]["coding"][0]["code"] == ch.category
    for p in panels:
        assert "valueQuantity" not in p and p["category"][0]["coding"][0]["code"] == "vital-signs"
        assert [c["code"]["coding"][0]["code"] for c in p["component"]] == ["8480-6", "8462-4"]
        assert all(c["valueQuantity"]["code"] == "mm[Hg]" for c in p["component"])
    # every blood pressure value of the cohort is in a panel component
    n_bp = cohorts["general-adult"].events["channel"].isin(["systolic_bp", "diastolic_bp"]).sum()
    assert sum(len(p["component"]) for p in panels) == n_bp


def _local(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_edge_cohort_content_exactly(edge_cohort, tmp_path):
    manifest = write_fhir(edge_cohort, tmp_path / "e", random_state=9)
    out = read_ndjson(tmp_path / "e")
    assert manifest.counts == {"Patient": 3, "Encounter": 4, "Observation": 8, "Condition": 3}
    pa, pb, pc = out["Patient"]
    assert pa["gender"] == "female" and pa["deceasedBoolean"] is True
    assert pa["address"] == [{"use": "home", "state": "MA", "postalCode": "02100"}]
    assert "address" not in pb and pb["deceasedBoolean"] is False
    assert "gender" not in pc and "birthDate" not in pc and "deceasedBoolean" not in pc
    assert pc["address"] == [{"use": "home", "state": "CA", "postalCode": "94500"}]
    race = pa["extension"][0]
    assert race["url"].endswith("us-core-race")
    assert race["extension"][0]["url"] == "detailed"  # 2131-1 "Other Race" is no OMB category
    assert [e["url"] for e in pb["extension"]] == [race["url"]]  # ethnicity missing
    assert pa["name"][0]["given"][0] in FEMALE_GIVEN and pa["name"][0]["family"] in FAMILY
    assert pb["name"][0]["given"][0] in MALE_GIVEN and pc["name"][0]["given"][0] in ANY_GIVEN
    for p in out["Patient"]:
        assert p["identifier"][0]["system"] == IDENTIFIER_SYSTEM
        assert len(p["identifier"][0]["value"]) == 10
    enc = {e["id"]: e for e in out["Encounter"]}
    ref = {p["id"]: name for p, name in zip(out["Patient"], "abc", strict=True)}
    by_patient = Counter(ref[e["subject"]["reference"].split("/")[1]] for e in enc.values())
    # a: day 0 (two times, 6 hours apart: starts are 08:00-15:59, so one day), day 30, day 400
    assert by_patient == {"a": 3, "b": 1}
    start_a = _local(out["Observation"][0]["effectiveDateTime"])
    # every dateTime carries the schema's offset; encounters span their observations' day
    for o in out["Observation"]:
        e = enc[o["encounter"]["reference"].split("/")[1]]
        when = _local(o["effectiveDateTime"])
        assert o["effectiveDateTime"].endswith("-05:00") and when.utcoffset() == dt.timedelta(
            hours=-5
        )
        assert _local(e["period"]["start"]) <= when <= _local(e["period"]["end"])
        assert _local(e["period"]["start"]).date() == when.date()
        assert e["subject"] == o["subject"] and e["status"] == "finished"
        assert e["class"]["code"] == "AMB"
    values = [o["valueQuantity"]["value"] for o in out["Observation"] if "valueQuantity" in o]
    comps = [
        [c["valueQuantity"]["value"] for c in o["component"]]
        for o in out["Observation"]
        if "component" in o
    ]
    assert comps == [[118, 80], [120], [79]]  # a repeated systolic makes a second panel
    hba1c = edge_cohort.events.loc[edge_cohort.events["channel"] == "hba1c", "value"].item()
    assert values == [4.0, 99, 61, 0.81, hba1c] and hba1c in (6.5, 6.6)
    (obs_b,) = [o for o in out["Observation"] if o["subject"]["reference"].endswith(pb["id"])]
    e_b = enc[obs_b["encounter"]["reference"].split("/")[1]]
    assert e_b["period"]["start"] == e_b["period"]["end"] == obs_b["effectiveDateTime"]
    # conditions: ICD-10-CM, statuses with their systems, onset = time zero + offset
    c_a = [c for c in out["Condition"] if c["subject"] == {"reference": f"Patient/{pa['id']}"}]
    assert [c["code"]["coding"][0]["code"] for c in c_a] == ["I10", "E11.9"]
    assert c_a[0]["code"]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10-cm"
    assert c_a[0]["clinicalStatus"]["coding"][0]["code"] == "active"
    assert c_a[0]["verificationStatus"]["coding"][0]["code"] == "confirmed"
    zero = _local(c_a[0]["onsetDateTime"])
    assert _local(c_a[1]["onsetDateTime"]) - zero == dt.timedelta(days=200.5)
    assert zero == start_a  # time zero of patient a: its first observation and first onset
    assert dt.date(2021, 1, 1) <= zero.date() <= dt.date(2021, 1, 4)
    assert dt.time(8) <= zero.time() < dt.time(16)
    # age 18 at time zero, from birthDate
    birth = dt.date.fromisoformat(pa["birthDate"])
    years = zero.year - birth.year - ((zero.month, zero.day) < (birth.month, birth.day))
    assert years == 18


def test_every_resource_is_tagged_synthetic_with_invented_ids(cohorts, tmp_path):
    cohort = cohorts["general-adult"]
    write_fhir(cohort, tmp_path / "t")
    text = "".join((tmp_path / "t" / f"{t}.ndjson").read_text() for t in TYPES)
    for line in text.splitlines():
        assert json.loads(line)["meta"] == {"tag": [SYNTHETIC_TAG]}
    # A cohort's own ids appear only as the source identifier of its Patients (so an export
    # read back is the same patients); every resource id and reference is invented.
    own = [
        i["value"]
        for line in (tmp_path / "t" / "Patient.ndjson").read_text().splitlines()
        for i in json.loads(line)["identifier"]
        if i["system"] == SOURCE_ID_SYSTEM
    ]
    assert own == list(cohort.patient_ids)
    resources = [json.loads(line) for line in text.splitlines()]
    for res in resources:
        if res["resourceType"] == "Patient":
            res["identifier"] = [i for i in res["identifier"] if i["system"] != SOURCE_ID_SYSTEM]
    stripped = json.dumps(resources)
    assert not any(pid in stripped for pid in cohort.patient_ids)


def test_same_seed_same_bytes_whatever_the_chunking(general_schema, tmp_path):
    one = write_fhir(simulate(general_schema, 30, random_state=2), tmp_path / "one", random_state=4)
    chunks = simulate_chunks(general_schema, 30, random_state=2, chunk_size=7)
    many = write_fhir(chunks, tmp_path / "many", random_state=4)
    for f in one.files:
        assert (tmp_path / "one" / f.url).read_bytes() == (tmp_path / "many" / f.url).read_bytes()
    assert one.files == many.files and one.counts == many.counts
    other = write_fhir(simulate(general_schema, 30, random_state=2), tmp_path / "x", random_state=5)
    assert other.counts == one.counts and other.files[0].sha256 != one.files[0].sha256


def test_worker_processes_write_the_same_bytes(general_schema, tmp_path):
    cohort = simulate(general_schema, 20, random_state=2)
    a = write_fhir(cohort, tmp_path / "a", format="bundle", patients_per_bundle=3)
    b = write_fhir(cohort, tmp_path / "b", format="bundle", patients_per_bundle=3, workers=2)
    assert [f.sha256 for f in a.files] == [f.sha256 for f in b.files] and len(a.files) == 7


def test_manifest_is_a_bulk_data_manifest_with_medsynth_fields(cohorts, tmp_path):
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    cohort = cohorts["liver-panel"]
    manifest = write_fhir(
        cohort,
        tmp_path / "m",
        random_state=3,
        transaction_time=when,
        manifest_extra={"model_sha256": "ab" * 32, "epsilon": 1.5},
    )
    doc = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert doc["transactionTime"] == "2024-05-06T07:08:09+00:00"
    assert doc["requiresAccessToken"] is False and doc["error"] == []
    assert doc["outputFormat"] == "application/fhir+ndjson"
    assert [o["type"] for o in doc["output"]] == [
        "Patient",
        "Encounter",
        "Observation",
        "Condition",
    ]
    med = doc["extension"]["medsynth"]
    assert med["schema"] == {"name": "liver-panel", "sha256": cohort.schema.sha256}
    assert med["seed"] == 3 and med["patients"] == 8 and med["synthetic"] is True
    assert med["extra"] == {"model_sha256": "ab" * 32, "epsilon": 1.5}
    assert med["counts"] == manifest.counts and manifest.total == sum(manifest.counts.values())
    assert manifest.path == tmp_path / "m"
    assert Manifest.load(tmp_path / "m") == manifest
    lines = {t: len(v) for t, v in read_ndjson(tmp_path / "m").items()}
    assert lines == manifest.counts == {o["type"]: o["count"] for o in doc["output"]}


def _failing_chunks(cohort: Cohort, out: Path):
    yield cohort
    assert not out.exists()  # nothing visible while writing
    raise RuntimeError("generation failed")


def test_a_failed_write_leaves_nothing(cohorts, tmp_path):
    out = tmp_path / "f"
    with pytest.raises(RuntimeError, match="generation failed"):
        write_fhir(_failing_chunks(cohorts["general-adult"], out), out)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(cohorts, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        write_fhir(cohorts["edge"], out)
    assert (out / "old.txt").exists()
    write_fhir(cohorts["edge"], out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{t}.ndjson" for t in TYPES] + ["manifest.json"]
    )


def test_bad_arguments_and_mixed_schemas_are_refused(cohorts, tmp_path):
    with pytest.raises(MedsynthError, match="'xml' is unknown"):
        write_fhir(cohorts["edge"], tmp_path / "x", format="xml")
    with pytest.raises(MedsynthError, match="patients_per_bundle"):
        write_fhir(cohorts["edge"], tmp_path / "x", patients_per_bundle=0)
    with pytest.raises(MedsynthError, match="seed must be a non-negative integer, got -1"):
        write_fhir(cohorts["edge"], tmp_path / "x", random_state=-1)
    with pytest.raises(MedsynthError, match="not JSON-serialisable"):
        write_fhir(cohorts["edge"], tmp_path / "x", manifest_extra={"e": float("nan")})
    with pytest.raises(DataError, match="one schema per output folder"):
        write_fhir([cohorts["edge"], cohorts["liver-panel"]], tmp_path / "x")
    with pytest.raises(DataError, match="no cohort chunk"):
        write_fhir([], tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_writer_memory_stays_flat_as_patients_grow(general_schema, tmp_path):
    base = simulate(general_schema, 100, random_state=1)
    halves = [base.subset(base.patient_ids[:50]), base.subset(base.patient_ids[50:])]

    def peak(n_chunks: int, out: Path) -> int:
        tracemalloc.start()
        try:
            manifest = write_fhir((halves[i % 2] for i in range(n_chunks)), out)
            assert manifest.counts["Patient"] == 50 * n_chunks
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(2, tmp_path / "s"), peak(16, tmp_path / "l")
    assert large < 1.2 * small, (small, large)  # 8 times the patients, not more memory


@pytest.mark.parametrize("layout", ["ndjson", "bundle"])
def test_the_reader_reads_the_edge_cohort_back(edge_cohort, layout, tmp_path):
    from medsynth.fhir.read import read_fhir

    write_fhir(edge_cohort, tmp_path / "e", format=layout, random_state=2)
    back = read_fhir([tmp_path / "e"], edge_cohort.schema).cohort
    ids = dict(
        zip(
            back.patients["state"].fillna("-") + back.patients["sex"].fillna("-"),
            back.patients["patient_id"],
            strict=True,
        )
    )
    names = {ids["MAfemale"]: "a", ids["-male"]: "b", ids["CA-"]: "c"}
    pat = back.patients.assign(patient_id=back.patients["patient_id"].map(names))
    expected = edge_cohort.patients.assign(
        deceased=pd.array([True, False, False], dtype="boolean")
    )  # absent: alive
    pd.testing.assert_frame_equal(
        pat.sort_values("patient_id").reset_index(drop=True), expected, check_dtype=False
    )
    for table, keys in (
        (back.events, ["patient_id", "time", "channel", "value"]),
        (back.conditions, ["patient_id", "code", "onset"]),
    ):
        orig = edge_cohort.events if table is back.events else edge_cohort.conditions
        got = table.assign(patient_id=table["patient_id"].map(names))
        pd.testing.assert_frame_equal(
            got.sort_values(keys).reset_index(drop=True),
            orig.sort_values(keys).reset_index(drop=True),
            check_dtype=False,
        )
