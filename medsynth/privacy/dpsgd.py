"""DP-SGD on the patient generator: Poisson batches, one private step, the private loop.

This is the only place medsynth learns from private records. :func:`fit_private` runs the fixed
schedule of a :class:`~medsynth.privacy.accounting.PrivacyRecord` with Opacus: Poisson-sampled
patients (:class:`PoissonBatches`), per-patient gradient clipping, Gaussian noise, no early
stopping and no model selection; it refuses to return a model whose steps differ from those
charged. Planning the record (:mod:`medsynth.privacy.planning`), charging it and writing the
artifact are the pipeline's job (:mod:`medsynth.pipeline.train`).

Under ``torchrun`` every process runs the loop; the Poisson mask is drawn once per step for the
whole cohort from a seed shared in memory, each process takes its share, Opacus'
``DifferentiallyPrivateDistributedDataParallel`` keeps the replicas equal and only rank 0 adds
noise, so the record is that of the global batch. Noise and sampling use fresh operating-system
randomness, never the user's ``random_state``: a known seed would let anyone replay the noise.
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from medsynth.encoding.encode import EncodedCohort
from medsynth.errors import MedsynthError
from medsynth.models.fit import GrammarTables, make_batch, patient_losses
from medsynth.models.plan import Schedule, TrainConfig
from medsynth.privacy.accounting import DpSgdEvent, PrivacyRecord, compute_epsilon
from medsynth.privacy.averaging import WeightAverage
from medsynth.privacy.distributed import Distributed

__all__ = ["PoissonBatches", "dp_step", "fit_private", "private_loader", "require_secure_rng"]


def require_secure_rng() -> None:
    """Refuse ``secure_rng`` when Opacus' secure mode cannot run here (no silent fallback).

    Raises:
        MedsynthError: ``torchcsprng`` is not importable.
    """
    try:
        import torchcsprng  # noqa: F401
    except ImportError:
        raise MedsynthError(
            "--secure-rng is unavailable: Opacus' secure mode needs the torchcsprng package, "
            "which is not installed (pip install torchcsprng; it is not built for every torch "
            "release). Without --secure-rng the noise comes from torch's generator seeded from "
            "the operating system's secure source (docs/training.md); nothing was charged"
        ) from None


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


def fit_private(
    net: torch.nn.Module,
    tables: GrammarTables,
    encoded: EncodedCohort,
    record: PrivacyRecord | None,
    schedule: Schedule,
    config: TrainConfig,
    *,
    dist: Distributed | None = None,
    random_state: int = 0,
    progress: bool = False,
    verbose: bool = False,
    secure_rng: bool = False,
) -> dict[str, Any]:
    """Fine-tune ``net`` in place under DP-SGD with exactly the parameters of ``record``.

    ``record`` None is the non-private benchmark mode: the same loop, Poisson batches and
    per-patient clipping (at ``config.max_grad_norm``), with noise multiplier 0.

    Args:
        random_state: seeds the public prefix shuffles only; sampling and noise draw fresh
            operating-system randomness.
        progress: a progress bar with the epsilon spent so far.
        verbose: also show the mean training loss on the bar (a figure of the private data,
            for the data owner's eyes only).
        secure_rng: draw the noise and the Poisson masks from Opacus' secure mode
            (``torchcsprng``, a cryptographically secure generator); :func:`require_secure_rng`
            refuses the run beforehand when it is not installed.

    Raises:
        MedsynthError: the loop ran another number of steps than were charged (the model must
            be discarded).
    """
    args = (net, tables, encoded, record, schedule, config, dist or Distributed())
    with warnings.catch_warnings():
        # Embedding inputs need no gradient, so torch notes that full backward hooks see only
        # outputs (all Opacus' hooks need); secure_mode is discussed in docs/training.md.
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        return _dp_loop(*args, random_state, progress, verbose, secure_rng)


def _dp_loop(
    net,
    tables,
    encoded: EncodedCohort,
    record: PrivacyRecord | None,
    schedule: Schedule,
    config: TrainConfig,
    dist: Distributed,
    seed: int,
    progress: bool,
    verbose: bool,
    secure_rng: bool,
) -> dict[str, Any]:
    from opacus import PrivacyEngine
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
    from tqdm.auto import tqdm

    device = tables.token_slot.device
    secret = dist.broadcast(secrets.randbits(63))  # sampling seed: in memory only
    loader = private_loader(
        encoded, schedule, seed=secret, rank=dist.rank, world_size=dist.world_size
    )
    module = DPDDP(net) if dist.world_size > 1 else net
    optimizer = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
    # Without secure mode: torch's generator, seeded from the operating system's secure source.
    noise_gen = (
        None if secure_rng else torch.Generator(device=device).manual_seed(secrets.randbits(63))
    )
    engine = PrivacyEngine(accountant=config.accountant, secure_mode=secure_rng)
    made = engine.make_private(
        module=module,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=0.0 if record is None else record.noise_multiplier,
        max_grad_norm=config.max_grad_norm if record is None else record.max_grad_norm,
        poisson_sampling=False,
        grad_sample_mode=config.grad_sample_mode,
        noise_generator=noise_gen,
    )
    # Ghost mode also returns a loss wrapper; dp_step wraps the per-patient losses itself.
    model, optimizer, loader = made[0], made[1], made[-1]
    shuffle_gen = torch.Generator().manual_seed(seed + 1)
    bar = tqdm(
        total=schedule.steps,
        desc="DP-SGD (private)" if record is not None else "non-private benchmark fit",
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
            if progress and dist.main and ((epoch + 1) % every == 0 or steps == schedule.steps):
                spent = (
                    math.inf
                    if record is None
                    else (
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
                )
                shown = {"epoch": f"{epoch + 1}/{schedule.epochs}", "eps": f"{spent:.3g}"}
                if verbose:
                    shown["loss"] = f"{loss_sum / max(loss_n, 1):.3f}"
                bar.set_postfix(**shown)
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
