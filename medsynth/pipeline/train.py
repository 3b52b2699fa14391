"""Train a generator: plan, charge, pretrain on public patients, DP-SGD, write, settle.

:func:`train` owns the order that makes a release accountable:

1. **plan** the schedule (:func:`medsynth.models.plan.plan_schedule`) and the privacy record
   (:func:`medsynth.privacy.planning.plan_privacy`) from public quantities: N, epsilon, delta,
   the configuration;
2. **charge** the record to the dataset's ledger, refusing over the cap; nothing that shapes
   the release (encoding the private cohort, any DP step) has run before this;
3. **pretrain** the network without privacy on patients from the schema-driven simulator
   (public, no privacy cost);
4. **fine-tune** it on the private cohort under DP-SGD (:func:`medsynth.privacy.dpsgd.fit_private`);
5. **write** the artifact into a hidden folder, **settle** the charge (the ledger's artifact
   event records the model hash that ``privacy.json``, FHIR manifests and audit reports also
   name), and only then move the folder into place.

So whenever a run stops, the ledger is ahead of the files, never behind: a run killed after step
2 leaves its charge without an artifact event (the epsilon counts as spent: the noise may have
touched the data; ``medsynth budget show`` lists the charge with no model), one killed between
settling and the final rename leaves an artifact event naming a model that was never published,
and no model folder ever exists whose charge the ledger lacks
(``tests/pipeline/test_charge_order.py`` kills training at each of these points).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from medsynth._io import check_output_dir
from medsynth.cohort import Cohort
from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import Vocabulary, build_vocabulary
from medsynth.errors import MedsynthError
from medsynth.models.artifact import build_network, save_artifact
from medsynth.models.device import resolve_device
from medsynth.models.fit import GrammarTables, fit_nonprivate
from medsynth.models.plan import Schedule, TrainConfig, plan_schedule, resolve_config
from medsynth.privacy.accounting import PrivacyRecord, default_delta
from medsynth.privacy.distributed import distributed_context
from medsynth.privacy.dpsgd import fit_private, require_secure_rng
from medsynth.privacy.ledger import Ledger
from medsynth.privacy.planning import check_targets, plan_privacy

__all__ = ["RunPlan", "open_ledger", "plan_run", "pretrain", "train"]


def open_ledger(ledger: Ledger | str | Path) -> Ledger:
    """A :class:`Ledger` from a Ledger or its path; there is no implicit default here."""
    if isinstance(ledger, Ledger):
        return ledger
    if ledger is None:
        raise MedsynthError(
            "no privacy ledger given: pass ledger=Ledger(path) (or a path); the command line "
            "uses medsynth.privacy.ledger.default_ledger_path() unless --ledger is given"
        )
    return Ledger(Path(ledger))


def pretrain(
    net: torch.nn.Module,
    vocab: Vocabulary,
    tables: GrammarTables,
    config: TrainConfig,
    *,
    random_state: int,
    progress: bool,
) -> None:
    """Fit ``net`` without privacy on simulated public patients (no privacy cost)."""
    if not config.pretrain_patients or config.pretrain_epochs <= 0:
        return
    from tqdm.auto import tqdm

    from medsynth.simulate import simulate

    public = simulate(vocab.schema, config.pretrain_patients, random_state=random_state)
    encoded = encode_cohort(vocab, public)
    bar = tqdm(
        total=config.pretrain_epochs,
        desc="pretrain (public, simulated)",
        disable=not progress,
        unit="epoch",
    )
    with bar:

        def tick(epoch: int, loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.3f}")
            bar.update(1)

        fit_nonprivate(
            net,
            tables,
            encoded,
            epochs=config.pretrain_epochs,
            batch_size=config.pretrain_batch_size,
            lr=config.pretrain_learning_rate,
            shuffle=config.prefix_shuffle,
            random_state=random_state,
            on_epoch=tick,
        )


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything a run will do, fixed before it reads a record: the resolved configuration,
    the schedule and (for a private run) the privacy record that will be charged."""

    n_patients: int
    config: TrainConfig
    schedule: Schedule
    record: PrivacyRecord | None  # None: the non-private benchmark mode

    def lines(self) -> list[str]:
        """The plan in words, one figure per line (``medsynth train --plan``)."""
        from medsynth.models.plan import rule_schedule

        c, s, r = self.config, self.schedule, self.record
        net = c.network
        out = [f"patients (N): {self.n_patients}"]
        if r is None:
            out.append("mode: NON-PRIVATE benchmark (no noise, no ledger charge, not releasable)")
        else:
            out += [
                f"target epsilon: {r.target_epsilon:g} at delta {r.delta:g} "
                f"(accountant {r.accountant})",
                f"accounted epsilon: {r.epsilon:.4g}",
                f"noise multiplier (sigma): {r.noise_multiplier:.4g}",
                f"clipping norm: {r.max_grad_norm:g}",
            ]
        out += [
            f"sample rate (q): {s.sample_rate:.4g} (expected batch "
            f"{self.n_patients * s.sample_rate:.0f} patients)",
            f"steps: {s.steps} ({s.epochs} epochs of {s.steps_per_epoch})",
            f"learning rate: {c.learning_rate:g}",
            f"model: {net.n_layers} layers, width {net.d_model}, {net.n_heads} heads, "
            f"feed-forward {net.d_ff}",
            f"pretraining on simulated public patients: {c.pretrain_patients}"
            + (f" ({c.pretrain_epochs} epochs)" if c.pretrain_patients else ""),
        ]
        rule = rule_schedule(self.n_patients, r.target_epsilon if r else None)
        out += [f"rule: {why}" for why in rule.reasons]
        return out


