"""Audit policies: which evaluators to run, with what parameters, and which figures must pass.

A policy is a JSON file (``audits/*.policy.json``, format ``schemas/audit-policy.schema.json``).
It names the evaluators to run with their parameters (trial counts, targets, seeds) and a list
of checks, each a comparison of one figure of one evaluator with a threshold. Evaluating a
policy against the results gives every check a verdict:

* **PASS** / **FAIL**: the figure was computed and the comparison holds / does not;
* **NOT RUN**: the evaluator was not enabled or could not run (too few patients, no events...),
  or the figure is missing; the reason says which. A NOT RUN check does not fail the audit
  unless the check is ``required``, in which case its verdict is FAIL with the reason. An
  attack that the dataset schema gives nothing to work on (attribute disclosure without any
  patient attribute, linkability without a second view of the record) does not apply to the
  schema: its checks are NOT RUN even when required, and the headline says so.

The overall verdict is FAIL when any check fails; INCOMPLETE when none failed but no privacy
check ran (a report whose attacks all did not run must not read as a clean PASS); PASS
otherwise, with every check that did not run named in the headline. For a figure carrying a
confidence interval the check names which end it reads (``statistic``: ``value``, ``ci_low`` or
``ci_high``); a conservative privacy check reads the upper end of a risk. With ``minus_baseline``
the check reads the figure minus the evaluator's baseline figure of the same name (the control
attacker's success, or the holdout-vs-training distance).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsynth._resources import shipped_dir
from medsynth.audit.base import AuditResult, Estimate
from medsynth.errors import Problem, SchemaError
from medsynth.schema.load import read_json_document, validate_document

POLICY_FORMAT = "medsynth.audit-policy/1"
PASS, FAIL, NOT_RUN, INCOMPLETE = "PASS", "FAIL", "NOT RUN", "INCOMPLETE"
OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
STATISTICS = ("value", "ci_low", "ci_high")


def policies_dir() -> Path:
    """The folder holding the shipped audit policies (``audits/`` of a checkout or a wheel).

    Raises:
        MissingDataError: the folder is missing from this installation.
    """
    return shipped_dir("audits", "default.policy.json")


def shipped_policies() -> dict[str, Path]:
    """Audit policies shipped with medsynth, by name (``default``, ``strict``)."""
    return {
        p.name.removesuffix(".policy.json"): p for p in sorted(policies_dir().glob("*.policy.json"))
    }


@dataclass(frozen=True)
class EvaluatorSpec:
    """One evaluator the policy runs, with its keyword parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True)
class CheckSpec:
    """One comparison the policy makes: ``figure op threshold``."""

    name: str
    evaluator: str
    metric: str
    op: str
    threshold: float
    statistic: str = "value"
    minus_baseline: bool = False
    required: bool = False
    description: str = ""

    @property
    def figure(self) -> str:
        core = f"{self.evaluator}.{self.metric}"
        if self.statistic != "value":
            core += f" ({self.statistic})"
        return f"{core} - baseline" if self.minus_baseline else core


@dataclass(frozen=True)
class AuditPolicy:
    """A validated audit policy. Build it with :func:`load_policy` or :func:`parse_policy`."""

    name: str
    seed: int
    evaluators: tuple[EvaluatorSpec, ...]
    checks: tuple[CheckSpec, ...]
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def enabled(self) -> tuple[EvaluatorSpec, ...]:
        return tuple(e for e in self.evaluators if e.enabled)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.raw))


def load_policy(source: str | Path) -> AuditPolicy:
    """Load a policy from a file path or the name of a shipped policy (``default``, ``strict``).

    Raises:
        SchemaError: listing every problem with its JSON path.
    """
    document, path = read_json_document(source, shipped_policies(), "policy")
    return parse_policy(document, source=str(path))


