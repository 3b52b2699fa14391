"""``medsynth report``: verify (and re-sign) signed audit report folders."""

from __future__ import annotations

from pathlib import Path

import click

from medsynth.cli import MedsynthGroup
from medsynth.cli.options import echo_chain

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group(cls=MedsynthGroup)
def report() -> None:
    """Verify and sign audit reports."""


@report.command("verify")
@click.argument("report_dir", type=_DIR)
@click.option(
    "--key",
    "key",
    type=_FILE,
    help="The signer's public key (medsynth-signing.pub), obtained apart from the "
    "report. Without it only integrity against the embedded key is checked.",
)
@click.option(
    "--model", type=_DIR, default=None, help="The model folder the report should name."
)
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The privacy ledger that should settle that model's charge.",
)
@click.option(
    "--export", type=_DIR, default=None, help="A FHIR export folder that should name the model."
)
def verify(
    report_dir: Path,
    key: Path | None,
    model: Path | None,
    ledger: Path | None,
    export: Path | None,
) -> None:
    """Check that REPORT_DIR is byte for byte what was signed.

    Exit code 0 when every file matches the signed statement and the signature is valid
    (and made by --key when given); 5, naming what failed, otherwise. With --model, --ledger
    or --export, also check that the report, the model's privacy record, the ledger and the
    export all name one model hash.
    """
    from medsynth.report.signing import verify_report

    result = verify_report(report_dir, public_key_path=key)
    for item in result.files:
        click.echo(f"  ok  {item.name}  sha256 {item.sha256}  {item.size} bytes")
    if result.trusted_key:
        click.echo(f"verified: {len(result.files)} files signed by trusted key {result.key_id}")
    else:
        click.echo(
            f"intact: {len(result.files)} files match the signature of key "
            f"{result.key_id}; pass --key PUB to check who signed"
        )
    if model is None and ledger is None and export is None:
        return
    from medsynth.pipeline.provenance import check_chain

    echo_chain(check_chain(model=model, ledger=ledger, export=export, report=report_dir))


@report.command("sign")
@click.argument("report_dir", type=_DIR)
@click.option(
    "--key",
    "key",
    type=_FILE,
    required=True,
    help="Ed25519 private key (medsynth-signing.key from 'medsynth keys generate').",
)
def sign(report_dir: Path, key: Path) -> None:
    """Sign REPORT_DIR: write (or replace) its report.sig.json over every file."""
    from medsynth.report.signing import sign_report

    click.echo(f"signed: {sign_report(report_dir, key)}")