def plan_run(
    n_patients: int,
    schema,
    *,
    epsilon: float | None,
    delta: float | None = None,
    config: TrainConfig | None = None,
    world_size: int = 1,
) -> RunPlan:
    """The plan of a run on ``n_patients`` patients: reads N, never a record; charges nothing.

    ``epsilon`` None plans the non-private benchmark mode. Raises the same errors a run would
    (epsilon out of range, delta above 1/N, an epsilon the noise search cannot reach).
    """
    config = resolve_config(
        config or TrainConfig(), n_patients=n_patients, epsilon=epsilon, schema=schema
    )
    schedule = plan_schedule(config, n_patients)
    if epsilon is None:
        return RunPlan(n_patients, config, schedule, None)
    delta = default_delta(n_patients) if delta is None else float(delta)
    check_targets(epsilon, delta, n_patients)
    record = plan_privacy(
        epsilon=epsilon, delta=delta, schedule=schedule, config=config, world_size=world_size
    )
    return RunPlan(n_patients, config, schedule, record)


def train(
    cohort: Cohort,
    *,
    epsilon: float | None,
    out: str | Path,
    ledger: Ledger | str | Path | None = None,
    delta: float | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    random_state: int = 0,
    pretrain_patients: int | None = None,
    config: TrainConfig | None = None,
    progress: bool = True,
    verbose: bool = False,
    secure_rng: bool = False,
    overwrite: bool = False,
    label: str = "",
    dataset: str | None = None,
    non_private: bool = False,
) -> Path:
    """Train the generator on ``cohort`` under (epsilon, delta)-DP and write the artifact.

    Args:
        epsilon: target epsilon; the accounted epsilon is at most this. None only with
            ``non_private``.
        out: artifact folder (written atomically).
        ledger: the :class:`~medsynth.privacy.ledger.Ledger` (or its path) charged before
            training; required for a private run, so no budget is ever kept anywhere the
            caller did not choose.
        delta: default :func:`medsynth.privacy.accounting.default_delta` of the cohort size.
        epochs, batch_size, pretrain_patients: override the same fields of ``config``
            (fields left at None are chosen by the rule, :func:`plan_run`).
        device: ``auto``, ``cpu`` or ``cuda``.
        random_state: fixes initialisation, the public pretraining patients and prefix orders
            (never the DP noise or sampling, which use fresh operating-system randomness).
        verbose: show the private training loss on the progress bar.
        secure_rng: noise from Opacus' secure mode (torchcsprng); refused before the charge
            when it is not installed.
        label: a note stored with the ledger charge.
        dataset: the name of the budget to charge; default the cohort's
            (``cohort.source.budget_name``: the name given at ingest, else its fingerprint).
            Whatever the name, a cohort that is mostly another dataset's patients is refused
            unless charged to that dataset.
        non_private: the benchmark ceiling: the same code and schedule rule with no noise
            (per-patient clipping kept), nothing charged, and an artifact marked not
            releasable, which ``generate`` and ``export`` refuse.

    Returns:
        The artifact folder.

    Raises:
        BudgetError: the charge would exceed the dataset's cap (nothing was trained).
    """
    if non_private and epsilon is not None:
        raise MedsynthError("the non-private mode takes no epsilon (it gives no guarantee)")
    if not non_private and epsilon is None:
        raise MedsynthError("epsilon is required (or ask for the non-private benchmark mode)")
    overrides = {
        k: v
        for k, v in (
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("pretrain_patients", pretrain_patients),
        )
        if v is not None
    }
    config = dataclasses.replace(config or TrainConfig(), **overrides)
    dev = resolve_device(device)
    dist = distributed_context(dev)
    if dev.type == "cuda" and dist.world_size > 1:
        dev = torch.device("cuda", dist.local_rank)
    if not non_private:
        delta = default_delta(cohort.n_patients) if delta is None else float(delta)
        check_targets(epsilon, delta, cohort.n_patients)  # every rank, before any collective
    if secure_rng:
        require_secure_rng()
    plan = dist.broadcast(
        plan_run(
            cohort.n_patients,
            cohort.schema,
            epsilon=epsilon,
            delta=delta,
            config=config,
            world_size=dist.world_size,
        )
        if dist.main
        else None
    )
    config, schedule, record = plan.config, plan.schedule, plan.record
    charge, book, error = None, None, None
    if dist.main:
        try:
            check_output_dir(Path(out), overwrite=overwrite)
            if record is not None:
                book = open_ledger(ledger)
                charge = book.charge(
                    dataset or cohort.source.budget_name,
                    record,
                    label=label,
                    patients=cohort.patient_ids,
                )
        except MedsynthError as exc:
            error = exc
    failed = dist.broadcast(None if error is None else str(error))
    if error is not None:
        raise error
    if failed is not None:
        raise MedsynthError(f"rank 0 refused the run: {failed}")
    # -- charged: from here on the data shapes the release ------------------------------------
    vocab = build_vocabulary(cohort.schema, config.encoding)
    with torch.random.fork_rng(devices=[]):  # seed the initialisation, not the caller's RNG
        torch.manual_seed(random_state)
        net = build_network(vocab, config.network).to(dev)
    tables = GrammarTables.build(vocab, dev)
    if dist.main:
        pretrain(net, vocab, tables, config, random_state=random_state, progress=progress)
    encoded = encode_cohort(vocab, cohort)
    fit_private(
        net,
        tables,
        encoded,
        record,
        schedule,
        config,
        dist=dist,
        random_state=random_state,
        progress=progress,
        verbose=verbose,
        secure_rng=secure_rng,
    )
    if dist.main:
        training: dict[str, Any] = {
            **config.to_dict(),
            "steps": schedule.steps,
            "steps_per_epoch": schedule.steps_per_epoch,
            "sample_rate": schedule.sample_rate,
            "random_state": random_state,
            "world_size": dist.world_size,
            "device_type": dev.type,
            "secure_rng": secure_rng,
        }
        settle = None  # the non-private mode has no charge to settle
        if record is not None:
            assert book is not None and charge is not None
            settle = lambda digest: book.attach_artifact(charge.id, digest)  # noqa: E731
        save_artifact(
            out,
            vocab=vocab,
            net=net.cpu(),
            training=training,
            privacy=record,
            overwrite=overwrite,
            before_publish=settle,
        )
    dist.barrier()
    return Path(out)
