"""The audit on every valid schema shape: an attack with nothing to try on a schema is NOT RUN
with its reason (even when the policy requires it), never an error, and the verdict says what
that means. Small hand-built schemas: labs only (no patient attribute), attributes only (no
channel), no conditions, and attributes alone."""

from __future__ import annotations

import json

from medsynth.audit.base import AuditInputs
from medsynth.audit.policy import load_policy
from medsynth.audit.reidentification import Linkability
from medsynth.audit.run import REPORT_HTML, REPORT_JSON, validate_report
from medsynth.pipeline.audit import run_audit
from medsynth.schema import DatasetSchema, parse_schema
from medsynth.simulate import simulate
from tests.conftest import minimal_doc

PRIVACY = (
    "mia_dcr",
    "mia_density",
    "attribute_disclosure",
    "singling_out",
    "linkability",
    "record_matches",
    "dcr_share",
)


def shaped(name: str) -> DatasetSchema:
    doc = minimal_doc()
    doc["name"] = name
    if name in ("labs-only",):
        doc["attributes"] = []
    if name in ("attributes-only", "attributes-alone"):
        doc["channels"] = []
    if name in ("no-conditions", "attributes-alone"):
        doc["conditions"]["codes"] = []
    return parse_schema(doc)


def inputs(schema: DatasetSchema, n: int = 200) -> AuditInputs:
    train, holdout, synthetic = (simulate(schema, n, random_state=s) for s in (1, 2, 3))
    return AuditInputs(train, holdout, synthetic, schema)


def audit(schema: DatasetSchema, tmp_path):
    report = run_audit(
        inputs(schema), load_policy("default"), out_dir=tmp_path / "a", progress=False
    )
    doc = json.loads((tmp_path / "a" / REPORT_JSON).read_text())
    validate_report(doc)
    checks = {c.name: c for c in report.checks}
    return report, doc, checks


def privacy_checks(checks):
    return [c for c in checks.values() if c.evaluator in PRIVACY]


def test_labs_only_schema(tmp_path):
    report, doc, checks = audit(shaped("labs-only"), tmp_path)
    disclosure = checks["privacy: attribute disclosure"]
    linkage = checks["privacy: linkability"]
    for c in (disclosure, linkage):
        assert c.required and c.verdict == "NOT RUN" and not c.applies  # required, no FAIL
    assert "has no patient attribute an attacker could know" in disclosure.reason
    assert "the first view (the static attributes) is empty" in linkage.reason
    assert "'view_a' such as [\"conditions\"]" in linkage.reason
    ran = [c for c in privacy_checks(checks) if c.applies]
    assert ran and all(c.verdict == "PASS" for c in ran), [c.reason for c in ran]
    assert report.verdict == "PASS"
    assert "the privacy verdict rests on the attacks that ran" in report.headline
    assert (
        "attribute_disclosure, linkability do not apply to this dataset schema as the policy "
        "configures them" in report.headline
    )
    assert [c["applies"] for c in doc["checks"] if c["name"] == linkage.name] == [False]
    html = (tmp_path / "a" / REPORT_HTML).read_text()
    assert "do not apply to this dataset schema" in html


def test_linkability_joins_other_views_when_asked():
    schema = shaped("labs-only")
    result = Linkability(inputs(schema), view_a=["conditions"]).evaluate().result()
    assert result.ok and result.parameters["view_b"] == ["glucose", "hba1c"]


def test_attributes_only_schema(tmp_path):
    report, _, checks = audit(shaped("attributes-only"), tmp_path)
    assert all(c.verdict == "PASS" for c in privacy_checks(checks)), report.headline
    linkage = next(r for r in report.results if r.name == "linkability")
    assert linkage.parameters["view_b"] == ["conditions"]
    assert checks["time series: events per patient"].verdict == "NOT RUN"
    assert report.verdict == "PASS"


def test_schema_without_conditions(tmp_path):
    report, _, checks = audit(shaped("no-conditions"), tmp_path)
    assert all(c.verdict == "PASS" for c in privacy_checks(checks)), report.headline
    linkage = next(r for r in report.results if r.name == "linkability")
    assert linkage.parameters["view_b"] == ["glucose", "hba1c"]  # no empty diagnoses block
    disclosure = next(r for r in report.results if r.name == "attribute_disclosure")
    assert disclosure.parameters["secret"].startswith("band (below / within / above")
    assert checks["fidelity: condition prevalence"].verdict == "NOT RUN"


def test_attributes_alone(tmp_path):
    """No channel and no condition: nothing to link the attributes to, no secret to infer."""
    report, _, checks = audit(shaped("attributes-alone"), tmp_path)
    assert not checks["privacy: linkability"].applies
    assert "has nothing but patient attributes" in checks["privacy: linkability"].reason
    assert "has none of the secrets asked for" in checks["privacy: attribute disclosure"].reason
    assert checks["privacy: exact copies of distinctive training records"].verdict != "FAIL"
    assert report.verdict in ("PASS", "FAIL")  # judged on the attacks that ran


def test_a_view_that_leaves_nothing_to_link_is_not_run():
    view_a = ["sex", "age", "conditions", "glucose", "hba1c"]
    result = Linkability(inputs(parse_schema(minimal_doc()), 50), view_a=view_a)
    result = result.evaluate().result()
    assert result.status == "not_run" and result.details == {"applies_to_schema": False}
    assert "takes every part of a record" in result.reason
    empty = Linkability(inputs(shaped("no-conditions"), 50), view_a=["conditions"])
    assert "has no value in dataset schema" in empty.evaluate().result().reason
