"""run_audit end to end: the report folder, its schema, provenance and degenerate inputs."""

from __future__ import annotations

import hashlib
import json

import jsonschema
import pytest

from medsynth._io import OutputExistsError
from medsynth.audit.base import AuditInputs
from medsynth.audit.policy import load_policy, parse_policy
from medsynth.audit.run import REPORT_HTML, REPORT_JSON, STATEMENT, validate_report
from medsynth.errors import SchemaError
from medsynth.models.artifact import PRIVACY_FORMAT, model_sha256
from medsynth.pipeline.audit import run_audit
from medsynth.schema.load import load_json_schema
from tests.audit import stub_attack
from tests.helpers import make_cohort, random_cohort

canonical = pytest.importorskip("medsynth.core.canonical")

TARGET = {"condition": "38341003"}
COPIES = stub_attack.CHECK
pytestmark = pytest.mark.usefixtures("exact_copies")  # a privacy check that runs


def policy_doc(**overrides) -> dict:
    doc = {
        "format": "medsynth.audit-policy/1",
        "name": "unit",
        "seed": 7,
        "evaluators": {
            "exact_copies": {},
            "fidelity": {"params": {"bins": 5}},
            "timeseries": {"params": {"gallery_channels": 1, "gallery_patients": 2}},
            "utility": {"params": {"target": TARGET, "bootstrap": 20}},
            "subgroups": {"params": {"min_group_size": 20, "target": TARGET}},
        },
        "checks": [
            COPIES,
            {
                "name": "shares",
                "evaluator": "fidelity",
                "metric": "attribute_tvd_mean",
                "op": "<=",
                "threshold": 0.15,
            },
            {
                "name": "values",
                "evaluator": "fidelity",
                "metric": "channel_tvd_max",
                "op": "<=",
                "threshold": 0.2,
                "minus_baseline": True,
            },
            {
                "name": "visits",
                "evaluator": "timeseries",
                "metric": "events_per_patient_tvd",
                "op": "<=",
                "threshold": 0.25,
            },
            {
                "name": "tstr",
                "evaluator": "utility",
                "metric": "auc_synthetic",
                "op": ">=",
                "threshold": 0.7,
                "statistic": "ci_low",
            },
            {
                "name": "groups",
                "evaluator": "subgroups",
                "metric": "under_represented_groups",
                "op": "<=",
                "threshold": 0,
            },
        ],
    }
    doc.update(overrides)
    return doc


@pytest.fixture(scope="module")
def cohorts(tiny_schema):
    schema = tiny_schema
    return (
        schema,
        random_cohort(schema, 200, seed=11, prefix="REAL-T"),
        random_cohort(schema, 150, seed=12, prefix="REAL-H"),
        random_cohort(schema, 200, seed=13, prefix="SYN-"),
    )


def test_fresh_draws_pass_and_the_report_is_canonical_and_valid(cohorts, tmp_path):
    schema, train, holdout, synth = cohorts
    report = run_audit(
        AuditInputs(train, holdout, synth, schema),
        parse_policy(policy_doc()),
        out_dir=tmp_path / "audit",
        progress=False,
    )
    assert report.verdict == "PASS", [c.reason for c in report.checks]
    assert [c.verdict for c in report.checks] == ["PASS"] * 6
    raw = (tmp_path / "audit" / REPORT_JSON).read_bytes()
    doc = json.loads(raw)
    assert canonical.canonical_form_of(raw, forms=(canonical.JCS,)) == canonical.JCS
    jsonschema.Draft202012Validator(load_json_schema("audit-report.schema.json")).validate(doc)
    assert doc["verdict"] == "PASS" and doc["statement"] == STATEMENT and doc["seed"] == 7
    assert doc["summary"] == {"checks": 6, "passed": 6, "failed": 0, "not_run": 0}
    assert doc["coverage"]["privacy"] == {"checks": 1, "passed": 1, "failed": 0, "not_run": 0}
    assert doc["headline"] == "PASS: 6 of 6 checks ran and passed."
    inputs = doc["provenance"]["inputs"]
    assert inputs["train"]["content_sha256"] == train.content_hash()
    assert inputs["synthetic"]["patients"] == 200 and doc["provenance"]["model"] is None
    assert [r["name"] for r in doc["results"]] == [
        "exact_copies",
        "fidelity",
        "timeseries",
        "utility",
        "subgroups",
    ]
    assert doc["policy"] == policy_doc()
    assert report.results[1].parameters["bins"] == 5


