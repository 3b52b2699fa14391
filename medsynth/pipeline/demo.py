"""The demo pipeline: the main job of medsynth on the embedded default source.

It simulates a "hospital" cohort (the embedded default source: no real data needed), writes it
as FHIR, reads it back as a real export would be read, splits the patients into a training
side and a holdout side that training never sees, trains the generator on the training side
under DP-SGD (charged to a ledger kept inside the demo folder), generates synthetic patients
and writes them as FHIR, then audits them against both sides and signs the report. Each step
is a function of a :class:`DemoContext` that records the paths it wrote and a one-line summary,
so the demo grows by appending steps to :data:`STEPS`. Every step calls the same pipeline
functions the commands call (:mod:`medsynth.pipeline.train`, :mod:`~medsynth.pipeline.generate`,
:mod:`~medsynth.pipeline.audit`).
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
    random_state: int
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

    cohort = simulate(ctx.schema, ctx.patients, random_state=ctx.random_state)
    path = ctx.out / "source-fhir"
    manifest = write_fhir(
        cohort,
        path,
        format="ndjson",
        random_state=ctx.random_state,
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
    train, holdout = ctx.artifacts["source"].split(
        ctx.holdout_fraction, random_state=ctx.random_state
    )
    ctx.train_dir = train.save(ctx.out / "train-cohort")
    ctx.holdout_dir = holdout.save(ctx.out / "holdout-cohort")
    ctx.artifacts["train"], ctx.artifacts["holdout"] = train, holdout
    ctx.paths["training cohort (private)"] = ctx.train_dir
    ctx.paths["holdout cohort (private, never trained on; for the audit)"] = ctx.holdout_dir
    ctx.summary.append(
        f"{train.n_patients} patients for training, {holdout.n_patients} held out "
        f"({ctx.holdout_fraction:.0%}, random_state {ctx.random_state})"
    )


def step_train(ctx: DemoContext) -> None:
    """Train the generator on the training side with DP-SGD, charged to the demo's ledger."""
    from medsynth.models.artifact import load_model
    from medsynth.pipeline.train import train
    from medsynth.privacy.ledger import Ledger

    ctx.ledger_path = Ledger.create(ctx.out / "ledger" / "ledger.jsonl", label="medsynth demo").path
    ctx.model_dir = train(
        ctx.artifacts["train"],
        epsilon=ctx.epsilon,
        out=ctx.out / "model",
        ledger=ctx.ledger_path,
        epochs=ctx.epochs,
        pretrain_patients=ctx.pretrain_patients,
        device=ctx.device,
        random_state=ctx.random_state,
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
        f"({model.privacy['accountant']} accountant, {model.privacy['steps']} steps, "
        f"noise multiplier {model.privacy['noise_multiplier']:.3g}; model {model.sha256[:12]})"
    )


def step_generate(ctx: DemoContext) -> None:
    """Generate synthetic patients from the model and write them as FHIR bulk ndjson."""
    from medsynth.fhir.write import write_fhir
    from medsynth.models.artifact import load_model
    from medsynth.pipeline.generate import generate_cohort, release_info

    model = load_model(ctx.model_dir, device=ctx.device)
    n = ctx.synthetic_patients or ctx.artifacts["train"].n_patients
    synthetic = generate_cohort(model, n, random_state=ctx.random_state, device=ctx.device)
    ctx.synthetic_cohort_dir = synthetic.save(ctx.out / "synthetic-cohort")
    ctx.synthetic_dir = ctx.out / "synthetic-fhir"
    manifest = write_fhir(
        synthetic,
        ctx.synthetic_dir,
        format="ndjson",
        random_state=ctx.random_state,
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
    """Audit the synthetic patients against training and holdout patients; sign the report.

    Reads from ``ctx``: ``out``, ``schema``, ``random_state``, ``progress``, ``echo``, and in
    ``ctx.artifacts``:

    * ``"synthetic"``: the generated cohort; without it the step is skipped with a note;
    * ``"train"`` and ``"holdout"``: the real patients the model was trained on and the real
      patients held out before training. The holdout must never have been seen by the model:
      the step refuses to invent one by splitting the source afterwards;
    * optional ``"model_dir"`` (the model artifact folder: hashed, its privacy record shown)
      and ``"ledger"`` (the privacy ledger or its path: the source's events are embedded).

    Writes a new key pair to ``ctx.out / "keys"`` (private key mode 0600) unless
    ``ctx.artifacts["signing_key"]`` names one, audits under the shipped default policy into
    ``ctx.out / "audit"``, signs the report and prints where to open it and how to verify it.
    Sets ``ctx.artifacts["audit"]`` to the :class:`AuditReport`.

    Raises:
        DataError: synthetic patients exist but no training or holdout cohort was kept.
    """
    from medsynth.audit.base import AuditInputs
    from medsynth.audit.policy import load_policy
    from medsynth.errors import DataError
    from medsynth.pipeline.audit import run_audit
    from medsynth.report.signing import generate_keypair

    synthetic = ctx.artifacts.get("synthetic")
    if synthetic is None:
        ctx.summary.append("audit skipped: no synthetic cohort was generated")
        return
    train, holdout = ctx.artifacts.get("train"), ctx.artifacts.get("holdout")
    if train is None or holdout is None:
        raise DataError(
            "the audit needs the training patients and real patients held out before "
            "training (ctx.artifacts 'train' and 'holdout'); split the source before the "
            "train step, never after it"
        )
    key = ctx.artifacts.get("signing_key")
    public = None
    if key is None:
        key, public = generate_keypair(ctx.out / "keys")
        ctx.paths["signing keys (private key: keep secret)"] = ctx.out / "keys"
    model = ctx.artifacts.get("model_dir")
    inputs = AuditInputs(
        train,
        holdout,
        synthetic,
        ctx.schema,
        model_dir=Path(model) if model is not None else None,
        random_state=ctx.random_state,
    )
    report = run_audit(
        inputs,
        load_policy("default"),
        out_dir=ctx.out / "audit",
        key_path=key,
        progress=ctx.progress,
        random_state=ctx.random_state,
        ledger=ctx.artifacts.get("ledger"),
    )
    ctx.artifacts["audit"] = report
    ctx.paths["audit report (open in a browser; confidential: computed on real data)"] = (
        report.report_html
    )
    verify = f"medsynth report verify {report.out_dir}"
    if public is not None:
        verify += f" --key {public}"
    ctx.echo(f"      {report.headline}")
    ctx.echo(f"      open {report.report_html} in a browser; check it with: {verify}")
    ctx.summary.append(
        f"audit verdict {report.verdict} ({len(report.checks)} checks, "
        f"{sum(c.verdict == 'FAIL' for c in report.checks)} failed, "
        f"{sum(c.verdict == 'NOT RUN' for c in report.checks)} not run); "
        f"signed report in {report.out_dir}"
    )


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
    random_state: int = 0,
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
    ctx = DemoContext(
        target, load_schema(schema), patients, random_state, progress, echo, **settings
    )
    for i, step in enumerate(STEPS, 1):
        echo(f"[{i}/{len(STEPS)}] {(step.__doc__ or step.__name__).splitlines()[0]}")
        step(ctx)
        echo(f"      {ctx.summary[-1]}")
    return ctx
