"""Audit synthetic patients and write the report: evaluate, render, sign, all or nothing.

:func:`run_audit` is what ``medsynth audit`` runs. It checks the policy against the schema
before touching any data, runs the policy's evaluators (:mod:`medsynth.audit.run`), names the
model by its hash and embeds its checked privacy record and the ledger events of the training
data's dataset (:mod:`medsynth.pipeline.provenance`), and writes one folder atomically:

* ``report.json``: canonical JSON (RFC 8785) valid against ``schemas/audit-report.schema.json``;
* ``report.html``: the same content as a self-contained page for people;
* ``report.sig.json``: the signature envelope of :func:`medsynth.report.signing.sign_report`
  when a key is given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medsynth._io import atomic_dir, check_output_dir
from medsynth.audit.base import AuditInputs, AuditResult
from medsynth.audit.policy import PASS, AuditPolicy, Check, evaluate_policy
from medsynth.audit.run import (
    REPORT_HTML,
    REPORT_JSON,
    build_document,
    check_policy,
    run_evaluators,
    validate_report,
)
from medsynth.core.canonical import canonical_json
from medsynth.errors import Problem, SchemaError
from medsynth.pipeline.provenance import ledger_events_of, model_identity
from medsynth.report import html
from medsynth.report.signing import sign_report

__all__ = ["AuditReport", "run_audit"]


@dataclass(frozen=True)
class AuditReport:
    """What :func:`run_audit` produced: the verdict, the files and every result."""

    verdict: str
    headline: str
    out_dir: Path
    report_json: Path
    report_html: Path
    signature: Path | None
    results: tuple[AuditResult, ...]
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return self.verdict == PASS


def run_audit(
    inputs: AuditInputs,
    policy: AuditPolicy,
    *,
    out_dir: str | Path,
    key_path: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    random_state: int | None = None,
    ledger: Any = None,
    ledger_events: Sequence[Mapping[str, Any]] | None = None,
) -> AuditReport:
    """Run the policy's evaluators on ``inputs``, judge its checks and write the report folder.

    Args:
        inputs: train, holdout and synthetic cohorts, the schema and optionally the model folder
            (named by its model hash; its checked ``privacy.json`` is embedded).
        policy: the audit policy (see :func:`medsynth.audit.policy.load_policy`).
        out_dir: the report folder; it must not exist or be empty unless ``overwrite``. It is
            built beside its final place and moved there only when complete (and signed).
        key_path: an Ed25519 private key; when given the report is signed.
        progress: show a progress bar over the evaluators on stderr.
        random_state: handed to every evaluator; defaults to the policy's ``seed``.
        ledger: a privacy ledger (or its file path) whose events for the training cohort's
            source dataset are embedded; ``ledger_events`` gives them directly instead.

    Returns:
        The verdict (PASS, FAIL, or INCOMPLETE when no privacy check ran), its headline, the
        paths written and every result and check. The verdict is returned, not raised: the
        caller decides what it means (the CLI exits with code 4 unless it is PASS).

    Example:
        >>> report = run_audit(AuditInputs(train, holdout, synth, schema),
        ...                    load_policy("default"), out_dir="audit")  # doctest: +SKIP
        >>> report.verdict  # doctest: +SKIP
        'PASS'
    """
    seed = policy.seed if random_state is None else int(random_state)
    inputs = replace(inputs, random_state=seed)
    wrong = [
        Problem(
            name,
            f"built with dataset schema {getattr(inputs, name).schema.name!r}, "
            f"not the audit's {inputs.schema.name!r}",
        )
        for name in ("train", "holdout", "synthetic")
        if getattr(inputs, name).schema.sha256 != inputs.schema.sha256
    ]
    if wrong:
        raise SchemaError("audit inputs", wrong)
    target = Path(out_dir)
    check_output_dir(target, overwrite=overwrite)
    check_policy(policy, inputs)
    if ledger is not None and ledger_events is None:
        ledger_events = ledger_events_of(ledger, inputs.train.source.budget_name)
    model = model_identity(inputs.model_dir)
    results = run_evaluators(inputs, policy, progress=progress)
    checks = evaluate_policy(policy, results)
    document = build_document(
        inputs,
        policy,
        results,
        checks,
        model=model,
        ledger_events=ledger_events,
        created=dt.datetime.now(dt.timezone.utc),
    )
    validate_report(document)
    signature = None
    with atomic_dir(target, overwrite=overwrite) as tmp:
        (tmp / REPORT_JSON).write_bytes(canonical_json(document))
        (tmp / REPORT_HTML).write_text(html.render_html(document), encoding="utf-8")
        if key_path is not None:
            written = sign_report(tmp, key_path)
            signature = target / Path(written).name if written else None
    return AuditReport(
        verdict=document["verdict"],
        headline=document["headline"],
        out_dir=target,
        report_json=target / REPORT_JSON,
        report_html=target / REPORT_HTML,
        signature=signature,
        results=tuple(results),
        checks=tuple(checks),
    )
