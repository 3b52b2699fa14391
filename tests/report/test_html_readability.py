"""The report page for people: figures to 3 significant digits, reasons in plain words, a
subgroup table that fits a narrow screen (report.json keeps every figure exact)."""

from __future__ import annotations

import json
import re

import pytest

from medsynth.audit.base import AuditInputs
from medsynth.audit.policy import load_policy, parse_policy
from medsynth.audit.run import REPORT_HTML, REPORT_JSON
from medsynth.pipeline.audit import run_audit
from medsynth.report.html import fmt, number
from medsynth.report.words import plain_reason


def test_numbers_to_three_significant_digits():
    assert number(-0.005846) == "-0.00585"
    assert number(3.471e-06) == "3.47 \u00d7 10\u207b\u2076"
    assert number(0.0961234) == "0.0961" and number(0.5) == "0.5" and number(0.0) == "0"
    assert number(12345.6) == "12,300" and number(9.996) == "10" and number(0.09996) == "0.1"
    assert (
        number(2.5e-5) == "2.5 \u00d7 10\u207b\u2075"
        and number(1234567.0) == "1.23 \u00d7 10\u2076"
    )
    assert number(float("nan")) == "n/a"
    assert fmt(20000) == "20,000" and fmt(None) == "n/a" and fmt(True) == "yes"
    est = {"value": 0.0712, "ci_low": 0.04912, "ci_high": 0.0961234, "confidence": 0.9}
    assert fmt(est) == "0.0712 [0.0491, 0.0961] (90% CI)"


def check(**kw) -> dict:
    base = {
        "name": "c",
        "evaluator": "record_matches",
        "metric": "distinctive_copies",
        "statistic": "ci_low",
        "op": "<=",
        "threshold": 0.0,
        "value": 1.0,
        "verdict": "FAIL",
        "reason": "record_matches.distinctive_copies (ci_low) = 1, must be <= 0",
        "required": True,
        "minus_baseline": False,
        "kind": "privacy",
    }
    return {**base, **kw}


def document(value=5.0, low=1.0, high=5.0, confidence=0.9) -> dict:
    copies = {"value": value, "ci_low": low, "ci_high": high, "confidence": confidence}
    return {"results": [{"name": "record_matches", "metrics": {"distinctive_copies": copies}}]}


def test_plain_reasons():
    assert plain_reason(check(), document()) == (
        "exact copies of distinctive training records: 5 (at least 1 with 95 % confidence), "
        "allowed at most 0"
    )
    auc = check(evaluator="mia_dcr", metric="auc", statistic="value", value=0.5456, op="<=")
    assert plain_reason({**auc, "threshold": 0.6}, document()) == (
        "membership AUC (0.5 is a coin toss): 0.546, allowed at most 0.6"
    )
    tvd = check(
        evaluator="fidelity",
        metric="attribute_tvd_mean",
        statistic="value",
        minus_baseline=True,
        value=-0.005846,
        threshold=0.05,
        kind="fidelity",
    )
    assert plain_reason(tvd, document()) == (
        "mean distance (TVD) of the attributes' shares, beyond two real samples: -0.00585, "
        "allowed at most 0.05"
    )
    gone = check(verdict="NOT RUN", value=None, reason="evaluator 'x' did not run: no events")
    assert plain_reason(gone, document()) == "evaluator 'x' did not run: no events"
    tstr = check(evaluator="utility", metric="auc_synthetic", statistic="ci_low", op=">=")
    assert plain_reason({**tstr, "threshold": 0.7}, document()).endswith("must be at least 0.7")


@pytest.fixture(scope="module")
def leak_report(general_schema, tmp_path_factory):
    """A report of 500 simulated patients with 5 of them copied into the synthetic data,
    judged on the copy check and the subgroups."""
    from tests.audit.leak_cohorts import draws, with_copies

    train, holdout, fresh = draws(general_schema, 500, seed=0)
    doc = load_policy("default").to_dict()
    keep = ("record_matches", "subgroups", "mia_dcr")
    doc["evaluators"] = {k: v for k, v in doc["evaluators"].items() if k in keep}
    doc["checks"] = [c for c in doc["checks"] if c["evaluator"] in keep]
    out = tmp_path_factory.mktemp("report") / "audit"
    leaked = with_copies(fresh, train, 5, seed=0)
    run_audit(
        AuditInputs(train, holdout, leaked, general_schema),
        parse_policy(doc),
        out_dir=out,
        progress=False,
    )
    return json.loads((out / REPORT_JSON).read_text()), (out / REPORT_HTML).read_text()


def visible_text(html: str) -> str:
    """The page's text as read, without charts, code and the JSON blocks of the detail."""
    for tag in ("style", "svg", "pre", "code"):
        html = re.sub(rf"<{tag}\b.*?</{tag}>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_figures_on_the_page_have_three_significant_digits(leak_report):
    doc, html = leak_report
    text = visible_text(html)
    decimals = re.findall(r"(?<![\d.])-?\d[\d,]*\.\d+(?![\d.])", text)
    assert decimals  # the page shows figures
    for figure in decimals:
        digits = figure.replace("-", "").replace(",", "").replace(".", "").lstrip("0")
        assert len(digits) <= 3, figure
    assert not re.search(r"\de-\d", text)  # no 1e-06 style
    exact = next(r for r in doc["results"] if r["name"] == "record_matches")
    assert len(repr(exact["metrics"]["risk"]["ci_low"])) > 8  # report.json stays exact


def test_the_reason_column_is_in_words(leak_report):
    doc, html = leak_report
    copies = next(c for c in doc["checks"] if c["metric"] == "distinctive_copies")
    assert copies["verdict"] == "FAIL"
    assert copies["reason"] == "record_matches.distinctive_copies (ci_low) = 1, must be <= 0"
    reasons = re.findall(r'<td class="reason" data-label="Reason">(.*?)</td>', html, re.S)
    assert len(reasons) == len(doc["checks"])
    assert (
        "exact copies of distinctive training records: 5 (at least 1 with 95 % confidence), "
        "allowed at most 0" in reasons
    )
    for reason in reasons:
        assert "ci_low" not in reason and "ci_high" not in reason and "<=" not in reason
    banner = html[html.index("<header") : html.index("</header>")]
    assert "exact copies of distinctive training records: 5 (at least 1" in banner


def test_wide_tables_fit_a_narrow_screen(leak_report):
    _, html = leak_report
    style = html[html.index("<style>") : html.index("</style>")]
    narrow = style[style.index("@media (max-width: 900px)") :]
    assert ".figure { display: none; }" in narrow  # the code form of the check goes
    assert "table.stack tr { display: grid;" in narrow and "table.stack thead" in narrow
    table = re.search(r'<table class="groups stack">(.*?)</table>', html, re.S)
    assert table, "the subgroup table stacks on narrow screens"
    rows = re.findall(r"<tr><td class=\"group\">.*?</tr>", table.group(1), re.S)
    assert len(rows) >= 5
    for row in rows:  # every cell but the group's name carries its column's label
        cells = re.findall(r"<td\b[^>]*>", row)
        assert all("data-label=" in c for c in cells[1:]) and 'class="group"' in cells[0]