def test_no_real_patient_appears_in_the_report(cohorts, tmp_path):
    schema, train, holdout, synth = cohorts
    run_audit(
        AuditInputs(train, holdout, synth, schema),
        parse_policy(policy_doc()),
        out_dir=tmp_path / "a",
        progress=False,
    )
    html = (tmp_path / "a" / REPORT_HTML).read_text()
    text = (tmp_path / "a" / REPORT_JSON).read_text() + html
    assert "REAL-" not in text and "SYN-" not in text  # no id, real or synthetic, is shown
    assert "Synthetic patient 2</h3>" in html and "Synthetic patient 3</h3>" not in html


def test_gallery_is_drawn_by_position_when_synthetic_ids_equal_real_ids(cohorts, tmp_path):
    schema, train, holdout, _ = cohorts
    same_ids = random_cohort(schema, 200, seed=13, prefix="REAL-T")  # a generator's own ids
    assert same_ids.patient_ids == train.patient_ids
    run_audit(
        AuditInputs(train, holdout, same_ids, schema),
        parse_policy(policy_doc()),
        out_dir=tmp_path / "a",
        progress=False,
    )
    doc = json.loads((tmp_path / "a" / REPORT_JSON).read_text())
    gallery = next(r for r in doc["results"] if r["name"] == "timeseries")["details"]["gallery"]
    assert len(gallery["patients"]) == 2 and gallery["note"] == ""
    html = (tmp_path / "a" / REPORT_HTML).read_text()
    assert "Synthetic patient 2</h3>" in html and "REAL-" not in html
    run_audit(
        AuditInputs(train, holdout, train, schema),  # a copy: no timeline may be shown
        parse_policy(policy_doc()),
        out_dir=tmp_path / "b",
        progress=False,
    )
    html = (tmp_path / "b" / REPORT_HTML).read_text()
    assert "Synthetic patient 1</h3>" not in html
    assert "are exact copies of real records (never shown)" in html


def test_html_puts_the_verdict_first_and_is_self_contained(cohorts, tmp_path):
    schema, train, holdout, synth = cohorts
    run_audit(
        AuditInputs(train, holdout, synth, schema),
        parse_policy(policy_doc()),
        out_dir=tmp_path / "a",
        progress=False,
    )
    html = (tmp_path / "a" / REPORT_HTML).read_text()
    body = html[html.index("<body>") :]
    assert body.index("Audit verdict: PASS") < body.index("not covered by")
    assert body.index("not covered by") < body.index("<h2>Checks</h2>")
    assert html.count("<svg") >= 8 and "Face validation" in html
    for external in ("<script", "src=", "<link", "@import", "url("):
        assert external not in html, external


def test_a_distorted_synthetic_cohort_fails(cohorts, tmp_path):
    schema, train, holdout, _ = cohorts
    men_only = make_cohort(
        schema,
        [(f"SYN-{i}", "male", 85) for i in range(60)],
        [(f"SYN-{i}", 0.0, "glucose", 500) for i in range(60)],
    )
    report = run_audit(
        AuditInputs(train, holdout, men_only, schema),
        parse_policy(policy_doc()),
        out_dir=tmp_path / "a",
        progress=False,
    )
    verdicts = {c.name: c.verdict for c in report.checks}
    assert report.verdict == "FAIL"
    assert {verdicts[n] for n in ("shares", "values", "visits", "groups")} == {"FAIL"}
    assert verdicts["tstr"] == "NOT RUN"  # no positive synthetic patient to learn from
    doc = json.loads((tmp_path / "a" / REPORT_JSON).read_text())
    validate_report(doc)
    assert doc["summary"]["failed"] == 4 and doc["verdict"] == "FAIL"


