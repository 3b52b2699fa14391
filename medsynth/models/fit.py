"""Loss, batches and non-private fitting for :class:`PatientNetwork` on encoded cohorts.

Each token's probability is normalised over the tokens the grammar allows at its position
(the next slot's tokens in the prefix; the event grammar of :attr:`Vocabulary.follow_mask`
after it). DP fine-tuning uses one loss per patient, the mean negative log-likelihood of its
tokens (:func:`patient_losses`, averaged over a Poisson batch); non-private pretraining on
simulated (public) patients weighs every token of the batch equally; membership audits read the
summed log-likelihood (:func:`sequence_log_likelihood`).

The prefix is shown in a random order for a share of the training examples (``shuffle``), so
the network learns every attribute given any subset of the others; this is what makes
conditional sampling draw the unfixed attributes from their conditional distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from medsynth.encoding.encode import EncodedCohort
from medsynth.encoding.vocabulary import EOS, PAD, Vocabulary
from medsynth.models.network import PatientNetwork, masked_log_probs

__all__ = [
    "Batch",
    "GrammarTables",
    "fit_nonprivate",
    "make_batch",
    "patient_losses",
    "sequence_log_likelihood",
]


@dataclass(frozen=True, eq=False)
class GrammarTables:
    """The vocabulary's slot and grammar masks as tensors on one device."""

    token_slot: torch.Tensor  # [V] long
    slot_masks: torch.Tensor  # [S+1, V] bool, row 0 all True (padding)
    follow: torch.Tensor  # [V, V] bool, PAD and EOS rows all True (padding)
    n_prefix: int
    token_channel: torch.Tensor  # [V] long, -1 for tokens that are not values
    n_channels: int
    value_first: int

    @classmethod
    def build(cls, vocab: Vocabulary, device: torch.device | str = "cpu") -> GrammarTables:
        slot_masks = vocab.slot_masks.copy()
        slot_masks[0, :] = True
        follow = vocab.follow_mask.copy()
        follow[PAD, :] = True
        follow[EOS, :] = True
        return cls(
            token_slot=torch.as_tensor(vocab.token_slot, device=device),
            slot_masks=torch.as_tensor(slot_masks, device=device),
            follow=torch.as_tensor(follow, device=device),
            n_prefix=vocab.n_prefix,
            token_channel=torch.as_tensor(vocab.token_channel, device=device),
            n_channels=len(vocab.schema.channels),
            value_first=vocab.value_start,
        )


@dataclass(frozen=True, eq=False)
class Batch:
    """Network inputs and targets for a batch of sequences (trimmed to its longest)."""

    inputs: torch.Tensor
    slots: torch.Tensor
    times: torch.Tensor
    targets: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])


