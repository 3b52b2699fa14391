"""Audit policies: validation of the files and the verdict of each check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from medsynth.audit.base import AuditResult, Estimate
from medsynth.audit.policy import (
    FAIL,
    NOT_RUN,
    PASS,
    CheckSpec,
    evaluate_check,
    evaluate_policy,
    load_policy,
    overall_verdict,
    parse_policy,
    read_figure,
    shipped_policies,
)
from medsynth.audit.registry import names as registry_names
from medsynth.errors import SchemaError

KNOWN = ("mia_dcr", "fidelity")


def doc() -> dict:
    return {
        "format": "medsynth.audit-policy/1",
        "name": "unit",
        "seed": 3,
        "evaluators": {"mia_dcr": {"params": {"trials": 5}}, "fidelity": {"enabled": False}},
        "checks": [
            {
                "name": "mia",
                "evaluator": "mia_dcr",
                "metric": "auc",
                "op": "<=",
                "threshold": 0.6,
                "statistic": "ci_low",
                "required": True,
            },
            {
                "name": "tvd",
                "evaluator": "fidelity",
                "metric": "attribute_tvd_mean",
                "op": "<=",
                "threshold": 0.1,
            },
        ],
    }


def result(name="mia_dcr", metrics=None, baseline=None, status="ok", kind="privacy"):
    return AuditResult(
        name=name,
        kind=kind,
        status=status,
        reason="" if status == "ok" else "too few patients",
        metrics=metrics or {},
        baseline=baseline or {},
    )


def spec(**kw) -> CheckSpec:
    base = {"name": "c", "evaluator": "mia_dcr", "metric": "auc", "op": "<=", "threshold": 0.6}
    return CheckSpec(**{**base, **kw})


# -- files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["default", "strict"])
def test_shipped_policies_validate_and_use_registered_evaluators(name):
    assert {"default", "strict"} <= set(shipped_policies())
    policy = load_policy(name)
    assert policy.name == name and policy.checks
    assert {e.name for e in policy.evaluators} <= set(registry_names())
    raw = json.loads(shipped_policies()[name].read_text())
    assert policy.to_dict() == raw


def test_strict_is_stricter_than_default():
    """Every default check is in strict, reading the same figure at an end at least as
    pessimistic (for an upper limit: ci_low, then the value, then ci_high) against a threshold
    at least as tight."""
    default = {c.name: c for c in load_policy("default").checks}
    strict = {c.name: c for c in load_policy("strict").checks}
    assert default.keys() <= strict.keys()
    order = {"ci_low": 0, "value": 1, "ci_high": 2}
    for name, c in default.items():
        s = strict[name]
        assert (s.evaluator, s.metric, s.op, s.minus_baseline) == (
            c.evaluator,
            c.metric,
            c.op,
            c.minus_baseline,
        )
        upper = c.op in ("<", "<=")
        assert (s.threshold <= c.threshold) if upper else (s.threshold >= c.threshold)
        sign = 1 if upper else -1
        assert sign * order[s.statistic] >= sign * order[c.statistic], name
        assert s.required or not c.required


def test_parse_policy_builds_specs():
    policy = parse_policy(doc(), known_evaluators=KNOWN)
    assert policy.seed == 3 and [e.name for e in policy.enabled] == ["mia_dcr"]
    assert policy.evaluators[0].params == {"trials": 5}
    assert policy.checks[0] == CheckSpec(
        "mia", "mia_dcr", "auc", "<=", 0.6, statistic="ci_low", required=True
    )
    assert policy.checks[0].figure == "mia_dcr.auc (ci_low)"


def test_schema_problems_are_listed_with_their_paths():
    bad = doc()
    bad["checks"][0]["op"] = "=="
    bad["checks"][1]["threshold"] = "low"
    bad["seed"] = -1
    with pytest.raises(SchemaError) as err:
        parse_policy(bad, source="p.json", known_evaluators=KNOWN)
    text = str(err.value)
    assert text.startswith("p.json: 3 problems")
    assert "$.checks[0].op" in text and "$.checks[1].threshold" in text and "$.seed" in text


def test_semantic_problems_name_the_fix():
    bad = doc()
    bad["evaluators"]["nonsense"] = {}
    bad["checks"].append(
        {"name": "mia", "evaluator": "singling_out", "metric": "risk", "op": "<", "threshold": 0.1}
    )
    with pytest.raises(SchemaError) as err:
        parse_policy(bad, known_evaluators=KNOWN)
    text = str(err.value)
    assert "unknown evaluator 'nonsense'; valid: fidelity, mia_dcr" in text
    assert "$.checks[2].evaluator" in text and "add it there" in text
    assert "check name 'mia' is used more than once" in text


def test_load_policy_refuses_missing_file_and_bad_json(tmp_path: Path):
    with pytest.raises(SchemaError, match="shipped: default, strict"):
        load_policy(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_policy(broken)


# -- checks -------------------------------------------------------------------------------------
def test_read_figure():
    e = Estimate(0.7, 0.6, 0.8)
    assert [read_figure(e, s) for s in ("value", "ci_low", "ci_high")] == [0.7, 0.6, 0.8]
    assert read_figure(3, "value") == 3.0
    assert read_figure(math.nan, "value") is None
    assert read_figure(True, "value") is None and read_figure("x", "value") is None


def test_pass_fail_and_the_interval_end_read():
    r = result(metrics={"auc": Estimate(0.55, 0.50, 0.62)})
    assert evaluate_check(spec(), r).verdict == PASS
    fail = evaluate_check(spec(statistic="ci_high"), r)
    assert fail.verdict == FAIL and fail.value == 0.62
    assert fail.reason == "mia_dcr.auc (ci_high) = 0.62, must be <= 0.6"
    ok = evaluate_check(spec(op=">", threshold=0.5), r)
    assert ok.verdict == PASS and ok.reason == "mia_dcr.auc = 0.55 > 0.5"


def test_minus_baseline():
    r = result(metrics={"risk": Estimate(0.30, 0.25, 0.35)}, baseline={"risk": 0.22})
    c = evaluate_check(spec(metric="risk", threshold=0.1, minus_baseline=True), r)
    assert c.verdict == PASS and c.value == pytest.approx(0.08)
    no_base = evaluate_check(
        spec(metric="risk", minus_baseline=True), result(metrics={"risk": 0.3})
    )
    assert no_base.verdict == NOT_RUN and "no baseline" in no_base.reason


def test_not_run_reasons_and_required_checks():
    off = evaluate_check(spec(), None)
    assert off.verdict == NOT_RUN and "not enabled" in off.reason
    skipped = evaluate_check(spec(), result(status="not_run"))
    assert skipped.verdict == NOT_RUN and skipped.reason.endswith("did not run: too few patients")
    required = evaluate_check(spec(required=True), result(status="not_run"))
    assert required.verdict == FAIL and required.reason.startswith("required check not run")
    missing = evaluate_check(spec(metric="acu"), result(metrics={"auc": 0.5, "tpr": 0.1}))
    assert missing.verdict == NOT_RUN and missing.reason.endswith("its figures are: auc, tpr")
    empty = evaluate_check(spec(), result(metrics={"auc": None}))
    assert empty.verdict == NOT_RUN and "could not compute 'auc'" in empty.reason


def test_an_attack_that_does_not_apply_to_the_schema_is_not_run_even_when_required():
    from medsynth.audit.features import does_not_apply
    from medsynth.audit.policy import headline

    foreign = does_not_apply("linkability", "privacy", "schema 'x' has no patient attribute")
    c = evaluate_check(spec(evaluator="linkability", metric="risk", required=True), foreign)
    assert c.verdict == NOT_RUN and not c.applies and c.to_dict()["applies"] is False
    assert c.reason == "'linkability' does not apply: schema 'x' has no patient attribute"
    ran = evaluate_check(spec(), result(metrics={"auc": Estimate(0.5, 0.45, 0.55)}))
    kinds = {"mia_dcr": "privacy", "linkability": "privacy"}
    assert overall_verdict([ran, c], kinds=kinds) == PASS
    assert headline(PASS, [ran, c], kinds) == (
        "PASS: 1 of 2 checks ran and passed. 1 check did NOT RUN (1 privacy): c. A check that "
        "did not run is no evidence either way: the privacy verdict rests on the attacks that "
        "ran. linkability does not apply to this dataset schema as the policy configures it: "
        "the schema lacks what it attacks (the reasons say what is missing)."
    )
    assert overall_verdict([c], kinds=kinds) == "INCOMPLETE"  # no privacy check ran at all


def test_evaluate_policy_skips_disabled_evaluators_and_gives_the_verdict():
    policy = parse_policy(doc(), known_evaluators=KNOWN)
    fidelity = result("fidelity", {"attribute_tvd_mean": 0.5}, kind="fidelity")
    checks = evaluate_policy(policy, [result(metrics={"auc": Estimate(0.5, 0.45, 0.55)}), fidelity])
    assert [c.verdict for c in checks] == [PASS, NOT_RUN]
    assert overall_verdict(checks) == PASS
    assert overall_verdict([*checks, evaluate_check(spec(), None)]) == PASS


def test_copy_of_training_data_fails_and_fresh_draws_pass_the_default_privacy_checks():
    """With attack results shaped like a copy (AUC 1, every record matched) or like fresh
    draws (AUC 0.5, nothing matched), the default policy's privacy checks decide."""
    policy = load_policy("default")
    privacy = [
        c
        for c in policy.checks
        if c.evaluator not in ("fidelity", "timeseries", "utility", "subgroups")
    ]
    if not privacy:
        pytest.skip("the default policy has no privacy checks yet")
    by_eval: dict[str, list[CheckSpec]] = {}
    for c in privacy:
        by_eval.setdefault(c.evaluator, []).append(c)

    def results(leaky: bool) -> list[AuditResult]:
        out = []
        for name, specs in by_eval.items():
            metrics, baseline = {}, {}
            for c in specs:
                bad = c.threshold + 0.5 if c.op in ("<", "<=") else c.threshold - 0.5
                good = c.threshold - 0.05 if c.op in ("<", "<=") else c.threshold + 0.05
                v = bad if leaky else good
                metrics[c.metric] = Estimate(v, v, v)
                baseline[c.metric] = 0.0
            out.append(result(name, metrics, baseline))
        return out

    assert overall_verdict(evaluate_policy(policy, results(True))) == FAIL
    fresh = [c for c in evaluate_policy(policy, results(False)) if c.evaluator in by_eval]
    assert all(c.verdict == PASS for c in fresh)