def without_privacy(**overrides) -> dict:
    """The unit policy with its privacy evaluator and check taken out."""
    doc = policy_doc(**overrides)
    doc["evaluators"].pop("exact_copies", None)
    doc["checks"] = [c for c in doc["checks"] if c["evaluator"] != "exact_copies"]
    return doc


def test_degenerate_inputs_give_not_run_never_a_crash(tiny_schema, tmp_path):
    one = make_cohort(tiny_schema, [("x", "male", 40)])
    empty = make_cohort(tiny_schema, [])
    report = run_audit(
        AuditInputs(one, empty, one, tiny_schema),
        parse_policy(without_privacy()),
        out_dir=tmp_path / "a",
        progress=False,
    )
    assert {r.status for r in report.results} == {"not_run"}
    assert all(c.verdict == "NOT RUN" and c.reason for c in report.checks)
    assert report.verdict == "INCOMPLETE"  # nothing failed, but nothing about privacy ran
    assert report.headline.startswith(
        "INCOMPLETE: privacy was NOT assessed (the policy runs no privacy check). This is not "
        "a PASS"
    )
    assert "5 checks did NOT RUN (4 fidelity, 1 utility): shares;" in report.headline
    validate_report(json.loads((tmp_path / "a" / REPORT_JSON).read_text()))
    html = (tmp_path / "a" / REPORT_HTML).read_text()
    assert "Audit verdict: INCOMPLETE" in html and "Audit verdict: PASS" not in html
    assert "5 checks did NOT RUN</strong>" in html
    assert "No timeline can be shown: the time-series evaluator did not run" in html
    required = without_privacy()
    required["checks"][0]["required"] = True
    strict = run_audit(
        AuditInputs(one, empty, one, tiny_schema),
        parse_policy(required),
        out_dir=tmp_path / "b",
        progress=False,
    )
    assert strict.verdict == "FAIL"
    assert strict.checks[0].reason.startswith(
        "required check not run: evaluator 'fidelity' did not run: needs at least 2 patients"
    )


def test_privacy_checks_that_did_not_run_are_in_the_banner(cohorts, tmp_path):
    schema, train, holdout, synth = cohorts
    doc = policy_doc()
    doc["evaluators"]["exact_copies"] = {"enabled": False}
    report = run_audit(
        AuditInputs(train, holdout, synth, schema),
        parse_policy(doc),
        out_dir=tmp_path / "a",
        progress=False,
    )
    assert report.verdict == "INCOMPLETE"
    assert "none of its 1 privacy checks could run" in report.headline
    html = (tmp_path / "a" / REPORT_HTML).read_text()
    banner = html[html.index("<header") : html.index("</header>")]
    assert "INCOMPLETE" in banner
    assert "copies &mdash; evaluator &#39;exact_copies&#39; is not enabled" in banner


def test_a_missing_attack_module_is_not_run_with_its_reason(cohorts, monkeypatch, tmp_path):
    from medsynth.audit import registry

    monkeypatch.setitem(registry.REGISTRY, "ghost", "medsynth.audit.no_such_attack:Ghost")
    schema, train, holdout, synth = cohorts
    doc = policy_doc()
    doc["evaluators"]["ghost"] = {"params": {"trials": 3}}
    doc["checks"].append({**COPIES, "name": "ghost", "evaluator": "ghost", "metric": "auc"})
    report = run_audit(
        AuditInputs(train, holdout, synth, schema),
        parse_policy(doc),
        out_dir=tmp_path / "a",
        progress=False,
    )
    ghost = next(c for c in report.checks if c.name == "ghost")
    assert ghost.verdict == "NOT RUN"
    assert "evaluator 'ghost' is not available in this installation" in ghost.reason
    assert report.verdict == "PASS" and "1 check did NOT RUN (1 privacy): ghost" in report.headline
    doc = json.loads((tmp_path / "a" / REPORT_JSON).read_text())
    assert next(c for c in doc["checks"] if c["name"] == "ghost")["kind"] == "privacy"


