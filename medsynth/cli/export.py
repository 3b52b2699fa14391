"""``medsynth export``: write a cohort folder as FHIR or tables."""

from __future__ import annotations

from pathlib import Path

import click

from medsynth.cli.options import out_option, overwrite_option, progress_option, seed_option


@click.command()
@click.argument("cohort_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@out_option("Output folder.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ndjson", "bundle", "csv", "parquet"]),
    default="ndjson",
    show_default=True,
    help="FHIR ndjson, FHIR Bundles, or tables.",
)
@seed_option
@overwrite_option
@progress_option
def export(cohort_dir, out, fmt, seed, overwrite, progress) -> None:
    """Write the cohort in COHORT_DIR as FHIR R4 (ndjson or Bundles) or as CSV/Parquet tables."""
    from medsynth.cohort import Cohort

    cohort = Cohort.load(cohort_dir)
    if fmt in ("csv", "parquet"):
        from medsynth.tabular import write_tables

        write_tables(cohort, out, format=fmt, overwrite=overwrite)
        click.echo(f"{cohort.n_patients} patients written as {fmt} tables to {out}")
        return
    from medsynth.fhir.write import write_fhir

    manifest = write_fhir(
        cohort, out, format=fmt, random_state=seed, overwrite=overwrite, progress=progress
    )
    click.echo(f"{manifest.total} FHIR resources ({_counts(manifest)}) written to {out}")


def _counts(manifest) -> str:
    return ", ".join(f"{n} {t}" for t, n in manifest.counts.items())
