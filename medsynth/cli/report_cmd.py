"""``medsynth report``: verify (and re-sign) signed audit report folders."""

from __future__ import annotations

from pathlib import Path

import click

from medsynth.cli import MedsynthGroup

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
def verify(report_dir: Path, key: Path | None) -> None:
    """Check that REPORT_DIR is byte for byte what was signed.

    Exit code 0 when every file matches the signed statement and the signature is valid
    (and made by --key when given); 5, naming what failed, otherwise.
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
