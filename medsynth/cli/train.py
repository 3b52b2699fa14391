"""``medsynth train``: learn a generator from a private cohort under DP-SGD."""

from __future__ import annotations

from pathlib import Path

import click

from medsynth.cli.options import (
    device_option,
    out_option,
    overwrite_option,
    progress_option,
    schema_option,
)

# Kept here (not imported from medsynth.models.plan) so that `--help` does not load torch;
# a test checks they equal GRAD_SAMPLE_MODES and TrainConfig's default.
GRAD_SAMPLE_MODES = ("hooks", "functorch", "ew", "ghost")
DEFAULT_MODE = "ew"


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@schema_option(required=False)
@click.option(
    "--epsilon",
    type=float,
    default=None,
    help="Target epsilon (patient-level); required unless --non-private.",
)
@click.option(
    "--delta",
    type=float,
    default=None,
    help="Target delta; default well below 1/N (see docs/privacy.md).",
)
@out_option("Model folder to write.")
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Privacy ledger file; default $MEDSYNTH_LEDGER, else ledger.jsonl in the user data "
    "folder (the command prints which one it charged).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="DP-SGD epochs; default chosen by the rule from N and epsilon (see --plan).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Expected Poisson batch (patients per step); default chosen by the rule (see --plan).",
)
@click.option(
    "--pretrain-patients",
    type=click.IntRange(min=0),
    default=None,
    help="Simulated public patients for non-private pretraining (0: none; default 2000 when "
    "the schema has repeated measurements per channel, else none).",
)
@device_option("train")
@click.option(
    "--accountant",
    type=click.Choice(["prv", "rdp"]),
    default="prv",
    show_default=True,
    help="Opacus privacy accountant used to calibrate the noise (the experimental GDP "
    "accountant, which can underestimate epsilon, is not offered for releases).",
)
@click.option(
    "--grad-sample-mode",
    type=click.Choice(list(GRAD_SAMPLE_MODES)),
    default=DEFAULT_MODE,
    show_default=True,
    help="How Opacus gets per-patient gradients (see docs/performance.md for their cost).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seeds the public parts (initialisation, pretraining); never the DP noise.",
)
@click.option("--label", default="", help="Free text stored with the ledger event.")
@click.option(
    "--dataset",
    default=None,
    help="The dataset (privacy budget) to charge; default the name given at ingest, else the "
    "source's fingerprint. A cohort that is mostly another dataset's patients is refused unless "
    "charged to that dataset.",
)
@click.option(
    "--secure-rng",
    is_flag=True,
    help="Draw the DP noise from Opacus' secure mode (needs the torchcsprng package; refused, "
    "with nothing charged, when it is missing).",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Show the training loss on the progress bar (a figure of the private data).",
)
@click.option(
    "--plan",
    "plan_only",
    is_flag=True,
    help="Print what the rule chooses for this cohort (sigma, sample rate, steps, delta, model "
    "size) and the dataset's remaining budget, then stop: nothing is trained or charged.",
)
@click.option(
    "--non-private",
    is_flag=True,
    help="Benchmark ceiling: the same training without noise, charged to no ledger; the model "
    "is marked not releasable and generate/export refuse it. Takes no --epsilon.",
)
@overwrite_option
@progress_option
def train(
    sources,
    schema,
    epsilon,
    delta,
    out,
    ledger,
    epochs,
    batch_size,
    pretrain_patients,
    device,
    accountant,
    grad_sample_mode,
    seed,
    label,
    dataset,
    secure_rng,
    verbose,
    plan_only,
    non_private,
    overwrite,
    progress,
) -> None:
    """Train a synthetic-patient generator on SOURCES with patient-level DP-SGD.

    SOURCES is a cohort folder, a tables folder, or FHIR files and folders (with --schema).
    The privacy cost is charged to the dataset's ledger entry before training; a run that
    would exceed its cap is refused with exit code 3. Run under torchrun for several
    processes: torchrun --nproc_per_node 2 -m medsynth train ...
    """
    from medsynth.models.plan import TrainConfig
    from medsynth.pipeline.train import train as run
    from medsynth.privacy.ledger import default_ledger_path
    from medsynth.sources import open_source

    if non_private and epsilon is not None:
        raise click.UsageError("--non-private takes no --epsilon: it gives no guarantee")
    if not non_private and epsilon is None:
        raise click.UsageError("--epsilon is required (or --non-private for a benchmark ceiling)")
    if non_private and (secure_rng or dataset):
        raise click.UsageError("--non-private draws no noise and charges no dataset")
    ledger = ledger if ledger is not None else default_ledger_path()
    opened = open_source(sources, schema, progress=progress)
    cohort = opened.cohort
    config = TrainConfig(
        accountant=accountant,
        grad_sample_mode=grad_sample_mode,
        epochs=epochs,
        batch_size=batch_size,
        pretrain_patients=pretrain_patients,
    )
    if plan_only:
        _print_plan(cohort, epsilon, delta, config, None if non_private else ledger, dataset)
        return
    path = run(
        cohort,
        epsilon=epsilon,
        delta=delta,
        out=out,
        ledger=None if non_private else ledger,
        device=device,
        random_state=seed,
        verbose=verbose,
        secure_rng=secure_rng,
        progress=progress,
        overwrite=overwrite,
        label=label,
        dataset=dataset,
        config=config,
        non_private=non_private,
    )
    if not _is_main():
        return
    from medsynth.models.artifact import load_model

    model = load_model(path)
    if non_private:
        click.echo(
            f"NON-PRIVATE model written to {path} ({cohort.n_patients} patients, model sha256 "
            f"{model.sha256[:16]}): a benchmark ceiling, not releasable; nothing was charged"
        )
        return
    click.echo(
        f"model written to {path} ({cohort.n_patients} patients, epsilon "
        f"{model.epsilon:.4g} at delta {model.delta:.3g}, accountant "
        f"{model.privacy['accountant']}, model sha256 {model.sha256[:16]}; charged to "
        f"{ledger})"
    )


def _print_plan(cohort, epsilon, delta, config, ledger, dataset) -> None:
    """``--plan``: the rule's choices for N patients and the dataset's remaining budget."""
    from medsynth.pipeline.train import plan_run
    from medsynth.privacy.ledger import Ledger

    plan = plan_run(cohort.n_patients, cohort.schema, epsilon=epsilon, delta=delta, config=config)
    for line in plan.lines():
        click.echo(line)
    if ledger is None:
        return
    name = dataset or cohort.source.budget_name
    if not Path(ledger).exists():
        click.echo(f"budget: no ledger at {ledger} (start one with 'medsynth budget init')")
        return
    summary = Ledger(Path(ledger)).summary(name)
    left = summary.remaining
    line = f"budget of dataset {name!r}: spent {summary.spent_epsilon:.4g}"
    line += f" of cap {summary.cap:g}, {left:.4g} left" if left is not None else ", no cap"
    if plan.record is not None:
        fits = left is None or plan.record.epsilon <= left
        line += f"; this run ({plan.record.epsilon:.4g}) would {'fit' if fits else 'NOT fit'}"
    click.echo(line)


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _main() -> None:
    """Run this command alone (``torchrun ... -m medsynth.cli.train``), exit codes as the CLI."""
    import sys

    from medsynth.errors import MedsynthError

    try:
        train.main(standalone_mode=False)
    except MedsynthError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(1)


if __name__ == "__main__":
    _main()
