"""``medsynth demo``: the main job end to end on the embedded default source."""

from __future__ import annotations

from pathlib import Path

import click

from medsynth.cli.options import progress_option, seed_option


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("medsynth-demo"),
    show_default=True,
    help="Folder for everything the demo writes (must be new or empty).",
)
@click.option(
    "--patients",
    type=click.IntRange(min=20),
    default=400,
    show_default=True,
    help="Size of the simulated source cohort.",
)
@seed_option
@progress_option
def demo(out, patients, seed, progress) -> None:
    """Run the main job on the embedded default: simulate a source, write and read FHIR, and more.

    No real data is needed: the source is simulated from the shipped general-adult schema.
    """
    from medsynth.demo import STEPS, run_demo

    click.echo(f"medsynth demo: {len(STEPS)} steps into {out}")
    ctx = run_demo(out, patients=patients, seed=seed, progress=progress, echo=click.echo)
    click.echo("\nWhere everything is:")
    for label, path in ctx.paths.items():
        click.echo(f"  {label}: {path}")
