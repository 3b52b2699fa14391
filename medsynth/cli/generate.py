"""``medsynth generate``: sample synthetic patients from a trained model."""

from __future__ import annotations

from pathlib import Path

import click

from medsynth.cli.options import (
    device_option,
    out_option,
    overwrite_option,
    progress_option,
    seed_option,
)


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--patients",
    "n_patients",
    type=click.IntRange(min=1),
    required=True,
    help="Number of synthetic patients.",
)
@out_option("Output folder.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ndjson", "bundle", "csv", "parquet"]),
    default="ndjson",
    show_default=True,
    help="FHIR bulk ndjson, FHIR transaction Bundles, or CSV/Parquet tables.",
)
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    metavar="ATTR=VALUE",
    help="Fix an attribute or condition: sex=female, age=40-60, race=white,asian, "
    "diabetes=true. Repeatable.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="Patients sampled per chunk (memory stays flat).",
)
@device_option("sample")
@seed_option
@overwrite_option
@progress_option
def generate(
    model_dir, n_patients, out, fmt, conditions, batch_size, device, seed, overwrite, progress
) -> None:
    """Sample N_PATIENTS synthetic patients from the model in MODEL_DIR and write them.

    Sampling is post-processing of the DP model: it costs no privacy budget. The FHIR
    manifest records the model hash and its epsilon. Deterministic for a seed.
    """
    from medsynth.models.conditions import parse_condition_text
    from medsynth.pipeline.generate import generate as run
    from medsynth.pipeline.generate import generate_cohort, load_release, release_info

    fixed = dict(parse_condition_text(text) for text in conditions)
    model = load_release(model_dir, device=device)
    if fmt in ("csv", "parquet"):
        from medsynth.tabular import write_tables

        cohort = generate_cohort(
            model,
            n_patients,
            random_state=seed,
            conditions=fixed,
            batch_size=batch_size,
            device=device,
        )
        write_tables(cohort, out, format=fmt, overwrite=overwrite)
        click.echo(f"{cohort.n_patients} synthetic patients written as {fmt} tables to {out}")
        return
    from medsynth.fhir.write import write_fhir

    chunks = run(
        model,
        n_patients,
        random_state=seed,
        conditions=fixed,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    manifest = write_fhir(
        chunks,
        out,
        format=fmt,
        random_state=seed,
        overwrite=overwrite,
        manifest_extra=release_info(model),
    )
    click.echo(
        f"{n_patients} synthetic patients, {manifest.total} FHIR resources written to "
        f"{out} (model {model.sha256[:16]}, epsilon {model.epsilon:.4g})"
    )
