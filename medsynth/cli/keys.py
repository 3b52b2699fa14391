"""``medsynth keys``: make the Ed25519 key pair that signs audit reports."""

from __future__ import annotations

from pathlib import Path

import click

from medsynth.cli import MedsynthGroup


@click.group(cls=MedsynthGroup)
def keys() -> None:
    """Manage the Ed25519 keys that sign audit reports."""


@keys.command("generate")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the key pair (created if missing; existing keys are never overwritten).",
)
def generate(out: Path) -> None:
    """Create a new signing key pair in OUT.

    The private key (medsynth-signing.key, mode 0600) signs reports: keep it secret and never
    put it in a report folder. Give the public key (medsynth-signing.pub) to whoever verifies
    reports, through a channel other than the report itself.
    """
    from medsynth.report.signing import generate_keypair, key_id, load_public_key

    private, public = generate_keypair(out)
    click.echo(f"private key: {private} (mode 0600; keep it secret)")
    click.echo(f"public key:  {public} (key id {key_id(load_public_key(public))})")