def parse_policy(
    document: Any, *, source: str = "<policy>", known_evaluators: Iterable[str] | None = None
) -> AuditPolicy:
    """Validate a policy document (parsed JSON) and build an :class:`AuditPolicy`.

    Args:
        known_evaluators: evaluator names the policy may use; defaults to the registry's.
    """
    problems = validate_document(document, "audit-policy.schema.json")
    if problems:
        raise SchemaError(source, problems)
    if known_evaluators is None:
        from medsynth.audit.registry import names as registry_names

        known_evaluators = registry_names()
    known = sorted(known_evaluators)
    for name in document["evaluators"]:
        if name not in known:
            problems.append(
                Problem(
                    f"$.evaluators.{name}", f"unknown evaluator {name!r}; valid: {', '.join(known)}"
                )
            )
    for i, check in enumerate(document["checks"]):
        if check["evaluator"] not in document["evaluators"]:
            problems.append(
                Problem(
                    f"$.checks[{i}].evaluator",
                    f"{check['evaluator']!r} is not listed under 'evaluators'; "
                    "add it there (enabled or not)",
                )
            )
    seen = [c["name"] for c in document["checks"]]
    for name in sorted({n for n in seen if seen.count(n) > 1}):
        problems.append(Problem("$.checks", f"check name {name!r} is used more than once"))
    if problems:
        raise SchemaError(source, problems)
    return AuditPolicy(
        name=document["name"],
        seed=int(document.get("seed", 0)),
        description=document.get("description", ""),
        evaluators=tuple(
            EvaluatorSpec(n, dict(e.get("params", {})), bool(e.get("enabled", True)))
            for n, e in document["evaluators"].items()
        ),
        checks=tuple(
            CheckSpec(
                name=c["name"],
                evaluator=c["evaluator"],
                metric=c["metric"],
                op=c["op"],
                threshold=float(c["threshold"]),
                statistic=c.get("statistic", "value"),
                minus_baseline=bool(c.get("minus_baseline", False)),
                required=bool(c.get("required", False)),
                description=c.get("description", ""),
            )
            for c in document["checks"]
        ),
        raw=json.loads(json.dumps(document)),
    )


# -- evaluation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """A check's outcome: the figure read, the comparison and the verdict with its reason."""

    name: str
    evaluator: str
    metric: str
    statistic: str
    op: str
    threshold: float
    value: float | None
    verdict: str
    reason: str
    required: bool = False
    minus_baseline: bool = False
    description: str = ""
    applies: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "applies": self.applies,
            "name": self.name,
            "evaluator": self.evaluator,
            "metric": self.metric,
            "statistic": self.statistic,
            "op": self.op,
            "threshold": self.threshold,
            "value": self.value,
            "verdict": self.verdict,
            "reason": self.reason,
            "required": self.required,
            "minus_baseline": self.minus_baseline,
            "description": self.description,
        }


def read_figure(figure: Estimate | float | int | str | None, statistic: str) -> float | None:
    """The number a check compares: an Estimate's value or interval end, or a plain number."""
    if isinstance(figure, Estimate):
        number = {"value": figure.value, "ci_low": figure.ci_low, "ci_high": figure.ci_high}[
            statistic
        ]
    elif isinstance(figure, bool) or not isinstance(figure, (int, float)):
        return None
    else:
        number = figure
    number = float(number)
    return number if math.isfinite(number) else None


def _format(x: float) -> str:
    return f"{x:.4g}"


def evaluate_check(spec: CheckSpec, result: AuditResult | None) -> Check:
    """Give one check its verdict against its evaluator's result (None: not enabled)."""

    def outcome(
        verdict: str, reason: str, value: float | None = None, applies: bool = True
    ) -> Check:
        if verdict == NOT_RUN and spec.required and applies:
            verdict, reason = FAIL, f"required check not run: {reason}"
        return Check(
            spec.name,
            spec.evaluator,
            spec.metric,
            spec.statistic,
            spec.op,
            spec.threshold,
            value,
            verdict,
            reason,
            spec.required,
            spec.minus_baseline,
            spec.description,
            applies,
        )

    if result is None:
        return outcome(NOT_RUN, f"evaluator {spec.evaluator!r} is not enabled in the policy")
    if result.status != "ok":
        if result.details.get("applies_to_schema") is False:
            return outcome(
                NOT_RUN, f"{spec.evaluator!r} does not apply: {result.reason}", applies=False
            )
        return outcome(NOT_RUN, f"evaluator {spec.evaluator!r} did not run: {result.reason}")
    value = read_figure(result.metrics.get(spec.metric), spec.statistic)
    if value is None:
        if spec.metric in result.metrics:
            return outcome(
                NOT_RUN,
                f"{spec.evaluator!r} could not compute {spec.metric!r} on these inputs (no value)",
            )
        known = ", ".join(sorted(result.metrics)) or "none"
        return outcome(
            NOT_RUN, f"{spec.evaluator!r} has no figure {spec.metric!r}; its figures are: {known}"
        )
    if spec.minus_baseline:
        base = read_figure(result.baseline.get(spec.metric), "value")
        if base is None:
            return outcome(NOT_RUN, f"{spec.evaluator!r} has no baseline for {spec.metric!r}")
        value -= base
    holds = OPS[spec.op](value, spec.threshold)
    text = f"{spec.figure} = {_format(value)}"
    if holds:
        return outcome(PASS, f"{text} {spec.op} {_format(spec.threshold)}", value)
    return outcome(FAIL, f"{text}, must be {spec.op} {_format(spec.threshold)}", value)