def _degenerate(case: str, schema, train, holdout):
    if case == "tiny":
        return [random_cohort(schema, 3, seed=s, prefix=f"T{s}-") for s in (1, 2, 3)]
    if case == "constant":
        rows = [(f"C{i}", "female", 50) for i in range(40)]
        events = [(f"C{i}", float(t), "glucose", 100.0) for i in range(40) for t in (0, 30)]
        constant = make_cohort(schema, rows, events)
        return constant, constant, constant
    if case == "no_events":
        rows = [(f"N{i}", "male" if i % 2 else "female", 20 + i) for i in range(50)]
        return train, holdout, make_cohort(schema, rows)
    return train, holdout, holdout  # the synthetic data is the holdout itself


@pytest.mark.parametrize("case", ["tiny", "constant", "no_events", "synthetic_is_holdout"])
def test_degenerate_cohorts_give_a_valid_report(case, cohorts, tmp_path):
    schema, train, holdout, _ = cohorts
    t, h, s = _degenerate(case, schema, train, holdout)
    report = run_audit(
        AuditInputs(t, h, s, schema),
        parse_policy(policy_doc()),
        out_dir=tmp_path / "a",
        progress=False,
    )
    doc = json.loads((tmp_path / "a" / REPORT_JSON).read_text())
    validate_report(doc)
    assert all(c.reason for c in report.checks)
    verdicts = {c.name: c.verdict for c in report.checks}
    if case == "no_events":
        assert verdicts["visits"] == "NOT RUN"
        assert "synthetic has 50 patients and 0 events" in report.checks[3].reason
    if case == "constant":
        assert verdicts["tstr"] == "NOT RUN" and "0 positive" in report.checks[4].reason
    if case == "synthetic_is_holdout":  # holdout patients are no copies of training patients
        assert verdicts["copies"] == "PASS"
    assert (tmp_path / "a" / REPORT_HTML).read_text().count("Audit verdict") == 1


def test_bad_policy_parameters_are_refused_before_any_work(cohorts, tmp_path):
    schema, train, holdout, synth = cohorts
    doc = policy_doc()
    doc["evaluators"]["fidelity"]["params"]["binz"] = 3
    doc["evaluators"]["utility"]["params"]["target"] = {"condition": "999"}
    with pytest.raises(SchemaError) as err:
        run_audit(
            AuditInputs(train, holdout, synth, schema),
            parse_policy(doc),
            out_dir=tmp_path / "a",
            progress=False,
        )
    text = str(err.value)
    assert "$.evaluators.fidelity.params.binz: unknown parameter; 'fidelity' takes: bins" in text
    assert "$.evaluators.utility.params.target" in text and "'999' is not in schema" in text
    assert not (tmp_path / "a").exists()


def test_existing_output_and_other_schema_are_refused(cohorts, general_schema, tmp_path):
    schema, train, holdout, synth = cohorts
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not empty"):
        run_audit(
            AuditInputs(train, holdout, synth, schema),
            parse_policy(policy_doc()),
            out_dir=tmp_path / "a",
            progress=False,
        )
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["keep.txt"]
    with pytest.raises(SchemaError, match="audit inputs: 3 problems") as err:
        run_audit(
            AuditInputs(train, holdout, synth, general_schema),
            parse_policy(policy_doc()),
            out_dir=tmp_path / "b",
            progress=False,
        )
    assert "synthetic: built with dataset schema 'tiny', not the audit's 'general-adult'" in str(
        err.value
    )


