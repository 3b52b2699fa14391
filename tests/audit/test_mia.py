"""Membership inference attacks: they must find a copy of the training data and find nothing
in fresh patients from the same population; degenerate inputs give NOT RUN, never a crash."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsynth.audit.base import AuditInputs, Estimate
from medsynth.audit.features import patient_features
from medsynth.audit.mia import (
    DcrMembershipAttack,
    DensityRatioMembershipAttack,
    LikelihoodMembershipAttack,
)
from medsynth.audit.policy import load_policy, parse_policy
from medsynth.audit.registry import get_evaluator
from medsynth.errors import NotFittedError
from medsynth.pipeline.audit import run_audit
from tests.audit.attack_cohorts import (
    attack_schema,
    cohorts,
    constant,
    copy_inputs,
    first,
    fresh_inputs,
    without_events,
)

ATTACKS = (DcrMembershipAttack, DensityRatioMembershipAttack)
PRIVACY = (
    "mia_dcr",
    "mia_density",
    "mia_likelihood",
    "attribute_disclosure",
    "singling_out",
    "linkability",
    "record_matches",
    "dcr_share",
)


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_copy_of_the_training_data_is_found(attack):
    result = attack(copy_inputs()).evaluate().result()
    m = result.metrics
    assert result.ok and m["members"] == 150 and m["non_members"] == 150
    assert m["auc"].value > 0.95 and m["auc"].ci_low > 0.9
    assert m["tpr_at_fpr_10pct"].value > 0.9 and m["tpr_at_fpr_1pct"].value > 0.5
    assert m["epsilon_lower_bound"] > 1.5
    assert m["epsilon_lower_bound"] == m["epsilon_empirical"].ci_low <= m["epsilon_empirical"].value
    assert m["epsilon_accounted"] is None
    assert result.baseline["auc"] == 0.5
    assert m["tpr_excess_at_fpr_1pct"].ci_low > 0.5  # most members flagged beyond chance
    assert result.baseline["tpr_excess_at_fpr_1pct"] == 0.0


@pytest.mark.parametrize("attack", ATTACKS)
def test_fresh_draws_are_not_told_apart(attack):
    m = attack(fresh_inputs()).evaluate().result().metrics
    assert abs(m["auc"].value - 0.5) < 0.1
    assert m["auc"].ci_low <= 0.5 <= m["auc"].ci_high
    assert m["epsilon_lower_bound"] < 0.5
    assert m["tpr_at_fpr_10pct"].ci_low <= 0.1 <= m["tpr_at_fpr_10pct"].ci_high
    assert m["tpr_excess_at_fpr_1pct"].ci_low == 0.0


def test_time_series_count_as_part_of_the_record():
    """Same static attributes and diagnoses, different time series: only the series tell the
    copied patients apart from the others."""
    train, holdout, _ = cohorts()
    static_twins = train.patients.copy()  # holdout patients wearing the train attributes
    static_twins["patient_id"] = holdout.patient_ids
    from medsynth.cohort import Cohort

    cond = train.conditions.copy()
    mapping = dict(zip(train.patient_ids, holdout.patient_ids, strict=True))
    cond["patient_id"] = cond["patient_id"].map(mapping)
    twins = Cohort.conform(attack_schema(), static_twins, holdout.events, cond)[0]
    result = DcrMembershipAttack(AuditInputs(train, twins, train, attack_schema())).evaluate()
    assert result.result().metrics["auc"].value > 0.95


def test_accounted_epsilon_is_set_beside_the_empirical_one(tmp_path):
    (tmp_path / "privacy.json").write_text(json.dumps({"epsilon": 2.5, "delta": 1e-6}))
    result = DcrMembershipAttack(copy_inputs(model_dir=tmp_path)).evaluate().result()
    assert result.metrics["epsilon_accounted"] == 2.5
    assert result.parameters["delta"] == 1e-6
    assert result.metrics["epsilon_lower_bound"] > result.metrics["epsilon_accounted"]


def test_results_are_plain_aggregates_and_deterministic():
    a = DensityRatioMembershipAttack(copy_inputs(random_state=3)).evaluate().result().to_dict()
    b = DensityRatioMembershipAttack(copy_inputs(random_state=3)).evaluate().result().to_dict()
    assert a == b and a["parameters"]["seed"] == 3
    text = json.dumps(a)
    train, holdout, _ = cohorts()
    assert not any(pid in text for pid in train.patient_ids + holdout.patient_ids)
    assert len(a["details"]["roc"]["fpr"]) == 101
    hist = a["details"]["score_histogram"]
    assert sum(hist["members"]) == 150 and sum(hist["non_members"]) == 150


def test_result_before_evaluate_is_refused():
    with pytest.raises(NotFittedError, match="evaluate"):
        DcrMembershipAttack(copy_inputs()).result()


@pytest.mark.parametrize("attack", (*ATTACKS, LikelihoodMembershipAttack))
def test_degenerate_inputs_give_not_run_with_a_reason(attack, tmp_path):
    train, holdout, fresh = cohorts()
    schema = attack_schema()
    model = tmp_path if attack is LikelihoodMembershipAttack else None
    tiny = AuditInputs(first(train, 3), first(holdout, 3), first(fresh, 3), schema, model_dir=model)
    r = attack(tiny).evaluate().result()
    assert r.status == "not_run" and "too few patients (train has 3; holdout has 3)" in r.reason
    leaked = attack(AuditInputs(train, holdout, holdout, schema, model_dir=model))
    r = leaked.evaluate().result()
    assert r.status == "not_run" and "exactly the holdout patients" in r.reason
    empty = AuditInputs(train, holdout, first(fresh, 0), schema, model_dir=model)
    assert "synthetic has 0" in attack(empty).evaluate().result().reason


@pytest.mark.parametrize("attack", ATTACKS)
def test_constant_columns_and_empty_time_series_still_run(attack):
    schema = attack_schema()
    same = AuditInputs(
        constant(schema, 20, "t"), constant(schema, 20, "h"), constant(schema, 20, "s", 60), schema
    )
    r = attack(same).evaluate().result()
    assert r.ok and r.metrics["auc"].value == pytest.approx(0.5)  # members look like the others
    train, holdout, _ = cohorts()
    bare = without_events(train)
    assert patient_features(bare).values[:, -12:].max() == 0  # no series summary at all
    r = attack(AuditInputs(bare, without_events(holdout), bare, schema)).evaluate().result()
    assert r.ok and r.metrics["auc"].value > 0.8  # attributes and diagnoses still identify


def test_likelihood_attack_needs_the_model():
    r = LikelihoodMembershipAttack(copy_inputs()).evaluate().result()
    assert r.status == "not_run" and "no model artifact" in r.reason


def test_likelihood_attack_finds_a_memorising_model(tmp_path):
    torch = pytest.importorskip("torch")
    from medsynth.encoding.encode import encode_cohort
    from medsynth.encoding.vocabulary import build_vocabulary
    from medsynth.models.artifact import build_network, save_artifact
    from medsynth.models.fit import GrammarTables, fit_nonprivate
    from medsynth.models.network import NetworkConfig

    train, holdout, fresh = cohorts()
    members, others = first(train, 20), first(holdout, 20)
    vocab = build_vocabulary(attack_schema())
    torch.manual_seed(0)
    net = build_network(vocab, NetworkConfig(d_model=32, n_layers=1, n_heads=4, d_ff=64))
    model = tmp_path / "model"
    save_artifact(model / "untrained", vocab=vocab, net=net, training={}, privacy=None)
    tables, encoded = GrammarTables.build(vocab), encode_cohort(vocab, members)
    fit_nonprivate(
        net, tables, encoded, epochs=40, batch_size=20, lr=2e-2, shuffle=0.0, random_state=0
    )
    save_artifact(model / "memorised", vocab=vocab, net=net, training={}, privacy=None)
    inputs = AuditInputs(members, others, fresh, attack_schema(), model_dir=model / "memorised")
    r = LikelihoodMembershipAttack(inputs).evaluate().result()
    assert r.ok and r.metrics["auc"].value > 0.9 and r.metrics["epsilon_accounted"] is None
    inputs = AuditInputs(members, others, fresh, attack_schema(), model_dir=model / "untrained")
    r = LikelihoodMembershipAttack(inputs).evaluate().result()
    assert r.ok and r.metrics["auc"].ci_low <= 0.5 <= r.metrics["auc"].ci_high


def test_every_privacy_evaluator_is_registered_and_takes_keyword_parameters():
    for name in PRIVACY:
        cls = get_evaluator(name)
        assert cls.name == name and cls.kind == "privacy"
        assert cls.__doc__ and cls.__doc__.split("\n\n")[0]


def _privacy_policy():
    """The shipped default policy restricted to the privacy attacks (its own thresholds)."""
    doc = load_policy("default").to_dict()
    doc["evaluators"] = {k: v for k, v in doc["evaluators"].items() if k in PRIVACY}
    doc["checks"] = [c for c in doc["checks"] if c["evaluator"] in PRIVACY]
    return parse_policy(doc)


def test_default_policy_fails_a_copy_and_passes_fresh_draws(tmp_path):
    policy = _privacy_policy()
    bad = run_audit(copy_inputs(), policy, out_dir=tmp_path / "copy", progress=False)
    verdicts = {c.evaluator: c.verdict for c in bad.checks}
    assert bad.verdict == "FAIL"
    assert {verdicts[n] for n in ("mia_dcr", "mia_density", "attribute_disclosure")} == {"FAIL"}
    assert {verdicts[n] for n in ("singling_out", "linkability")} == {"FAIL"}
    assert verdicts["mia_likelihood"] == "NOT RUN"  # no model artifact given
    good = run_audit(fresh_inputs(), policy, out_dir=tmp_path / "fresh", progress=False)
    assert good.verdict == "PASS", [c.reason for c in good.checks if c.verdict == "FAIL"]
    text = (tmp_path / "copy" / "report.json").read_text()
    train, holdout, _ = cohorts()
    assert not any(f'"{pid}"' in text for pid in train.patient_ids[:50] + holdout.patient_ids[:50])
    for r in bad.results:
        assert all(
            isinstance(v, (Estimate, int, float, str, type(None))) for v in r.metrics.values()
        )
    assert np.isfinite(json.loads(text)["results"][0]["metrics"]["auc"]["value"])


def test_estimates_carry_their_method():
    m = DcrMembershipAttack(fresh_inputs()).evaluate().result().metrics
    assert m["auc"].method == "bootstrap" and m["tpr_at_fpr_1pct"].method == "clopper-pearson"
