"""``medsynth audit``: sources, exit codes 0 (PASS) and 4 (FAIL), and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from medsynth.cli import MedsynthGroup
from medsynth.cli.audit import audit
from medsynth.cli.keys import keys
from medsynth.cli.report_cmd import report
from tests.audit import stub_attack
from tests.helpers import minimal_doc, random_cohort

CHECK = {
    "name": "shares",
    "evaluator": "fidelity",
    "metric": "attribute_tvd_mean",
    "op": "<=",
    "threshold": 0.2,
}


COPIES = stub_attack.CHECK
pytestmark = pytest.mark.usefixtures("exact_copies")  # a privacy check that runs


def group() -> MedsynthGroup:
    """The commands under the same error handling as in ``medsynth``."""
    g = MedsynthGroup(name="medsynth")
    for command in (audit, keys, report):
        g.add_command(command)
    return g


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_schema) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-audit")
    out = {}
    for name, seed, n in (("train", 21, 150), ("holdout", 22, 100), ("synthetic", 23, 150)):
        out[name] = random_cohort(tiny_schema, n, seed=seed, prefix=f"{name}-").save(root / name)
    schema = root / "tiny.json"
    schema.write_text(json.dumps(minimal_doc()))
    out["schema"] = schema
    out["root"] = root
    return out


def policy_file(folder: Path, name: str, threshold: float, privacy: bool = True) -> Path:
    doc = {
        "format": "medsynth.audit-policy/1",
        "name": name,
        "evaluators": {"fidelity": {}, "timeseries": {}},
        "checks": [
            {**CHECK, "threshold": threshold},
            {
                "name": "visits",
                "evaluator": "timeseries",
                "metric": "events_per_patient_tvd",
                "op": "<=",
                "threshold": 0.3,
            },
        ],
    }
    if privacy:
        doc["evaluators"]["exact_copies"] = {}
        doc["checks"].append(COPIES)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def args(folders, out: Path, policy: Path, *extra: str) -> list[str]:
    return [
        "audit",
        "--train",
        str(folders["train"]),
        "--holdout",
        str(folders["holdout"]),
        "--synthetic",
        str(folders["synthetic"]),
        "--policy",
        str(policy),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_pass_exits_0_and_writes_the_report(folders, tmp_path):
    result = CliRunner().invoke(
        group(), args(folders, tmp_path / "r", policy_file(tmp_path, "lenient", 0.2))
    )
    assert result.exit_code == 0, result.output
    assert "verdict PASS under policy 'lenient': 3 passed, 0 failed, 0 not run" in result.output
    assert "PASS: 3 of 3 checks ran and passed." in result.output
    assert "not signed (give --key to sign)" in result.output
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["verdict"] == "PASS" and doc["policy"]["name"] == "lenient"
    assert (tmp_path / "r" / "report.html").is_file()


def test_fail_exits_4_and_still_writes_the_report(folders, tmp_path):
    result = CliRunner().invoke(
        group(), args(folders, tmp_path / "r", policy_file(tmp_path, "impossible", -1.0))
    )
    assert result.exit_code == 4, result.output
    assert "FAIL    shares: fidelity.attribute_tvd_mean =" in result.output
    assert "Error: audit verdict FAIL under policy 'impossible': 1 check failed" in result.output
    assert json.loads((tmp_path / "r" / "report.json").read_text())["verdict"] == "FAIL"


def test_seed_option_overrides_the_policy_seed(folders, tmp_path):
    result = CliRunner().invoke(
        group(), args(folders, tmp_path / "r", policy_file(tmp_path, "lenient", 0.2), "--seed", "5")
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "report.json").read_text())["seed"] == 5


def test_fhir_synthetic_source_needs_and_uses_the_schema(folders, tiny_schema, tmp_path):
    write = pytest.importorskip("medsynth.fhir.write")
    fhir = tmp_path / "synthetic-fhir"
    write.write_fhir(random_cohort(tiny_schema, 60, seed=5, prefix="f-"), fhir)
    policy = policy_file(tmp_path, "lenient", 0.5)
    result = CliRunner().invoke(
        group(),
        args(folders, tmp_path / "r", policy)[:5]
        + [
            "--synthetic",
            str(fhir),
            "--policy",
            str(policy),
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
            "--schema",
            str(folders["schema"]),
        ],
    )
    assert result.exit_code in (0, 4), result.output
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    assert doc["provenance"]["inputs"]["synthetic"]["patients"] == 60


def test_errors_exit_1_with_the_problem_named(folders, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "format": "medsynth.audit-policy/1",
                "name": "bad",
                "evaluators": {"nope": {}},
                "checks": [],
            }
        )
    )
    result = CliRunner().invoke(group(), args(folders, tmp_path / "r", bad))
    assert result.exit_code == 1
    assert "unknown evaluator 'nope'; valid:" in result.output
    wrong_op = policy_file(tmp_path, "wrong-op", 0.2)
    doc = json.loads(wrong_op.read_text())
    doc["checks"][1]["op"] = "=="
    wrong_op.write_text(json.dumps(doc))
    result = CliRunner().invoke(group(), args(folders, tmp_path / "r", wrong_op))
    assert result.exit_code == 1 and "$.checks[1].op" in result.output, result.output
    assert not (tmp_path / "r").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    busy = CliRunner().invoke(
        group(), args(folders, tmp_path / "full", policy_file(tmp_path, "lenient", 0.2))
    )
    assert busy.exit_code == 1 and "not empty" in busy.output


def test_help_names_the_exit_codes():
    result = CliRunner().invoke(group(), ["audit", "--help"])
    assert result.exit_code == 0
    assert "Exit code 0" in result.output and "4 when it is FAIL" in result.output


def test_no_privacy_check_run_is_incomplete_and_exits_4(folders, tmp_path):
    policy = policy_file(tmp_path, "no-privacy", 0.2, privacy=False)
    result = CliRunner().invoke(group(), args(folders, tmp_path / "r", policy))
    assert result.exit_code == 4, result.output
    assert "INCOMPLETE: privacy was NOT assessed (the policy runs no privacy check)" in (
        result.output
    )
    assert "Error: audit verdict INCOMPLETE under policy 'no-privacy'" in result.output
    assert json.loads((tmp_path / "r" / "report.json").read_text())["verdict"] == "INCOMPLETE"


def test_signed_report_verifies_and_one_changed_byte_fails(folders, tmp_path):
    runner = CliRunner()
    made = runner.invoke(group(), ["keys", "generate", "--out", str(tmp_path / "keys")])
    assert made.exit_code == 0, made.output
    private, public = (
        tmp_path / "keys" / "medsynth-signing.key",
        tmp_path / "keys" / "medsynth-signing.pub",
    )
    out = tmp_path / "r"
    policy = policy_file(tmp_path, "lenient", 0.2)
    result = runner.invoke(group(), args(folders, out, policy, "--key", str(private)))
    assert result.exit_code == 0, result.output
    assert f"signed: {out / 'report.sig.json'}" in result.output
    ok = runner.invoke(group(), ["report", "verify", str(out), "--key", str(public)])
    assert ok.exit_code == 0 and "verified: 2 files signed by trusted key" in ok.output
    for name in ("report.json", "report.html"):
        path = out / name
        original = path.read_bytes()
        middle = len(original) // 2
        path.write_bytes(original[:middle] + bytes([original[middle] ^ 1]) + original[middle + 1 :])
        bad = runner.invoke(group(), ["report", "verify", str(out), "--key", str(public)])
        assert bad.exit_code != 0 and name in bad.output, bad.output
        path.write_bytes(original)
    assert runner.invoke(group(), ["report", "verify", str(out)]).exit_code == 0


def test_output_is_complete_or_absent(folders, tmp_path, monkeypatch):
    from medsynth.report import html

    def broken(document):
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(html, "render_html", broken)
    out = tmp_path / "r"
    result = CliRunner().invoke(group(), args(folders, out, policy_file(tmp_path, "lenient", 0.2)))
    assert result.exit_code != 0
    assert not out.exists() and list(tmp_path.glob(".r.partial-*")) == []


def test_a_copy_of_the_training_data_fails_the_default_policy(folders, tmp_path):
    pytest.importorskip("medsynth.audit.mia")
    pytest.importorskip("medsynth.audit.reidentification")
    pytest.importorskip("medsynth.audit.attribute")
    argv = args(folders, tmp_path / "r", Path("default"))
    argv[argv.index("--synthetic") + 1] = str(folders["train"])
    argv[argv.index("--policy") + 1] = "default"
    result = CliRunner().invoke(group(), argv)
    assert result.exit_code == 4, result.output
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    measured = [c for c in doc["checks"] if c["kind"] == "privacy" and c["value"] is not None]
    assert any(c["verdict"] == "FAIL" for c in measured), [c["reason"] for c in doc["checks"]]
