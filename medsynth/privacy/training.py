"""DP-SGD training of the patient generator: plan, charge, pretrain, fine-tune, write.

:func:`train` is the only way medsynth learns from private data. In order, it

1. plans the schedule (Poisson sample rate ``1/k``, ``epochs * k`` steps) and calibrates the
   noise multiplier so the accounted epsilon at ``delta`` does not exceed the target;
2. charges the privacy record to the dataset's ledger entry, refusing before any training if
   the cap would be exceeded;
3. pretrains the network without privacy on patients from the schema-driven simulator (public,
   no privacy cost);
4. fine-tunes it on the private cohort with Opacus: Poisson-sampled patients, per-patient
   gradient clipping, Gaussian noise, fixed schedule, no early stopping and no model selection;
5. writes the artifact atomically and attaches its hash to the ledger event.

Under ``torchrun`` every process runs this function; the Poisson mask is drawn once per step
for the whole cohort from a seed shared in memory, each process takes its share, Opacus'
``DifferentiallyPrivateDistributedDataParallel`` keeps the replicas equal and only rank 0 adds
noise, so the record is that of the global batch. Only rank 0 charges and writes.
Noise and sampling use fresh operating-system randomness, never the user's seed: a known seed
would let anyone replay the noise. ``seed`` fixes the public parts (initialisation,
pretraining patients, prefix orders).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from medsynth._io import check_output_dir
from medsynth.cohort import Cohort
from medsynth.encoding.encode import EncodedCohort, encode_cohort
from medsynth.encoding.vocabulary import build_vocabulary
from medsynth.errors import MedsynthError
from medsynth.models.artifact import artifact_sha256, build_network, save_artifact
from medsynth.models.device import resolve_device
from medsynth.models.fit import GrammarTables, fit_nonprivate, make_batch, patient_losses
from medsynth.models.plan import Schedule, TrainConfig, plan_schedule, resolve_pretraining

__all__ = ["PoissonBatches", "TrainConfig", "dp_step", "plan_privacy", "private_loader", "train"]


class PoissonBatches(Sampler[list[int]]):
    """Poisson sampling of patients: each step keeps every index with probability ``rate``.

    The mask is drawn over the whole cohort from one generator; process ``rank`` of
    ``world_size`` keeps the kept indices ``i`` with ``i % world_size == rank``, so the union
    over processes is exactly one Poisson sample. Empty batches are yielded, not skipped, so
    all processes take the same number of steps.
    """

    def __init__(
        self, n: int, *, rate: float, steps: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.n, self.rate, self.steps = n, rate, steps
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        mine = torch.arange(self.n) % self.world_size == self.rank
        for _ in range(self.steps):
            keep = torch.rand(self.n, generator=self.generator) < self.rate
            yield torch.nonzero(keep & mine).flatten().tolist()


class _Rows(Dataset):
    def __init__(self, encoded: EncodedCohort) -> None:
        self.tokens = torch.from_numpy(encoded.tokens)
        self.times = torch.from_numpy(encoded.times)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int):
        return self.tokens[i], self.times[i]


def _collate_rows(dataset: _Rows):
    def collate(items: list[tuple[torch.Tensor, torch.Tensor]]):
        if not items:
            width = dataset.tokens.shape[1]
            return dataset.tokens.new_zeros((0, width)), dataset.times.new_zeros((0, width))
        return torch.stack([t for t, _ in items]), torch.stack([x for _, x in items])

    return collate


class WeightAverage:
    """Exponential moving average of the parameters over DP-SGD steps, bias-corrected.

    Averaging iterates is post-processing of the noisy updates, so it costs no privacy; it
    averages much of the injected noise out of the released weights. The decay gives a window
    of about a quarter of the run (at most 100 steps).
    """

    def __init__(self, net: torch.nn.Module, *, steps: int) -> None:
        self.decay = 1.0 - 1.0 / min(100.0, max(2.0, steps / 4))
        self.count = 0
        self.sums = {n: torch.zeros_like(p) for n, p in net.named_parameters()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        self.count += 1
        for name, p in net.named_parameters():
            self.sums[name].mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, net: torch.nn.Module) -> None:
        if self.count == 0:
            return
        correction = 1.0 - self.decay**self.count
        for name, p in net.named_parameters():
            p.copy_(self.sums[name] / correction)


def private_loader(
    encoded: EncodedCohort, schedule: Schedule, *, seed: int, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """The DataLoader of one epoch of Poisson batches (``schedule.steps_per_epoch`` of them)."""
    dataset = _Rows(encoded)
    sampler = PoissonBatches(
        encoded.n,
        rate=schedule.sample_rate,
        steps=schedule.steps_per_epoch,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=_collate_rows(dataset))


def dp_step(
    model,
    optimizer,
    tables: GrammarTables,
    tokens: torch.Tensor,
    times: torch.Tensor,
    *,
    shuffle: float,
    generator: torch.Generator | None,
) -> float:
    """One DP-SGD step on a Poisson batch; returns the summed patient losses (for display).

    An empty batch still takes the step: its per-sample gradients are an empty set, so the
    update is pure noise, exactly as the accountant assumes.
    """
    ghost = _is_ghost(optimizer)
    optimizer.zero_grad(set_to_none=True)
    if len(tokens) == 0:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                if ghost:  # the summed clipped gradient of no patient
                    p.grad = torch.zeros_like(p)
                else:
                    p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
        optimizer.step()
        return 0.0
    batch = make_batch(tables, tokens, times, shuffle=shuffle, generator=generator)
    losses = patient_losses(model, tables, batch)
    if ghost:
        # Ghost clipping: a first backward pass yields per-patient gradient norms without
        # per-patient gradients; the second back-propagates the losses scaled by their clipping
        # factors, so p.grad is the sum of clipped per-patient gradients.
        from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

        DPTensorFastGradientClipping(model, optimizer, losses, "mean").backward()
    else:
        (losses.sum() / batch.size).backward()
    optimizer.step()
    return float(losses.detach().sum().item())


def _is_ghost(optimizer) -> bool:
    from opacus.optimizers import DPOptimizerFastGradientClipping

    return isinstance(optimizer, DPOptimizerFastGradientClipping)


# -- distributed context ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """``obj`` from rank 0 on every rank (identity when not distributed)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def _distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return _Dist(
        torch.distributed.get_rank(),
        torch.distributed.get_world_size(),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


# -- privacy planning ------------------------------------------------------------------------
def plan_privacy(
    *, epsilon: float, delta: float, schedule: Schedule, config: TrainConfig, world_size: int = 1
):
    """The privacy record of a run before it starts: noise calibrated to ``epsilon``.

    Returns:
        A :class:`medsynth.privacy.accounting.PrivacyRecord` whose epsilon (recomputed from
        its own fields) is at most ``epsilon``.
    """
    import opacus

    acc = _accounting()
    DpSgdEvent, PrivacyRecord = acc.DpSgdEvent, acc.PrivacyRecord
    calibrate_noise, compute_epsilon = acc.calibrate_noise, acc.compute_epsilon
    _check_targets(epsilon, delta)
    noise = calibrate_noise(
        target_epsilon=epsilon,
        delta=delta,
        sample_rate=schedule.sample_rate,
        steps=schedule.steps,
        accountant=config.accountant,
    )
    event = DpSgdEvent(
        sample_rate=schedule.sample_rate, noise_multiplier=noise, steps=schedule.steps
    )
    spent = compute_epsilon(event, delta=delta, accountant=config.accountant)
    if spent > epsilon:
        raise MedsynthError(f"noise calibration gave epsilon {spent} above the target {epsilon}")
    return PrivacyRecord(
        accountant=config.accountant,
        sample_rate=schedule.sample_rate,
        noise_multiplier=noise,
        max_grad_norm=config.max_grad_norm,
        steps=schedule.steps,
        delta=delta,
        epsilon=spent,
        target_epsilon=epsilon,
        opacus_version=opacus.__version__,
        poisson_sampling=True,
        world_size=world_size,
    )


def _check_targets(epsilon: float, delta: float) -> None:
    if not epsilon > 0:
        raise MedsynthError(f"epsilon must be > 0, got {epsilon}; pass --epsilon 1 for example")
    if not 0.0 < delta < 1.0:
        raise MedsynthError(f"delta must lie in (0, 1), got {delta}")


def _accounting():
    """``medsynth.privacy.accounting`` (imported late: it pulls in Opacus' accountants)."""
    import medsynth.privacy.accounting as accounting

    return accounting


def _open_ledger(ledger):
    import medsynth.privacy.ledger as ledger_module

    Ledger = ledger_module.Ledger
    if isinstance(ledger, Ledger):
        return ledger
    return Ledger(Path(ledger) if ledger is not None else None)


def _event_id(event: Any) -> str:
    for name in ("id", "event_id", "charge_id", "hash", "sha256"):
        value = getattr(event, name, None)
        if isinstance(value, str) and value:
            return value
    raise MedsynthError(f"ledger event {event!r} carries no id to attach the artifact to")


# -- training phases -------------------------------------------------------------------------
def _pretrain(net, vocab, tables, config: TrainConfig, seed: int, progress: bool) -> None:
    if not config.pretrain_patients or config.pretrain_epochs <= 0:
        return
    from tqdm.auto import tqdm

    from medsynth.simulate import simulate

    public = simulate(vocab.schema, config.pretrain_patients, random_state=seed)
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
            seed=seed,
            on_epoch=tick,
        )


