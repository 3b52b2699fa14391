"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from medsynth.schema import DatasetSchema, load_schema, shipped_schemas


def _schema_callback(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    return load_schema(value)


def schema_option(required: bool = True, default: str | None = None):
    names = ", ".join(shipped_schemas())
    return click.option(
        "--schema",
        "schema",
        required=required and default is None,
        default=default,
        callback=_schema_callback,
        metavar="FILE|NAME",
        help=f"Dataset schema: a JSON file or a shipped schema name ({names}).",
    )


seed_option = click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed; the same seed gives the same output.",
)
overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Replace an existing output folder (only on success)."
)
progress_option = click.option(
    "--progress/--no-progress",
    default=True,
    show_default=True,
    help="Show progress bars on stderr.",
)
fhir_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["ndjson", "bundle"]),
    default="ndjson",
    show_default=True,
    help="FHIR bulk ndjson folder or transaction Bundles.",
)


def out_option(help_text: str, required: bool = True, default: str | None = None):
    return click.option(
        "--out",
        "out",
        type=click.Path(path_type=Path),
        required=required,
        default=default,
        help=help_text,
    )


def device_option(purpose: str):
    """``--device auto|cpu|cuda``; ``auto`` picks CUDA when there is one."""
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default="auto",
        show_default=True,
        help=f"Where to {purpose} (auto: CUDA when available).",
    )


__all__ = [
    "DatasetSchema",
    "device_option",
    "fhir_format_option",
    "out_option",
    "overwrite_option",
    "progress_option",
    "schema_option",
    "echo_chain",
    "seed_option",
]


def echo_chain(chain: Any) -> None:
    """Print a provenance check; raise VerificationError (exit 5) unless every link holds."""
    from medsynth.errors import VerificationError

    for line in chain.lines():
        click.echo(line)
    if not chain.ok:
        raise VerificationError("the records do not name one model; see the lines marked FAIL")
    click.echo("provenance verified: every record names the same model")
