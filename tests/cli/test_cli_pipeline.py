"""End to end through the command line: simulate -> FHIR -> ingest -> export, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from medsynth.cli import cli
from medsynth.cohort import Cohort


def _run(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result


def _comparable(cohort: Cohort) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events and patients keyed by a content signature instead of the writer's invented ids."""
    key = cohort.events.groupby("patient_id")["value"].sum().round(6).rename("signature")
    patients = cohort.patients.join(key, on="patient_id").drop(columns="patient_id")
    patients = patients.sort_values(list(patients.columns)).reset_index(drop=True)
    events = cohort.events.merge(key, left_on="patient_id", right_index=True)
    events = events.drop(columns="patient_id").sort_values(["signature", "time", "channel"])
    return patients, events.reset_index(drop=True)


def test_simulate_ingest_export_round_trip(tmp_path: Path):
    fhir, cohort_dir = tmp_path / "fhir", tmp_path / "cohort"
    out = _run("simulate", "--patients", "25", "--out", str(fhir), "--seed", "3", "--no-progress")
    assert "25 simulated patients" in out.output
    manifest = json.loads((fhir / "manifest.json").read_text())
    assert manifest["output"], manifest
    out = _run(
        "ingest", str(fhir), "--schema", "general-adult", "--out", str(cohort_dir), "--no-progress"
    )
    assert "cohort written to" in out.output
    first = Cohort.load(cohort_dir)
    assert first.n_patients == 25

    bundles, again = tmp_path / "bundles", tmp_path / "again"
    _run("export", str(cohort_dir), "--out", str(bundles), "--format", "bundle", "--no-progress")
    assert any(bundles.rglob("*.json"))
    _run("ingest", str(bundles), "--schema", "general-adult", "--out", str(again), "--no-progress")
    second = Cohort.load(again)
    for a, b in zip(_comparable(first), _comparable(second), strict=True):
        pd.testing.assert_frame_equal(a, b, check_dtype=False)

    tables = tmp_path / "tables"
    _run("export", str(cohort_dir), "--out", str(tables), "--format", "csv")
    assert (tables / "tables.json").is_file()
    assert len(pd.read_csv(next(tables.glob("patients*.csv")))) == 25


def test_simulate_cohort_format_is_deterministic(tmp_path: Path):
    for name in ("a", "b"):
        _run("simulate", "--patients", "10", "--format", "cohort", "--out", str(tmp_path / name))
    assert Cohort.load(tmp_path / "a").content_hash() == Cohort.load(tmp_path / "b").content_hash()


def test_existing_output_is_refused_and_kept(tmp_path: Path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _run("simulate", "--patients", "5", "--out", str(out), code=1)
    assert str(out) in result.output and "--overwrite" in result.output
    assert (out / "keep.txt").read_text() == "mine"


def test_bad_export_line_is_reported_with_file_and_line(tmp_path: Path):
    fhir = tmp_path / "fhir"
    _run("simulate", "--patients", "4", "--out", str(fhir), "--no-progress")
    observations = fhir / "Observation.ndjson"
    lines = observations.read_text().splitlines()
    lines.insert(2, "{not json")
    observations.write_text("\n".join(lines) + "\n")
    before = observations.read_bytes()
    result = _run(
        "ingest",
        str(fhir),
        "--schema",
        "general-adult",
        "--out",
        str(tmp_path / "c"),
        "--no-progress",
    )
    assert "Observation.ndjson" in result.output and "line 3" in result.output
    assert observations.read_bytes() == before


def test_ingest_needs_a_known_schema(tmp_path: Path):
    result = _run(
        "ingest", str(tmp_path), "--schema", "no-such-schema", "--out", str(tmp_path / "c"), code=1
    )
    assert "no-such-schema" in result.output
