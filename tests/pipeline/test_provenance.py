"""One provenance chain: privacy.json, the ledger, a FHIR export and an audit report name one
model hash; each is checked against the others, and records from medsynth 0.1 still verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsynth.cli import cli as main
from medsynth.core.canonical import JCS, canonical_form_of, canonical_json
from medsynth.errors import DataError
from medsynth.models.artifact import load_model, model_sha256
from medsynth.pipeline.generate import generate_cohort
from medsynth.pipeline.provenance import check_chain, model_identity
from medsynth.privacy.ledger import Ledger
from medsynth.report.signing import verify_report

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy-0.1.0"
def copy_release(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock"))
    return dst


def test_every_record_names_the_one_model_hash(released):
    digest = model_sha256(released / "model")
    privacy = (released / "model" / "privacy.json").read_bytes()
    assert canonical_form_of(privacy, forms=(JCS,)) == JCS
    assert json.loads(privacy)["model_sha256"] == digest
    artifact = [e for e in Ledger(released / "ledger.jsonl").events() if e.type == "artifact"]
    assert [e.model_sha256 for e in artifact] == [digest]
    manifest = json.loads((released / "fhir" / "manifest.json").read_text())
    assert manifest["extension"]["medsynth"]["extra"]["model_sha256"] == digest
    report = json.loads((released / "report" / "report.json").read_text())
    assert report["provenance"]["model"]["sha256"] == digest
    assert canonical_form_of((released / "report" / "report.json").read_bytes()) == JCS
    chain = check_chain(
        model=released / "model",
        ledger=released / "ledger.jsonl",
        export=released / "fhir",
        report=released / "report",
    )
    assert chain.ok and chain.model_sha256 == digest and len(chain.links) == 4, chain.lines()


def test_the_model_hash_covers_weights_and_config_not_the_privacy_record(released, tmp_path):
    model = copy_release(released / "model", tmp_path / "model")
    before = model_sha256(model)
    (model / "privacy.json").write_bytes(b"{}")
    assert model_sha256(model) == before
    config = json.loads((model / "config.json").read_text())
    config["training"]["note"] = "changed"
    (model / "config.json").write_text(json.dumps(config))
    assert model_sha256(model) != before


def test_an_edited_privacy_record_is_refused_on_load(released, tmp_path):
    model = copy_release(released / "model", tmp_path / "model")
    doc = json.loads((model / "privacy.json").read_text())
    doc["epsilon"] = doc["epsilon"] / 10  # understate the cost, keep the form canonical
    (model / "privacy.json").write_bytes(canonical_json(doc))
    chain = check_chain(model=model)
    assert not chain.ok and "understates" in chain.links[0].note
    generated = CliRunner().invoke(
        main, ["generate", str(model), "--patients", "3", "--out", str(tmp_path / "g")]
    )
    assert generated.exit_code == 1 and "privacy record does not hold" in generated.output
    assert str(model / "privacy.json") in generated.output and not (tmp_path / "g").exists()
    with pytest.raises(DataError, match="privacy record does not hold"):
        model_identity(model)  # what an audit embeds: refused too
    doc["model_sha256"] = "0" * 64  # name another model
    (model / "privacy.json").write_bytes(canonical_json(doc))
    with pytest.raises(DataError, match="names model 0000000000000000"):
        load_model(model)
    result = CliRunner().invoke(
        main, ["generate", str(model), "--patients", "3", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "privacy.json" in result.output
    (model / "privacy.json").write_text(json.dumps(doc, indent=2))  # re-indented
    with pytest.raises(DataError, match="not in canonical JSON form"):
        load_model(model)


def test_records_naming_another_model_fail_the_chain(released, tmp_path):
    root = copy_release(released, tmp_path / "r")
    manifest = json.loads((root / "fhir" / "manifest.json").read_text())
    manifest["extension"]["medsynth"]["extra"]["model_sha256"] = "f" * 64
    (root / "fhir" / "manifest.json").write_text(json.dumps(manifest))
    chain = check_chain(model=root / "model", ledger=root / "ledger.jsonl", export=root / "fhir")
    assert not chain.ok
    assert [link.ok for link in chain.links] == [True, False, True]
    empty = Ledger.create(tmp_path / "other-ledger.jsonl")
    chain = check_chain(model=root / "model", ledger=empty)
    assert not chain.ok and "no artifact event names this model" in chain.links[-1].note


def test_nothing_given_is_no_proof(released):
    chain = check_chain()
    assert not chain.ok and chain.links == () and chain.model_sha256 is None


def test_report_verify_and_budget_verify_check_the_chain(released, tmp_path):
    runner = CliRunner()
    args = ["--model", str(released / "model"), "--ledger", str(released / "ledger.jsonl")]
    ok = runner.invoke(
        main,
        ["report", "verify", str(released / "report"), *args, "--export", str(released / "fhir")],
    )
    assert ok.exit_code == 0, ok.output
    assert "provenance verified" in ok.output and ok.output.count("ok  ") >= 4
    ok = runner.invoke(main, ["budget", "verify", *args, "--report", str(released / "report")])
    assert ok.exit_code == 0 and "provenance verified" in ok.output, ok.output
    other = copy_release(released, tmp_path / "other")
    doc = json.loads((other / "model" / "config.json").read_text())
    doc["training"]["note"] = "another model"
    (other / "model" / "config.json").write_text(json.dumps(doc))
    bad = runner.invoke(
        main,
        ["report", "verify", str(released / "report"), "--model", str(other / "model")],
    )
    assert bad.exit_code == 5 and "FAIL" in bad.output


# -- records written by medsynth 0.1 keep verifying -----------------------------------------
@pytest.fixture()
def legacy(tmp_path):
    return copy_release(LEGACY, tmp_path / "legacy")


def test_a_0_1_ledger_verifies_and_takes_new_lines(legacy):
    book = Ledger(legacy / "ledger.jsonl")
    events = book.events()
    assert [e.type for e in events] == ["cap", "charge", "artifact"]
    assert {e.format for e in events} == {None}
    assert b'"delta":1e-05' in (legacy / "ledger.jsonl").read_bytes()  # the 0.1 spelling
    book.set_cap(events[0].dataset, 12.0)
    assert book.verify() == 4 and book.events()[-1].format == "medsynth.ledger-event/2"
    assert b'"epsilon":12,' in (legacy / "ledger.jsonl").read_bytes().splitlines()[-1]


def test_a_0_1_signed_report_verifies(legacy):
    result = verify_report(legacy / "report", public_key_path=legacy / "medsynth-signing.pub")
    assert result.trusted_key and {f.name for f in result.files} == {"report.json", "report.html"}
    chain = check_chain(report=legacy / "report")
    assert chain.links[0].ok and "0.1" in chain.links[0].note


def test_a_0_1_model_loads_generates_and_matches_its_ledger_entry(legacy):
    model = load_model(legacy / "model")
    assert model.legacy and model.epsilon == pytest.approx(2.9986855428388197)
    assert generate_cohort(model, 5, random_state=0).n_patients == 5
    chain = check_chain(model=legacy / "model", ledger=legacy / "ledger.jsonl")
    assert chain.ok, chain.lines()
