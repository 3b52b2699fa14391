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
import hashlib
import inspect
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medsynth._io import atomic_dir, check_output_dir
from medsynth.audit.base import AuditInputs, AuditResult
from medsynth.audit.policy import AuditPolicy, Check, evaluate_policy, overall_verdict
from medsynth.cohort import Cohort
from medsynth.errors import DataError, Problem, SchemaError

REPORT_FORMAT = "medsynth.audit-report/1"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
PRIVACY_RECORD = "privacy.json"
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
    out_dir: Path
    report_json: Path
    report_html: Path
    signature: Path | None
    results: tuple[AuditResult, ...]
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"


# -- checks before any data is touched ------------------------------------------------------------
def _evaluator_class(name: str) -> type:
    from medsynth.audit.registry import get_evaluator

    return get_evaluator(name)


def check_policy(policy: AuditPolicy, inputs: AuditInputs) -> None:
    """Refuse a policy whose parameters the evaluators or the schema cannot take.

    Raises:
        SchemaError: every unknown parameter and bad utility target, with its JSON path.
    """
    from medsynth.audit.utility import resolve_target

    problems: list[Problem] = []
    for spec in policy.enabled:
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
        evaluator = _evaluator_class(spec.name)(inputs, **dict(spec.params))
        results.append(evaluator.evaluate().result())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results


# -- the report document ------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN and infinities to None, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    raise TypeError(f"cannot put {type(value).__name__} into the audit report")


def cohort_identity(cohort: Cohort) -> dict[str, Any]:
    """Hashes and sizes of a cohort (no records)."""
    return {
        "content_sha256": cohort.content_hash(),
        "source": cohort.source.to_dict(),
        "patients": cohort.n_patients,
        "events": len(cohort.events),
        "conditions": len(cohort.conditions),
    }


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by POSIX path relative to it (sorted)."""
    out = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return out


def model_identity(model_dir: Path | None) -> dict[str, Any] | None:
    """Hashes of the model artifact's files and its privacy record, when a model is given.

    ``sha256`` is the hash of the canonical JSON of the ``files`` mapping (path -> sha256), so
    one number pins every file of the artifact.
    """
    if model_dir is None:
        return None
    folder = Path(model_dir)
    if not folder.is_dir():
        raise DataError(
            f"model artifact {folder} is not a folder; give the folder written by 'medsynth train'"
        )
    files = file_hashes(folder)
    record = None
    path = folder / PRIVACY_RECORD
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not valid JSON ({exc}); the artifact is damaged") from None
    tree = hashlib.sha256(json.dumps(files, sort_keys=True, separators=(",", ":")).encode())
    return {
        "name": folder.name,
        "sha256": tree.hexdigest(),
        "files": files,
        "privacy_record": record,
    }


def ledger_events_of(ledger: Any, dataset: str) -> list[dict[str, Any]]:
    """The privacy-ledger events of ``dataset`` as plain dictionaries.

    ``ledger`` is a :class:`medsynth.privacy.ledger.Ledger` or the path of a ledger file.
    """
    if isinstance(ledger, (str, Path)):
        from medsynth.privacy.ledger import Ledger

        ledger = Ledger(Path(ledger))
    return [jsonable(e) for e in ledger.events(dataset)]


def _about(name: str) -> str:
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
    entries = []
    for r in results:
        entry = jsonable(r.to_dict())
        entry["about"] = _about(r.name)
        entries.append(entry)
    return jsonable(
        {
            "format": REPORT_FORMAT,
            "verdict": overall_verdict(checks),
            "statement": STATEMENT,
            "created": created.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "summary": {
                "checks": len(checks),
                "passed": counts["PASS"],
                "failed": counts["FAIL"],
                "not_run": counts["NOT RUN"],
            },
            "checks": [{**c.to_dict(), "kind": _evaluator_class(c.evaluator).kind} for c in checks],
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
        The verdict, the paths written and every result and check. The verdict is returned,
        not raised: the caller decides what a FAIL means (the CLI exits with code 4).

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
        out_dir=target,
        report_json=target / REPORT_JSON,
        report_html=target / REPORT_HTML,
        signature=signature,
        results=tuple(results),
        checks=tuple(checks),
    )


# -- the demo's last step ------------------------------------------------------------------------
DEMO_HOLDOUT_FRACTION = 0.25


def demo_step_audit(ctx: Any) -> None:
    """Audit the synthetic patients against the source and write a signed report."""
    from medsynth.audit.policy import load_policy

    synthetic = ctx.artifacts.get("synthetic")
    if synthetic is None:
        ctx.summary.append("audit skipped: no synthetic cohort was generated")
        return
    train, holdout = ctx.artifacts.get("train"), ctx.artifacts.get("holdout")
    if train is None or holdout is None:
        train, holdout = ctx.artifacts["source"].split(DEMO_HOLDOUT_FRACTION, random_state=ctx.seed)
    model = ctx.artifacts.get("model_dir")
    key = ctx.artifacts.get("signing_key")
    if key is None:
        from medsynth.report.signing import generate_keypair

        keys = generate_keypair(ctx.out / "keys")
        key = keys[0] if isinstance(keys, tuple) else keys
        ctx.paths["signing keys (private key: keep secret)"] = ctx.out / "keys"
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
        ledger=ctx.artifacts.get("ledger"),
    )
    ctx.artifacts["audit"] = report
    ctx.paths["audit report (open in a browser; confidential: computed on real data)"] = (
        report.report_html
    )
    failed = sum(c.verdict == "FAIL" for c in report.checks)
    ctx.summary.append(
        f"audit verdict {report.verdict} ({len(report.checks)} checks, "
        f"{failed} failed); signed report in {report.out_dir}"
    )
