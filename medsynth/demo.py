"""The demo pipeline: the main job of medsynth on the embedded default source.

It simulates a "hospital" cohort (the embedded default source: no real data needed), writes it
as FHIR, reads it back as a real export would be read, and then runs whatever later stages are
registered in :data:`STEPS`. Each step is a function of a :class:`DemoContext` that records
the paths it wrote and a one-line summary, so the pipeline grows by appending steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsynth.schema import DatasetSchema, load_schema


@dataclass
class DemoContext:
    """What the demo steps share: settings in, artifacts and summaries out."""

    out: Path
    schema: DatasetSchema
    patients: int
    seed: int
    progress: bool
    echo: Callable[[str], None]
    artifacts: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)


def step_simulate_source(ctx: DemoContext) -> None:
    """Simulate the source cohort and write it as a FHIR bulk export (the 'hospital export')."""
    from medsynth.fhir.write import write_fhir
    from medsynth.simulate import simulate

    cohort = simulate(ctx.schema, ctx.patients, random_state=ctx.seed)
    path = ctx.out / "source-fhir"
    manifest = write_fhir(
        cohort,
        path,
        format="ndjson",
        seed=ctx.seed,
        progress=ctx.progress,
        manifest_extra={"source": "medsynth simulate (demo source)"},
    )
    ctx.paths["source FHIR export (simulated hospital data)"] = path
    ctx.summary.append(
        f"simulated {cohort.n_patients} source patients -> {manifest.total} FHIR resources"
    )


def step_ingest(ctx: DemoContext) -> None:
    """Read the FHIR export back through the schema, as a hospital's export would be read."""
    from medsynth.fhir.read import read_fhir

    result = read_fhir([ctx.out / "source-fhir"], ctx.schema, progress=ctx.progress)
    path = ctx.out / "source-cohort"
    result.cohort.save(path)
    ctx.artifacts["source"] = result.cohort
    ctx.paths["source cohort (private: stays on premises)"] = path
    skipped = sum(1 for _ in result.issues)
    ctx.summary.append(
        f"ingested {result.cohort.n_patients} patients, "
        f"{len(result.cohort.events)} events, {len(result.cohort.conditions)} "
        f"conditions ({skipped} read issues)"
    )


STEPS: list[Callable[[DemoContext], None]] = [step_simulate_source, step_ingest]


def run_demo(
    out: str | Path,
    *,
    patients: int = 400,
    seed: int = 0,
    schema: str = "general-adult",
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> DemoContext:
    """Run every demo step into ``out`` (which must not exist or be empty)."""
    from medsynth._io import check_output_dir

    target = Path(out)
    check_output_dir(target, overwrite=False)
    target.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(target, load_schema(schema), patients, seed, progress, echo)
    for i, step in enumerate(STEPS, 1):
        echo(f"[{i}/{len(STEPS)}] {(step.__doc__ or step.__name__).splitlines()[0]}")
        step(ctx)
        echo(f"      {ctx.summary[-1]}")
    return ctx
