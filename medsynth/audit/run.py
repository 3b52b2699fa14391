"""Evaluate an audit: the evaluators a policy names, their checks, and the report document.

:func:`check_policy` refuses a policy the schema or the evaluators cannot take before any data
is touched; :func:`run_evaluators` runs each enabled evaluator (privacy attacks from
:mod:`medsynth.audit.registry`, fidelity, time-series, utility and subgroup evaluators);
:func:`build_document` turns results and checks into the report as plain JSON data, valid against
``schemas/audit-report.schema.json`` (:func:`validate_report`). Writing, rendering and signing the
report is the pipeline's job (:func:`medsynth.pipeline.audit.run_audit`).

The figures are computed on real patients and are not covered by the differential-privacy
guarantee; the report says so on its first lines and is meant for the data owner only.
"""

from __future__ import annotations

import datetime as dt
import inspect
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from medsynth.audit.base import AuditInputs, AuditResult, not_run
from medsynth.audit.policy import (
    AuditPolicy,
    Check,
    coverage,
    headline,
    overall_verdict,
)
from medsynth.audit.provenance import cohort_identity, jsonable
from medsynth.errors import DataError, Problem, SchemaError

REPORT_FORMAT = "medsynth.audit-report/2"  # /1: medsynth 0.1 (0.1 canonical JSON)
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
STATEMENT = (
    "The figures in this report are computed on real patient records (the training and "
    "holdout cohorts). They are NOT covered by the differential-privacy guarantee that protects "
    "the synthetic data: the guarantee is the accounted (epsilon, delta) of the model's privacy "
    "record, and the attacks below are empirical evidence beside it, never a proof of privacy. "
    "This report is for the data owner and its compliance officer; keep it apart from the "
    "synthetic data and the privacy record, which are what may be shared."
)


# -- evaluators: found, missing, their kind ----------------------------------------------------
FIDELITY_KINDS = {
    "fidelity": "fidelity",
    "timeseries": "fidelity",
    "subgroups": "fidelity",
    "utility": "utility",
}


def _evaluator_class(name: str) -> type:
    from medsynth.audit.registry import get_evaluator

    return get_evaluator(name)


def unavailable(name: str) -> str:
    """Why the registered evaluator ``name`` cannot be imported here ("" when it can).

    A missing or broken evaluator module (an attack not installed, a dependency missing) is
    reported as a reason, so its checks are NOT RUN with that reason instead of stopping the
    whole audit; a name the registry does not know is still an error.
    """
    from medsynth.audit.registry import REGISTRY

    if name not in REGISTRY:
        _evaluator_class(name)  # raises UnknownEvaluatorError listing the valid names
    try:
        _evaluator_class(name)
    except ImportError as exc:
        module = REGISTRY[name].partition(":")[0]
        return f"evaluator {name!r} is not available in this installation ({module}: {exc})"
    return ""


def evaluator_kind(name: str) -> str:
    """``"privacy"``, ``"fidelity"`` or ``"utility"``; an evaluator that cannot be imported is
    one of the privacy attacks (the fidelity and utility evaluators live beside this module)."""
    if name in FIDELITY_KINDS:
        return FIDELITY_KINDS[name]
    return "privacy" if unavailable(name) else _evaluator_class(name).kind


# -- checks before any data is touched ------------------------------------------------------------


def check_policy(policy: AuditPolicy, inputs: AuditInputs) -> None:
    """Refuse a policy whose parameters the evaluators or the schema cannot take.

    Raises:
        SchemaError: every unknown parameter and bad utility target, with its JSON path.
    """
    from medsynth.audit.utility import resolve_target

    problems: list[Problem] = []
    for spec in policy.enabled:
        if unavailable(spec.name):
            continue  # reported as NOT RUN with its reason
        accepted = inspect.signature(_evaluator_class(spec.name)).parameters
        for key in spec.params:
            if key == "inputs" or key not in accepted:
                valid = ", ".join(k for k in accepted if k != "inputs") or "none"
                problems.append(
                    Problem(
                        f"$.evaluators.{spec.name}.params.{key}",
                        f"unknown parameter; {spec.name!r} takes: {valid}",
                    )
                )
        target = spec.params.get("target")
        if isinstance(target, Mapping):  # a list of alternatives may fit no schema: NOT RUN
            try:
                resolve_target(target, inputs.schema)
            except DataError as exc:
                problems.append(Problem(f"$.evaluators.{spec.name}.params.target", str(exc)))
    if problems:
        raise SchemaError(f"policy {policy.name!r} for schema {inputs.schema.name!r}", problems)


def run_evaluators(
    inputs: AuditInputs, policy: AuditPolicy, *, progress: bool = False
) -> list[AuditResult]:
    """Run every enabled evaluator of the policy, in policy order."""
    specs = policy.enabled
    results = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(specs), desc="audit", unit="evaluator", file=sys.stderr)
    for spec in specs:
        if bar is not None:
            bar.set_postfix_str(spec.name)
        missing = unavailable(spec.name)
        if missing:
            results.append(
                not_run(spec.name, evaluator_kind(spec.name), missing, dict(spec.params))
            )
        else:
            evaluator = _evaluator_class(spec.name)(inputs, **dict(spec.params))
            results.append(evaluator.evaluate().result())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results


# -- the report document ------------------------------------------------------------------------
def _about(name: str) -> str:
    if unavailable(name):
        return ""
    doc = inspect.getdoc(_evaluator_class(name)) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def build_document(
    inputs: AuditInputs,
    policy: AuditPolicy,
    results: Sequence[AuditResult],
    checks: Sequence[Check],
    *,
    model: Mapping[str, Any] | None,
    ledger_events: Sequence[Mapping[str, Any]] | None,
    created: dt.datetime,
) -> dict[str, Any]:
    """The report as plain JSON data (validated before it is written)."""
    from medsynth import __version__

    counts = {v: sum(1 for c in checks if c.verdict == v) for v in ("PASS", "FAIL", "NOT RUN")}
    kinds = {c.evaluator: evaluator_kind(c.evaluator) for c in checks}
    verdict = overall_verdict(checks, kinds=kinds)
    entries = []
    for r in results:
        entry = jsonable(r.to_dict())
        entry["about"] = _about(r.name)
        entries.append(entry)
    return jsonable(
        {
            "format": REPORT_FORMAT,
            "verdict": verdict,
            "headline": headline(verdict, checks, kinds),
            "coverage": coverage(checks, kinds),
            "statement": STATEMENT,
            "created": created.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "summary": {
                "checks": len(checks),
                "passed": counts["PASS"],
                "failed": counts["FAIL"],
                "not_run": counts["NOT RUN"],
            },
            "checks": [{**c.to_dict(), "kind": kinds[c.evaluator]} for c in checks],
            "results": entries,
            "policy": policy.to_dict(),
            "seed": inputs.random_state,
            "provenance": {
                "medsynth_version": __version__,
                "schema": {"name": inputs.schema.name, "sha256": inputs.schema.sha256},
                "inputs": {
                    "train": cohort_identity(inputs.train),
                    "holdout": cohort_identity(inputs.holdout),
                    "synthetic": cohort_identity(inputs.synthetic),
                },
                "model": model,
                "ledger_events": list(ledger_events) if ledger_events is not None else None,
            },
        }
    )


def validate_report(document: Mapping[str, Any]) -> None:
    """Raise SchemaError unless ``document`` is valid against ``audit-report.schema.json``."""
    from medsynth.schema.load import validate_document

    problems = validate_document(document, "audit-report.schema.json")
    if problems:
        raise SchemaError("audit report", problems)
