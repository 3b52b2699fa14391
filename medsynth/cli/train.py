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
@click.option("--epsilon", type=float, required=True, help="Target epsilon (patient-level).")
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
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="DP-SGD epochs.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Expected Poisson batch (patients per step); default min(N/4, 512).",
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

    ledger = ledger if ledger is not None else default_ledger_path()
    opened = open_source(sources, schema, progress=progress)
    cohort = opened.cohort
    path = run(
        cohort,
        epsilon=epsilon,
        delta=delta,
        out=out,
        ledger=ledger,
        epochs=epochs,
        batch_size=batch_size,
        device=device,
        random_state=seed,
        verbose=verbose,
        secure_rng=secure_rng,
        pretrain_patients=pretrain_patients,
        progress=progress,
        overwrite=overwrite,
        label=label,
        dataset=dataset,
        config=TrainConfig(accountant=accountant, grad_sample_mode=grad_sample_mode),
    )
    if _is_main():
        from medsynth.models.artifact import load_model

        model = load_model(path)
        click.echo(
            f"model written to {path} ({cohort.n_patients} patients, epsilon "
            f"{model.epsilon:.4g} at delta {model.delta:.3g}, accountant "
            f"{model.privacy['accountant']}, model sha256 {model.sha256[:16]}; charged to "
            f"{ledger})"
        )


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
