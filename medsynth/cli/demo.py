"""``medsynth demo``: the main job end to end on the embedded default source."""

from __future__ import annotations

from pathlib import Path

import click

from medsynth.cli.options import device_option, progress_option, seed_option


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
    default=1000,
    show_default=True,
    help="Size of the simulated source cohort (a fifth is held out of training).",
)
@click.option(
    "--epsilon",
    type=click.FloatRange(min=0, min_open=True),
    default=3.0,
    show_default=True,
    help="Patient-level epsilon of the demo model (charged to the demo's own ledger).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="DP-SGD epochs (default 20)."
)
@click.option(
    "--pretrain-patients",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Simulated public patients for non-private pretraining (0: none).",
)
@click.option(
    "--synthetic-patients",
    type=click.IntRange(min=1),
    default=None,
    help="Synthetic patients to generate (default: as many as trained on).",
)
@device_option("train and sample")
@seed_option
@progress_option
def demo(
    out, patients, epsilon, epochs, pretrain_patients, synthetic_patients, device, seed, progress
) -> None:
    """Run the main job on the embedded default: simulate a source, write and read FHIR, split
    off a holdout, train a DP-SGD generator, and write synthetic FHIR.

    No real data is needed: the source is simulated from the shipped general-adult schema.
    """
    from medsynth.pipeline.demo import STEPS, run_demo

    click.echo(f"medsynth demo: {len(STEPS)} steps into {out}")
    ctx = run_demo(
        out,
        patients=patients,
        random_state=seed,
        progress=progress,
        echo=click.echo,
        epsilon=epsilon,
        epochs=epochs,
        pretrain_patients=pretrain_patients,
        synthetic_patients=synthetic_patients,
        device=device,
    )
    click.echo("\nWhere everything is:")
    for label, path in ctx.paths.items():
        click.echo(f"  {label}: {path}")