def evaluate_policy(policy: AuditPolicy, results: Sequence[AuditResult]) -> list[Check]:
    """Every check of ``policy`` with its verdict, in policy order."""
    by_name = {r.name: r for r in results}
    enabled = {e.name for e in policy.enabled}
    return [
        evaluate_check(c, by_name.get(c.evaluator) if c.evaluator in enabled else None)
        for c in policy.checks
    ]


def overall_verdict(
    checks: Sequence[Check],
    *,
    kinds: Mapping[str, str] | None = None,
    essential: Sequence[str] = ("privacy",),
) -> str:
    """The audit's verdict: FAIL, INCOMPLETE or PASS.

    FAIL if any check failed (required checks that did not run included). Otherwise, when
    ``kinds`` (evaluator name -> ``"privacy"``, ``"fidelity"`` or ``"utility"``) is given and no
    check of an ``essential`` kind ran (all NOT RUN, or the policy has none), INCOMPLETE: a
    report whose privacy attacks all did not run must not read as a clean PASS. PASS otherwise.
    """
    if any(c.verdict == FAIL for c in checks):
        return FAIL
    if kinds is not None:
        for kind in essential:
            if not any(c.verdict != NOT_RUN and kinds.get(c.evaluator) == kind for c in checks):
                return INCOMPLETE
    return PASS


def coverage(checks: Sequence[Check], kinds: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Per kind of check (privacy, fidelity, utility): how many there are, passed, failed and
    did not run."""
    out = {}
    for kind in ("privacy", "fidelity", "utility"):
        mine = [c for c in checks if kinds.get(c.evaluator) == kind]
        out[kind] = {
            "checks": len(mine),
            "passed": sum(c.verdict == PASS for c in mine),
            "failed": sum(c.verdict == FAIL for c in mine),
            "not_run": sum(c.verdict == NOT_RUN for c in mine),
        }
    return out


def headline(verdict: str, checks: Sequence[Check], kinds: Mapping[str, str]) -> str:
    """The verdict in plain sentences, naming what did not run and what that means."""
    cov = coverage(checks, kinds)
    failed = [c.name for c in checks if c.verdict == FAIL]
    skipped = [c for c in checks if c.verdict == NOT_RUN]
    if verdict == FAIL:
        text = f"FAIL: {len(failed)} of {len(checks)} checks failed ({'; '.join(failed)})."
    elif verdict == INCOMPLETE:
        priv = cov["privacy"]
        why = (
            f"none of its {priv['checks']} privacy checks could run"
            if priv["checks"]
            else "the policy runs no privacy check"
        )
        text = (
            f"INCOMPLETE: privacy was NOT assessed ({why}). This is not a PASS: do not "
            "share the synthetic data on the strength of this report."
        )
    else:
        text = f"PASS: {len(checks) - len(skipped)} of {len(checks)} checks ran and passed."
    if skipped:
        by_kind = ", ".join(f"{v['not_run']} {k}" for k, v in cov.items() if v["not_run"])
        text += f" {len(skipped)} check{'s' if len(skipped) != 1 else ''} did NOT RUN"
        text += f" ({by_kind}): " if by_kind else ": "
        text += "; ".join(c.name for c in skipped) + "."
        text += " " + not_run_meaning(
            [(c.evaluator, kinds.get(c.evaluator, ""), c.applies) for c in skipped],
            privacy_ran=any(
                c.verdict != NOT_RUN and kinds.get(c.evaluator) == "privacy" for c in checks
            ),
        )
    return text


def not_run_meaning(skipped: Sequence[tuple[str, str, bool]], *, privacy_ran: bool = True) -> str:
    """What the checks that did not run mean for the verdict, in a sentence or two.

    Args:
        skipped: ``(evaluator, kind, applies)`` of every check that did not run.
        privacy_ran: whether any privacy check ran (when none did, the verdict is INCOMPLETE
            and says so itself).
    """
    privacy = [(name, applies) for name, kind, applies in skipped if kind == "privacy"]
    if not privacy or not privacy_ran:
        return "A check that did not run is no evidence either way."
    text = (
        "A check that did not run is no evidence either way: the privacy verdict rests on "
        "the attacks that ran."
    )
    foreign = sorted({name for name, applies in privacy if not applies})
    if foreign:
        names = ", ".join(foreign)
        one = len(foreign) == 1
        text += (
            f" {names} {'does' if one else 'do'} not apply to this dataset schema as the "
            f"policy configures {'it' if one else 'them'}: the schema lacks what "
            f"{'it attacks' if one else 'they attack'} (the reasons say what is missing)."
        )
    return text