def test_model_artifact_and_ledger_events_go_into_the_provenance(cohorts, tmp_path):
    schema, train, holdout, synth = cohorts
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.pt").write_bytes(b"\x00\x01")
    (model / "config.json").write_bytes(b"{}")
    digest = model_sha256(model)
    from medsynth.privacy.accounting import DpSgdEvent, PrivacyRecord, compute_epsilon

    event = DpSgdEvent(sample_rate=0.1, noise_multiplier=1.0, steps=30)
    epsilon = compute_epsilon(event, delta=1e-5, accountant="rdp")
    dp = PrivacyRecord(
        accountant="rdp",
        sample_rate=0.1,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        steps=30,
        delta=1e-5,
        epsilon=epsilon,
        opacus_version="1.6.0",
    )
    record = {**dp.to_dict(), "releasable": True, "format": PRIVACY_FORMAT, "model_sha256": digest}
    (model / "privacy.json").write_bytes(canonical.canonical_json(record))
    events = [{"kind": "charge", "epsilon": 3.5}]
    doc = policy_doc(evaluators={"fidelity": {}}, checks=[])
    run_audit(
        AuditInputs(train, holdout, synth, schema, model_dir=model),
        parse_policy(doc),
        out_dir=tmp_path / "a",
        progress=False,
        ledger_events=events,
    )
    prov = json.loads((tmp_path / "a" / REPORT_JSON).read_text())["provenance"]
    assert prov["model"]["privacy_record"] == record and prov["ledger_events"] == events
    assert prov["model"]["sha256"] == digest
    assert prov["model"]["files"] == {
        "config.json": hashlib.sha256(b"{}").hexdigest(),
        "privacy.json": hashlib.sha256((model / "privacy.json").read_bytes()).hexdigest(),
        "weights.pt": hashlib.sha256(b"\x00\x01").hexdigest(),
    }
    html = (tmp_path / "a" / REPORT_HTML).read_text()
    from medsynth.report.html import fmt

    assert f"&epsilon; = {fmt(epsilon)}</strong>" in html


def test_signed_report_verifies(cohorts, tmp_path):
    signing = pytest.importorskip("medsynth.report.signing")
    schema, train, holdout, synth = cohorts
    signing.generate_keypair(tmp_path / "keys")
    private = next(p for p in (tmp_path / "keys").iterdir() if "pub" not in p.name)
    report = run_audit(
        AuditInputs(train, holdout, synth, schema),
        parse_policy(policy_doc(evaluators={"fidelity": {}}, checks=[])),
        out_dir=tmp_path / "a",
        key_path=private,
        progress=False,
    )
    assert report.signature is not None and report.signature.is_file()
    signing.verify_report(tmp_path / "a")
    html = tmp_path / "a" / REPORT_HTML
    html.write_bytes(html.read_bytes().replace(b"Audit verdict", b"Audit verdicT"))
    with pytest.raises(Exception, match="report.html"):
        signing.verify_report(tmp_path / "a")


@pytest.mark.slow  # every shipped evaluator on general-adult cohorts, twice
def test_shipped_default_policy_runs_on_fresh_draws(general_schema, tmp_path):
    pytest.importorskip("medsynth.audit.mia")
    pytest.importorskip("medsynth.audit.reidentification")
    pytest.importorskip("medsynth.audit.attribute")
    from medsynth.simulate import simulate

    source = simulate(general_schema, 360, random_state=1)
    train, holdout = source.split(0.5, random_state=0)
    fresh = simulate(general_schema, 180, random_state=2)
    copy_of_train = train
    policy = load_policy("default")
    good = run_audit(
        AuditInputs(train, holdout, fresh, general_schema),
        policy,
        out_dir=tmp_path / "fresh",
        progress=False,
    )
    bad = run_audit(
        AuditInputs(train, holdout, copy_of_train, general_schema),
        policy,
        out_dir=tmp_path / "copy",
        progress=False,
    )
    assert bad.verdict == "FAIL"
    failed_privacy = [
        c
        for c in bad.checks
        if c.verdict == "FAIL"
        and c.evaluator not in ("fidelity", "timeseries", "utility", "subgroups")
    ]
    assert failed_privacy
    assert good.verdict == "PASS", [c.reason for c in good.checks if c.verdict == "FAIL"]


