"""``medsynth simulate``: rule-based synthetic patients, no real data needed."""

from __future__ import annotations

import click

from medsynth.cli.options import (
    out_option,
    overwrite_option,
    progress_option,
    schema_option,
    seed_option,
)


@click.command()
@schema_option(default="general-adult")
@click.option(
    "--patients",
    "n_patients",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Number of patients.",
)
@out_option("Output folder.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ndjson", "bundle", "cohort"]),
    default="ndjson",
    show_default=True,
    help="FHIR bulk ndjson, FHIR transaction Bundles, or a cohort folder.",
)
@seed_option
@overwrite_option
@progress_option
def simulate(schema, n_patients, out, fmt, seed, overwrite, progress) -> None:
    """Simulate plausible patients from a schema's public knowledge (no privacy cost).

    Age and sex shape vitals and labs, conditions shift their channels, trajectories are
    autocorrelated and visits irregular. Deterministic for a seed.
    """
    from medsynth.simulate import simulate as run
    from medsynth.simulate import simulate_chunks

    if fmt == "cohort":
        cohort = run(schema, n_patients, random_state=seed)
        cohort.save(out, overwrite=overwrite)
        click.echo(f"{cohort.n_patients} simulated patients written as a cohort folder to {out}")
        return
    from medsynth.fhir.write import write_fhir

    # Chunks stream through the writer, so memory stays flat however many patients are asked.
    manifest = write_fhir(
        simulate_chunks(schema, n_patients, random_state=seed),
        out,
        format=fmt,
        random_state=seed,
        overwrite=overwrite,
        progress=progress,
        manifest_extra={"source": "medsynth simulate"},
    )
    click.echo(f"{n_patients} simulated patients, {manifest.total} FHIR resources written to {out}")