def _dp_finetune(*args: Any) -> dict[str, Any]:
    with warnings.catch_warnings():
        # Embedding inputs need no gradient, so torch notes that full backward hooks see only
        # outputs (all Opacus' hooks need); secure_mode is discussed in docs/training.md.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        return _dp_loop(*args)


def _dp_loop(
    net,
    tables,
    encoded: EncodedCohort,
    record,
    schedule: Schedule,
    config: TrainConfig,
    dist: _Dist,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    from opacus import PrivacyEngine
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
    from tqdm.auto import tqdm

    DpSgdEvent, compute_epsilon = _accounting().DpSgdEvent, _accounting().compute_epsilon
    device = tables.token_slot.device
    secret = dist.broadcast(secrets.randbits(63))  # sampling seed: in memory only
    loader = private_loader(
        encoded, schedule, seed=secret, rank=dist.rank, world_size=dist.world_size
    )
    module = DPDDP(net) if dist.world_size > 1 else net
    optimizer = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
    noise_gen = torch.Generator(device=device).manual_seed(secrets.randbits(63))
    engine = PrivacyEngine(accountant=config.accountant)
    made = engine.make_private(
        module=module,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=record.noise_multiplier,
        max_grad_norm=record.max_grad_norm,
        poisson_sampling=False,
        grad_sample_mode=config.grad_sample_mode,
        noise_generator=noise_gen,
    )
    # Ghost mode also returns a loss wrapper; dp_step wraps the per-patient losses itself.
    model, optimizer, loader = made[0], made[1], made[-1]
    shuffle_gen = torch.Generator().manual_seed(seed + 1)
    bar = tqdm(
        total=schedule.steps,
        desc="DP-SGD (private)",
        disable=not progress or not dist.main,
        unit="step",
    )
    model.train()
    steps, loss_sum, loss_n = 0, 0.0, 0
    average = WeightAverage(net, steps=schedule.steps) if config.average_weights else None
    every = max(1, schedule.epochs // 8)  # epsilon so far is shown about 8 times
    with bar:
        for epoch in range(schedule.epochs):
            for tokens, times in loader:
                loss_sum += dp_step(
                    model,
                    optimizer,
                    tables,
                    tokens,
                    times,
                    shuffle=config.prefix_shuffle,
                    generator=shuffle_gen,
                )
                loss_n += len(tokens)
                steps += 1
                if average is not None:
                    average.update(net)
                bar.update(1)
            if progress and dist.main and (epoch + 1) % every == 0 or steps == schedule.steps:
                spent = (
                    record.epsilon
                    if steps == schedule.steps
                    else compute_epsilon(
                        DpSgdEvent(
                            sample_rate=schedule.sample_rate,
                            noise_multiplier=record.noise_multiplier,
                            steps=steps,
                        ),
                        delta=record.delta,
                        accountant=config.accountant,
                    )
                )
                bar.set_postfix(
                    epoch=f"{epoch + 1}/{schedule.epochs}",
                    loss=f"{loss_sum / max(loss_n, 1):.3f}",
                    eps=f"{spent:.3g}",
                )
                loss_sum, loss_n = 0.0, 0
    if average is not None:
        average.copy_to(net)
    counted = sum(n for _, _, n in engine.accountant.history)
    if steps != schedule.steps or counted != schedule.steps:
        raise MedsynthError(
            f"DP-SGD ran {steps} steps (Opacus counted {counted}) but "
            f"{schedule.steps} were charged; the model is discarded"
        )
    return {"steps_run": steps}


def train(
    cohort: Cohort,
    *,
    epsilon: float,
    delta: float | None = None,
    out: str | Path,
    ledger: Any = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    seed: int = 0,
    pretrain_patients: int | None = None,
    config: TrainConfig | None = None,
    progress: bool = True,
    overwrite: bool = False,
    label: str = "",
) -> Path:
    """Train the generator on ``cohort`` under (epsilon, delta)-DP and write the artifact.

    Args:
        epsilon: target epsilon; the accounted epsilon is at most this.
        delta: default :func:`medsynth.privacy.accounting.default_delta` of the cohort size.
        out: artifact folder (written atomically).
        ledger: a :class:`medsynth.privacy.ledger.Ledger` or its path; default location if None.
        epochs, batch_size, pretrain_patients: override the same fields of ``config``.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: fixes initialisation, the public pretraining patients and prefix orders.

    Returns:
        The artifact folder.

    Raises:
        BudgetError: the charge would exceed the dataset's cap (nothing was trained).
    """
    config = config or TrainConfig()
    overrides = {
        k: v
        for k, v in (
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("pretrain_patients", pretrain_patients),
        )
        if v is not None
    }
    config = resolve_pretraining(dataclasses.replace(config, **overrides), cohort.schema)
    dev = resolve_device(device)
    dist = _distributed(dev)
    if dev.type == "cuda" and dist.world_size > 1:
        dev = torch.device("cuda", dist.local_rank)
    delta = _accounting().default_delta(cohort.n_patients) if delta is None else float(delta)
    _check_targets(epsilon, delta)  # on every rank, before any collective call
    schedule = plan_schedule(config, cohort.n_patients)
    record = dist.broadcast(
        plan_privacy(
            epsilon=epsilon,
            delta=delta,
            schedule=schedule,
            config=config,
            world_size=dist.world_size,
        )
        if dist.main
        else None
    )
    charge = None
    error = None
    if dist.main:
        try:
            check_output_dir(Path(out), overwrite=overwrite)
            book = _open_ledger(ledger)
            charge = book.charge(cohort.source.fingerprint, record, label=label)
        except MedsynthError as exc:
            error = exc
    failed = dist.broadcast(None if error is None else str(error))
    if error is not None:
        raise error
    if failed is not None:
        raise MedsynthError(f"rank 0 refused the run: {failed}")
    vocab = build_vocabulary(cohort.schema, config.encoding)
    with torch.random.fork_rng(devices=[]):  # seed the initialisation, not the caller's RNG
        torch.manual_seed(seed)
        net = build_network(vocab, config.network).to(dev)
    tables = GrammarTables.build(vocab, dev)
    if dist.main:
        _pretrain(net, vocab, tables, config, seed, progress)
    encoded = encode_cohort(vocab, cohort)
    _dp_finetune(net, tables, encoded, record, schedule, config, dist, seed, progress)
    if dist.main:
        training = {
            **config.to_dict(),
            "steps": schedule.steps,
            "steps_per_epoch": schedule.steps_per_epoch,
            "sample_rate": schedule.sample_rate,
            "seed": seed,
            "world_size": dist.world_size,
            "device_type": dev.type,
        }
        save_artifact(
            out,
            vocab=vocab,
            net=net.cpu(),
            training=training,
            privacy=record.to_dict(),
            overwrite=overwrite,
        )
        book.attach_artifact(_event_id(charge), artifact_sha256(out))
    dist.barrier()
    return Path(out)
