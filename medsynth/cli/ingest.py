"""``medsynth ingest``: read FHIR exports into a cohort folder."""

from __future__ import annotations

from pathlib import Path

import click

from medsynth.cli.options import out_option, overwrite_option, progress_option, schema_option


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@schema_option()
@out_option("Cohort folder to write.")
@click.option("--strict", is_flag=True, help="Refuse out-of-bounds values instead of clipping.")
@overwrite_option
@progress_option
def ingest(sources, schema, out, strict, overwrite, progress) -> None:
    """Read FHIR Bundles (.json, .json.gz) and bulk ndjson (.ndjson, .gz) into a cohort.

    SOURCES are files or folders. Prints what was read, mapped, clipped and skipped,
    and why. Input files are never modified.
    """
    from medsynth.fhir.read import read_fhir

    result = read_fhir(sources, schema, strict=strict, progress=progress)
    for line in result.lines():
        click.echo(line)
    result.cohort.save(out, overwrite=overwrite)
    click.echo(
        f"cohort written to {out} ({result.cohort.n_patients} patients, "
        f"dataset fingerprint {result.cohort.source.fingerprint[:16]})"
    )