def shuffle_prefix(
    tokens: torch.Tensor, n_prefix: int, share: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Tokens with the prefix of a random ``share`` of rows put in a random order."""
    if share <= 0.0 or n_prefix < 2 or tokens.shape[0] == 0:
        return tokens
    b = tokens.shape[0]
    keys = torch.rand(b, n_prefix, generator=generator).to(tokens.device)
    chosen = torch.rand(b, generator=generator).to(tokens.device) < share
    identity = torch.arange(n_prefix, device=tokens.device, dtype=keys.dtype).expand(b, -1)
    keys = torch.where(chosen[:, None], keys, identity)
    order = keys.argsort(dim=1)
    out = tokens.clone()
    out[:, 1 : 1 + n_prefix] = tokens[:, 1 : 1 + n_prefix].gather(1, order)
    return out


def make_batch(
    tables: GrammarTables,
    tokens: torch.Tensor,
    times: torch.Tensor,
    *,
    shuffle: float = 0.0,
    generator: torch.Generator | None = None,
) -> Batch:
    """Inputs, next-slot ids, times and targets from padded token rows."""
    tokens = tokens.long()
    device = tables.token_slot.device
    tokens, times = tokens.to(device), times.to(device=device, dtype=torch.float32)
    if tokens.shape[0]:
        length = int((tokens != PAD).sum(dim=1).max().item())
    else:
        length = 2 + tables.n_prefix
    tokens = shuffle_prefix(tokens[:, :length], tables.n_prefix, shuffle, generator)
    targets = tokens[:, 1:]
    inputs = tokens[:, :-1].contiguous()  # Opacus' ghost norm of nn.Embedding views it
    return Batch(
        inputs=inputs,
        slots=tables.token_slot[targets],
        times=times[:, : length - 1],
        targets=targets,
    )


def token_log_probs(net: torch.nn.Module, tables: GrammarTables, batch: Batch) -> torch.Tensor:
    """``[b, t]`` log-probabilities of the targets (0 at padding).

    The network sees the padded ``[b, t]`` batch (per-sample gradients need the batch
    dimension first), but the grammar mask and the softmax over the vocabulary, the costliest
    element-wise work, run on the real (non-padding) positions only.
    """
    logits = net(batch.inputs, batch.slots, batch.times)
    valid = batch.targets != PAD
    allowed = tables.slot_masks[batch.slots[valid]] & tables.follow[batch.inputs[valid]]
    targets = batch.targets[valid]
    # A record the grammar would not generate (an attribute the schema says is never missing,
    # missing in the source) still gets a finite loss: its own token joins the normaliser.
    allowed[torch.arange(len(targets), device=targets.device), targets] = True
    logp = masked_log_probs(logits[valid], allowed).gather(-1, targets[:, None])[:, 0]
    out = torch.zeros(batch.targets.shape, dtype=logp.dtype, device=logp.device)
    return out.masked_scatter(valid, logp)


def patient_losses(net: torch.nn.Module, tables: GrammarTables, batch: Batch) -> torch.Tensor:
    """``[b]`` mean negative log-likelihood per token of each patient."""
    logp = token_log_probs(net, tables, batch)
    n_tokens = (batch.targets != PAD).sum(dim=1).clamp(min=1)
    return -logp.sum(dim=1) / n_tokens


def fit_nonprivate(
    net: PatientNetwork,
    tables: GrammarTables,
    encoded: EncodedCohort,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    shuffle: float,
    random_state: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> float:
    """Plain Adam with cosine learning-rate decay on shuffled minibatches; public data only.

    Returns:
        The mean loss of the last epoch.
    """
    generator = torch.Generator().manual_seed(random_state)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    total = max(1, epochs * -(-encoded.n // batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    )
    tokens, times = torch.from_numpy(encoded.tokens), torch.from_numpy(encoded.times)
    net.train()
    last = float("nan")
    for epoch in range(epochs):
        order = torch.randperm(encoded.n, generator=generator)
        loss_sum, count = 0.0, 0
        for start in range(0, encoded.n, batch_size):
            idx = order[start : start + batch_size]
            batch = make_batch(
                tables, tokens[idx], times[idx], shuffle=shuffle, generator=generator
            )
            logp = token_log_probs(net, tables, batch)
            # Public data: every token weighs the same (long records count by their length).
            loss = -logp.sum() / (batch.targets != PAD).sum().clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.item()) * batch.size
            count += batch.size
        last = loss_sum / max(count, 1)
        if on_epoch is not None:
            on_epoch(epoch, last)
    return last


@torch.no_grad()
def sequence_log_likelihood(
    net: torch.nn.Module, tables: GrammarTables, encoded: EncodedCohort, *, batch_size: int = 256
) -> np.ndarray:
    """Log-likelihood (natural log, summed over tokens) of every encoded patient, in order."""
    net.eval()
    out = np.zeros(encoded.n, dtype=np.float64)
    tokens, times = torch.from_numpy(encoded.tokens), torch.from_numpy(encoded.times)
    for start in range(0, encoded.n, batch_size):
        batch = make_batch(
            tables, tokens[start : start + batch_size], times[start : start + batch_size]
        )
        logp = token_log_probs(net, tables, batch).sum(dim=1)
        out[start : start + batch.size] = logp.double().cpu().numpy()
    return out
