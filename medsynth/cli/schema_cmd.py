"""``medsynth schema``: validate, list and show dataset schemas."""

from __future__ import annotations

import json

import click

from medsynth.schema import load_schema, shipped_schemas


@click.group()
def schema() -> None:
    """Validate, list and show dataset schemas."""


@schema.command("validate")
@click.argument("file")
def validate(file: str) -> None:
    """Validate FILE (a path or shipped schema name), listing every problem with its JSON path."""
    s = load_schema(file)
    click.echo(
        f"OK {file}: schema {s.name!r}, {len(s.attributes)} attributes, "
        f"{len(s.conditions)} conditions, {len(s.channels)} channels, "
        f"{len(s.panels)} panels (sha256 {s.sha256[:16]})"
    )


@schema.command("list")
def list_schemas() -> None:
    """List the dataset schemas shipped with medsynth."""
    for name, path in shipped_schemas().items():
        s = load_schema(path)
        click.echo(f"{name:<16} {s.title or s.description[:60]}")


@schema.command("show")
@click.argument("name")
def show(name: str) -> None:
    """Print a schema document (path or shipped name) as JSON."""
    click.echo(json.dumps(load_schema(name).raw, indent=2))
