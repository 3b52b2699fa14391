"""The demo pipeline: the main job of medsynth on the embedded default source.

It simulates a "hospital" cohort (the embedded default source: no real data needed), writes it
as FHIR, reads it back as a real export would be read, splits the patients into a training
side and a holdout side that training never sees, trains the generator on the training side
under DP-SGD (charged to a ledger kept inside the demo folder), generates synthetic patients
and writes them as FHIR, then audits them against both sides and signs the report. Each step
is a function of a :class:`DemoContext` that records the
paths it wrote and a one-line summary, so the pipeline grows by appending steps to
:data:`STEPS` (an audit step reads ``train_dir``, ``holdout_dir``, ``synthetic_dir``,
``model_dir``, ``schema`` and ``out`` from the context, and the matching cohorts from
``artifacts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsynth.schema import DatasetSchema, load_schema

DEMO_EPSILON = 3.0  # patient-level epsilon of the demo model
DEMO_HOLDOUT = 0.2  # share of the source patients kept out of training for the audit
DEMO_PRETRAIN = 1000  # simulated public patients for pretraining (library: 2000 for time series)


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
    # Settings of the training and generation steps (None: the library defaults).
    epsilon: float = DEMO_EPSILON
    holdout_fraction: float = DEMO_HOLDOUT
    epochs: int | None = None
    pretrain_patients: int | None = DEMO_PRETRAIN
    synthetic_patients: int | None = None  # None: as many as the training side
    device: str = "auto"
    train_config: Any = None  # a TrainConfig; None: TrainConfig()
    # Written by the steps (None until the step that writes it has run).
    source_dir: Path | None = None  # cohort folder of the ingested source
    train_dir: Path | None = None  # cohort folder of the training side
    holdout_dir: Path | None = None  # cohort folder of the holdout side (never trained on)
    model_dir: Path | None = None  # model artifact (weights.pt, config.json, privacy.json)
    ledger_path: Path | None = None  # the demo's own privacy ledger
    synthetic_dir: Path | None = None  # synthetic patients as FHIR bulk ndjson + manifest.json
    synthetic_cohort_dir: Path | None = None  # the same synthetic patients as a cohort folder


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
    ctx.source_dir = path
    ctx.paths["source cohort (private: stays on premises)"] = path
    skipped = sum(1 for _ in result.issues)
    ctx.summary.append(
        f"ingested {result.cohort.n_patients} patients, "
        f"{len(result.cohort.events)} events, {len(result.cohort.conditions)} "
        f"conditions ({skipped} read issues)"
    )


def step_split(ctx: DemoContext) -> None:
    """Split the patients into a training side and a holdout side (seeded, patient level)."""
    train, holdout = ctx.artifacts["source"].split(ctx.holdout_fraction, random_state=ctx.seed)
    ctx.train_dir = train.save(ctx.out / "train-cohort")
    ctx.holdout_dir = holdout.save(ctx.out / "holdout-cohort")
    ctx.artifacts["train"], ctx.artifacts["holdout"] = train, holdout
    ctx.paths["training cohort (private)"] = ctx.train_dir
    ctx.paths["holdout cohort (private, never trained on; for the audit)"] = ctx.holdout_dir
    ctx.summary.append(
        f"{train.n_patients} patients for training, {holdout.n_patients} held out "
        f"({ctx.holdout_fraction:.0%}, seed {ctx.seed})"
    )


def step_train(ctx: DemoContext) -> None:
    """Train the generator on the training side with DP-SGD, charged to the demo's ledger."""
    from medsynth.models.artifact import load_model
    from medsynth.privacy.training import train

    ctx.ledger_path = ctx.out / "ledger" / "ledger.jsonl"
    ctx.model_dir = train(
        ctx.artifacts["train"],
        epsilon=ctx.epsilon,
        out=ctx.out / "model",
        ledger=ctx.ledger_path,
        epochs=ctx.epochs,
        pretrain_patients=ctx.pretrain_patients,
        device=ctx.device,
        seed=ctx.seed,
        config=ctx.train_config,
        progress=ctx.progress,
        label="medsynth demo",
    )
    model = load_model(ctx.model_dir, device="cpu")
    ctx.artifacts["model_dir"], ctx.artifacts["ledger"] = ctx.model_dir, ctx.ledger_path
    ctx.paths["model artifact (weights + privacy record: shareable)"] = ctx.model_dir
    ctx.paths["privacy ledger of the demo"] = ctx.ledger_path
    ctx.summary.append(
        f"DP-SGD model trained: epsilon {model.epsilon:.3g} at delta {model.delta:.2g} "
        f"({model.privacy.get('accountant')} accountant, {model.privacy.get('steps')} steps, "
        f"noise multiplier {model.privacy.get('noise_multiplier', float('nan')):.3g})"
    )


def step_generate(ctx: DemoContext) -> None:
    """Generate synthetic patients from the model and write them as FHIR bulk ndjson."""
    from medsynth.fhir.write import write_fhir
    from medsynth.generate import generate_cohort, release_info
    from medsynth.models.artifact import load_model

    model = load_model(ctx.model_dir, device=ctx.device)
    n = ctx.synthetic_patients or ctx.artifacts["train"].n_patients
    synthetic = generate_cohort(model, n, seed=ctx.seed, device=ctx.device)
    ctx.synthetic_cohort_dir = synthetic.save(ctx.out / "synthetic-cohort")
    ctx.synthetic_dir = ctx.out / "synthetic-fhir"
    manifest = write_fhir(
        synthetic,
        ctx.synthetic_dir,
        format="ndjson",
        seed=ctx.seed,
        progress=ctx.progress,
        manifest_extra=release_info(model),
    )
    ctx.artifacts["synthetic"] = synthetic
    ctx.paths["synthetic FHIR (shareable)"] = ctx.synthetic_dir
    ctx.paths["synthetic cohort tables"] = ctx.synthetic_cohort_dir
    ctx.summary.append(
        f"generated {synthetic.n_patients} synthetic patients -> {manifest.total} FHIR "
        f"resources (post-processing: no extra privacy cost)"
    )


def step_audit(ctx: DemoContext) -> None:
    """Audit the synthetic patients against training and holdout patients; sign the report."""
    from medsynth.audit.run import demo_step_audit

    demo_step_audit(ctx)


STEPS: list[Callable[[DemoContext], None]] = [
    step_simulate_source,
    step_ingest,
    step_split,
    step_train,
    step_generate,
    step_audit,
]


def run_demo(
    out: str | Path,
    *,
    patients: int = 1000,
    seed: int = 0,
    schema: str = "general-adult",
    progress: bool = True,
    echo: Callable[[str], None] = print,
    **settings: Any,
) -> DemoContext:
    """Run every demo step into ``out`` (which must not exist or be empty).

    Args:
        settings: further :class:`DemoContext` settings (``epsilon``, ``holdout_fraction``,
            ``epochs``, ``pretrain_patients``, ``synthetic_patients``, ``device``,
            ``train_config``).
    """
    from medsynth._io import check_output_dir

    target = Path(out)
    check_output_dir(target, overwrite=False)
    target.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(target, load_schema(schema), patients, seed, progress, echo, **settings)
    for i, step in enumerate(STEPS, 1):
        echo(f"[{i}/{len(STEPS)}] {(step.__doc__ or step.__name__).splitlines()[0]}")
        step(ctx)
        echo(f"      {ctx.summary[-1]}")
    return ctx
