"""``medsynth audit``: audit a synthetic cohort against the real training and holdout patients."""

from __future__ import annotations

from pathlib import Path

import click

from medsynth.cli.options import out_option, overwrite_option, progress_option, schema_option

_SOURCE = click.Path(exists=True, path_type=Path)


@click.command()
@click.option(
    "--train",
    "train",
    multiple=True,
    required=True,
    type=_SOURCE,
    help="Real patients the model was trained on: a cohort folder or FHIR files "
    "and folders (repeat the option for several).",
)
@click.option(
    "--holdout",
    "holdout",
    multiple=True,
    required=True,
    type=_SOURCE,
    help="Real patients the model never saw (the control), in the same forms.",
)
@click.option(
    "--synthetic",
    "synthetic",
    multiple=True,
    required=True,
    type=_SOURCE,
    help="The synthetic patients under audit, in the same forms.",
)
@schema_option(required=False)
@click.option(
    "--model",
    "model",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model artifact folder: its files are hashed and its privacy record "
    "(accounted epsilon) is set beside the attacks' empirical bounds.",
)
@click.option(
    "--policy",
    "policy",
    default="default",
    show_default=True,
    metavar="FILE|NAME",
    help="Audit policy: a JSON file or a shipped policy name (default, strict).",
)
@click.option(
    "--key",
    "key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ed25519 private key to sign the report with (see 'medsynth keys').",
)
@click.option(
    "--ledger",
    "ledger",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Privacy ledger whose events for the training data are embedded.",
)
@out_option("Report folder to write (report.json, report.html and the signature).")
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed for every attack and resample (default: the policy's seed).",
)
@overwrite_option
@progress_option
def audit(
    train, holdout, synthetic, schema, model, policy, key, ledger, out, seed, overwrite, progress
) -> None:
    """Audit synthetic patients for privacy risk, fidelity and utility, and write a report.

    TRAIN, HOLDOUT and SYNTHETIC are cohort folders or anything 'medsynth ingest' reads
    (FHIR Bundles, bulk ndjson); --schema is needed for FHIR. The report is computed on real
    patients: keep it with the data owner. Exit code 0 when the policy's verdict is PASS,
    4 when it is FAIL, or INCOMPLETE (no privacy check could run).
    """
    from medsynth.audit.base import AuditInputs
    from medsynth.audit.policy import load_policy
    from medsynth.errors import AuditFailed
    from medsynth.pipeline.audit import run_audit
    from medsynth.sources import open_source

    chosen = load_policy(policy)
    cohorts = {}
    for label, paths in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
        opened = open_source(paths, schema, progress=progress)
        for line in opened.lines():
            click.echo(f"{label}: {line}")
        cohorts[label] = opened.cohort
        schema = schema or opened.cohort.schema
    inputs = AuditInputs(
        cohorts["train"], cohorts["holdout"], cohorts["synthetic"], schema, model_dir=model
    )
    report = run_audit(
        inputs,
        chosen,
        out_dir=out,
        key_path=key,
        progress=progress,
        overwrite=overwrite,
        random_state=seed,
        ledger=ledger,
    )
    for check in report.checks:
        click.echo(f"  {check.verdict:<7} {check.name}: {check.reason}")
    passed = sum(c.verdict == "PASS" for c in report.checks)
    failed = sum(c.verdict == "FAIL" for c in report.checks)
    click.echo(
        f"verdict {report.verdict} under policy {chosen.name!r}: {passed} passed, "
        f"{failed} failed, {len(report.checks) - passed - failed} not run"
    )
    click.echo(report.headline)
    click.echo(f"report: {report.report_html} (open in a browser); data: {report.report_json}")
    click.echo(
        f"signed: {report.signature}" if report.signature else "not signed (give --key to sign)"
    )
    if report.verdict == "INCOMPLETE":
        raise AuditFailed(
            f"audit verdict INCOMPLETE under policy {chosen.name!r}: no privacy check ran, "
            f"so privacy was not assessed; see {report.report_html}"
        )
    if not report.passed:
        raise AuditFailed(
            f"audit verdict FAIL under policy {chosen.name!r}: {failed} check"
            f"{'s' if failed != 1 else ''} failed; see {report.report_html}"
        )
