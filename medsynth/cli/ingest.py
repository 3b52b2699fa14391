"""``medsynth ingest``: read FHIR exports into a cohort folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from medsynth.cli.options import out_option, overwrite_option, progress_option, schema_option


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@schema_option()
@out_option("Cohort folder to write.")
@click.option("--strict", is_flag=True, help="Refuse out-of-bounds values instead of clipping.")
@click.option(
    "--dataset",
    default="",
    help="Name of the dataset, the privacy budget every training run on this cohort is charged "
    "to (default: the source files' fingerprint). The ledger also recognises the same "
    "patients under another name.",
)
@overwrite_option
@progress_option
def ingest(sources, schema, out, strict, dataset, overwrite, progress) -> None:
    """Read FHIR Bundles (.json, .json.gz) and bulk ndjson (.ndjson, .gz) into a cohort.

    SOURCES are files or folders. Prints what was read, mapped, clipped and skipped,
    and why. Input files are never modified.
    """
    from medsynth.fhir.read import read_fhir

    result = read_fhir(sources, schema, strict=strict, progress=progress)
    for line in result.lines():
        click.echo(line)
    cohort = result.cohort
    if dataset:
        cohort = dataclasses.replace(
            cohort, source=dataclasses.replace(cohort.source, dataset=dataset)
        )
    cohort.save(out, overwrite=overwrite)
    named = f"dataset {dataset}, " if dataset else ""
    click.echo(
        f"cohort written to {out} ({cohort.n_patients} patients, "
        f"{named}fingerprint {cohort.source.fingerprint[:16]})"
    )