# -- the shipped default against leaks built from the simulator --------------------------------
def privacy_only(name: str):
    from medsynth.audit.run import evaluator_kind

    doc = load_policy(name).to_dict()
    keep = {
        e for e in doc["evaluators"] if e != "mia_likelihood" and evaluator_kind(e) == "privacy"
    }
    doc["evaluators"] = {k: v for k, v in doc["evaluators"].items() if k in keep}
    doc["checks"] = [c for c in doc["checks"] if c["evaluator"] in keep]
    return parse_policy(doc)


@pytest.fixture(scope="module")
def draws_500(general_schema):
    from tests.audit.leak_cohorts import draws

    return draws(general_schema, 500, seed=0)


def judge(policy, train, holdout, synthetic, schema):
    from medsynth.audit.base import AuditInputs
    from medsynth.audit.run import run_evaluators

    results = run_evaluators(AuditInputs(train, holdout, synthetic, schema), policy)
    return {c.name: c for c in evaluate_policy(policy, results)}, {r.name: r for r in results}


COPIES = "privacy: exact copies of distinctive training records"


def test_one_percent_verbatim_copies_at_500_fail_the_default(draws_500, general_schema):
    from tests.audit.leak_cohorts import with_copies

    train, holdout, fresh = draws_500
    policy = privacy_only("default")
    leaked = with_copies(fresh, train, 5, seed=0)
    checks, results = judge(policy, train, holdout, leaked, general_schema)
    assert results["record_matches"].metrics["exact_matches"] == 5
    copies = checks[COPIES]
    assert copies.verdict == FAIL and copies.value == 1.0  # at least 1 copy beyond chance
    assert overall_verdict(list(checks.values())) == FAIL


def test_honest_fresh_draws_at_500_pass_every_privacy_check(draws_500, general_schema):
    train, holdout, fresh = draws_500
    for name in ("default", "strict"):
        checks, _ = judge(privacy_only(name), train, holdout, fresh, general_schema)
        failed = [c.reason for c in checks.values() if c.verdict != PASS]
        assert not failed, (name, failed)