def test_text_from_inputs_is_escaped_in_the_page(cohorts, tmp_path):
    from medsynth.report import svg
    from medsynth.report.html import render_html

    schema, train, holdout, synth = cohorts
    doc = policy_doc(
        evaluators={"fidelity": {}},
        checks=[
            {
                "name": "<script>alert(1)</script>",
                "evaluator": "fidelity",
                "metric": "attribute_tvd_mean",
                "op": "<=",
                "threshold": 1,
            }
        ],
    )
    run_audit(
        AuditInputs(train, holdout, synth, schema),
        parse_policy(doc),
        out_dir=tmp_path / "a",
        progress=False,
    )
    html = render_html(json.loads((tmp_path / "a" / REPORT_JSON).read_text()))
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    chart = svg.bars(["<b>"], {"real & co": [1]}, "a <title>")
    assert "<b>" not in chart and "&lt;b&gt;" in chart and "real &amp; co" in chart
    assert svg.nice_ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]


def shipped_fidelity_policy(name: str):
    """A shipped policy restricted to the fidelity, utility and subgroup evaluators."""
    doc = load_policy(name).to_dict()
    mine = ("fidelity", "timeseries", "utility", "subgroups")
    doc["evaluators"] = {k: v for k, v in doc["evaluators"].items() if k in mine}
    doc["checks"] = [c for c in doc["checks"] if c["evaluator"] in mine]
    return parse_policy(doc)


@pytest.mark.slow  # the fidelity evaluators on general-adult cohorts, twice per policy
@pytest.mark.parametrize("name", ["default", "strict"])
def test_shipped_thresholds_pass_fresh_draws_and_fail_a_lost_group(name, general_schema):
    from medsynth.audit.policy import evaluate_policy, overall_verdict
    from medsynth.audit.run import run_evaluators
    from medsynth.simulate import simulate

    policy = shipped_fidelity_policy(name)
    train, holdout = simulate(general_schema, 400, random_state=10).split(0.5, random_state=0)
    fresh = simulate(general_schema, 200, random_state=100)
    men = fresh.subset(fresh.patients.loc[fresh.patients["sex"] == "male", "patient_id"])
    good = evaluate_policy(
        policy, run_evaluators(AuditInputs(train, holdout, fresh, general_schema), policy)
    )
    assert overall_verdict(good) == "PASS", [c.reason for c in good if c.verdict != "PASS"]
    bad = {
        c.name: c
        for c in evaluate_policy(
            policy, run_evaluators(AuditInputs(train, holdout, men, general_schema), policy)
        )
    }
    assert bad["fidelity: attribute shares"].verdict == "FAIL"
    assert bad["subgroups: none under-represented"].verdict == "FAIL"


def test_demo_step_audit(cohorts, tmp_path):
    from medsynth.errors import DataError
    from medsynth.pipeline.demo import DemoContext, step_audit

    schema, train, holdout, synth = cohorts
    lines: list[str] = []
    ctx = DemoContext(tmp_path, schema, 350, 0, False, lines.append, artifacts={"source": train})
    step_audit(ctx)
    assert ctx.summary == ["audit skipped: no synthetic cohort was generated"]
    ctx.artifacts["synthetic"] = synth
    with pytest.raises(DataError, match="split the source before the train step"):
        step_audit(ctx)  # never a holdout carved out of patients the model saw
    ctx.artifacts.update(train=train, holdout=holdout)
    step_audit(ctx)
    report = ctx.artifacts["audit"]
    assert report.signature is not None and report.report_html.is_file()
    assert ctx.summary[-1].startswith(f"audit verdict {report.verdict} (")
    assert report.report_html in ctx.paths.values()
    key = tmp_path / "keys" / "medsynth-signing.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert lines[-1] == (
        f"      open {report.report_html} in a browser; check it with: medsynth report verify "
        f"{report.out_dir} --key {tmp_path / 'keys' / 'medsynth-signing.pub'}"
    )
    from medsynth.report.signing import verify_report

    assert verify_report(report.out_dir, public_key_path=key.with_suffix(".pub")).trusted_key
