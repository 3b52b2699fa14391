"""Run an audit: the evaluators a policy names, its checks, and the signed report.

:func:`run_audit` is the orchestration behind ``medsynth audit``. It checks the policy against
the schema and the evaluators' parameters before touching any data, runs each enabled evaluator
(privacy attacks from :mod:`medsynth.audit.registry`, fidelity, time-series, utility and
subgroup evaluators), gives every check its verdict, and writes one output folder atomically:

* ``report.json``: canonical JSON (sorted keys, UTF-8) valid against
  ``schemas/audit-report.schema.json``, with the verdict, every check and figure, the policy,
  the seeds and the provenance (medsynth version, hashes of the three cohorts and of the model
  artifact, the model's privacy record and the ledger events of the source dataset);
* ``report.html``: the same content as a self-contained page for people;
* the signature envelope of :func:`medsynth.report.signing.sign_report` when a key is given.

The figures are computed on real patients and are not covered by the differential-privacy
guarantee; the report says so on its first lines and is meant for the data owner only.
"""

from __future__ import annotations

import datetime as dt
import inspect
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medsynth._io import atomic_dir, check_output_dir
from medsynth.audit.base import AuditInputs, AuditResult, not_run
from medsynth.audit.policy import (
    PASS,
    AuditPolicy,
    Check,
    coverage,
    evaluate_policy,
    headline,
    overall_verdict,
)
from medsynth.audit.provenance import (
    cohort_identity,
    jsonable,
    ledger_events_of,
    model_identity,
)
from medsynth.cohort import Cohort
from medsynth.errors import DataError, Problem, SchemaError

REPORT_FORMAT = "medsynth.audit-report/1"
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


# -- orchestration ---------------------------------------------------------------------------------
def run_audit(
    inputs: AuditInputs,
    policy: AuditPolicy,
    *,
    out_dir: str | Path,
    key_path: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    seed: int | None = None,
    ledger: Any = None,
    ledger_events: Sequence[Mapping[str, Any]] | None = None,
) -> AuditReport:
    """Run the policy's evaluators on ``inputs``, judge its checks and write the report folder.

    Args:
        inputs: train, holdout and synthetic cohorts, the schema and optionally the model folder
            (its ``privacy.json`` is embedded and its files hashed).
        policy: the audit policy (see :func:`medsynth.audit.policy.load_policy`).
        out_dir: the report folder; it must not exist or be empty unless ``overwrite``. It is
            built beside its final place and moved there only when complete (and signed).
        key_path: an Ed25519 private key; when given the report is signed.
        progress: show a progress bar over the evaluators on stderr.
        seed: the seed handed to every evaluator; defaults to the policy's ``seed``.
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
    from medsynth.report.canonical import canonical_json
    from medsynth.report.html import render_html

    inputs = replace(inputs, random_state=policy.seed if seed is None else int(seed))
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
        ledger_events = ledger_events_of(ledger, inputs.train.source.fingerprint)
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
        (tmp / REPORT_HTML).write_text(render_html(document), encoding="utf-8")
        if key_path is not None:
            from medsynth.report.signing import sign_report

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


# -- the demo's last step ------------------------------------------------------------------------
def _demo_cohort(ctx: Any, key: str) -> Cohort | None:
    """``ctx.artifacts[key]`` (else ``ctx.<key>_dir``) as a Cohort: a Cohort, or a path to
    anything ingest reads."""
    value = ctx.artifacts.get(key)
    if value is None:
        value = getattr(ctx, f"{key}_dir", None)
    if value is None or isinstance(value, Cohort):
        return value
    from medsynth.sources import open_source

    return open_source([Path(value)], ctx.schema, progress=ctx.progress).cohort


def demo_step_audit(ctx: Any) -> None:
    """Audit the synthetic patients against training and holdout patients; sign the report.

    Reads from ``ctx`` (a :class:`medsynth.demo.DemoContext`): ``out``, ``schema``, ``seed``,
    ``progress``, ``echo``, and in ``ctx.artifacts``:

    * ``"synthetic"``: the generated cohort (a Cohort, or the path of a cohort folder or FHIR
      output); without it the step is skipped with a note;
    * ``"train"`` and ``"holdout"``: the real patients the model was trained on and the real
      patients held out before training (Cohorts or paths). The holdout must never have been
      seen by the model: the step refuses to invent one by splitting the source afterwards;
    * optional ``"model_dir"`` (the model artifact folder: hashed, its privacy record shown)
      and ``"ledger"`` (the privacy ledger or its path: the source's events are embedded).

    Writes a new key pair to ``ctx.out / "keys"`` (private key mode 0600) unless
    ``ctx.artifacts["signing_key"]`` names one, audits under the shipped default policy into
    ``ctx.out / "audit"``, signs the report and prints where to open it and how to verify it.
    Sets ``ctx.artifacts["audit"]`` to the :class:`AuditReport`.

    Raises:
        DataError: synthetic patients exist but no training or holdout cohort was kept.
    """
    from medsynth.audit.policy import load_policy

    synthetic = _demo_cohort(ctx, "synthetic")
    if synthetic is None:
        ctx.summary.append("audit skipped: no synthetic cohort was generated")
        return
    train, holdout = _demo_cohort(ctx, "train"), _demo_cohort(ctx, "holdout")
    if train is None or holdout is None:
        raise DataError(
            "the audit needs the training patients and real patients held out before "
            "training (ctx.artifacts 'train' and 'holdout'); split the source before the "
            "train step, never after it"
        )
    key = ctx.artifacts.get("signing_key")
    public = None
    if key is None:
        from medsynth.report.signing import generate_keypair

        key, public = generate_keypair(ctx.out / "keys")
        ctx.paths["signing keys (private key: keep secret)"] = ctx.out / "keys"
    model = ctx.artifacts.get("model_dir") or getattr(ctx, "model_dir", None)
    inputs = AuditInputs(
        train,
        holdout,
        synthetic,
        ctx.schema,
        model_dir=Path(model) if model is not None else None,
        random_state=ctx.seed,
    )
    report = run_audit(
        inputs,
        load_policy("default"),
        out_dir=ctx.out / "audit",
        key_path=key,
        progress=ctx.progress,
        seed=ctx.seed,
        ledger=ctx.artifacts.get("ledger") or getattr(ctx, "ledger_path", None),
    )
    ctx.artifacts["audit"] = report
    ctx.paths["audit report (open in a browser; confidential: computed on real data)"] = (
        report.report_html
    )
    verify = f"medsynth report verify {report.out_dir}"
    if public is not None:
        verify += f" --key {public}"
    ctx.echo(f"      {report.headline}")
    ctx.echo(f"      open {report.report_html} in a browser; check it with: {verify}")
    ctx.summary.append(
        f"audit verdict {report.verdict} ({len(report.checks)} checks, "
        f"{sum(c.verdict == 'FAIL' for c in report.checks)} failed, "
        f"{sum(c.verdict == 'NOT RUN' for c in report.checks)} not run); "
        f"signed report in {report.out_dir}"
    )
