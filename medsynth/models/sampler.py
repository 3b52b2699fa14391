"""Batched ancestral sampling of patient sequences under the grammar and the schema limits.

The prefix is filled slot by slot: conditioned slots first (restricted to the allowed tokens),
then the others in schema order, each drawn from the network given everything before it. Then
visits are drawn until ``EOS``: the event grammar of :attr:`Vocabulary.follow_mask`, the
per-channel and total event limits and the time horizon mask what may come next (a measurement
group starts only when the whole group fits the limits; ``EOS`` waits for the schema's
``min_events_total``), and each gap
token's exact length is drawn inside its bin at once, so the network sees real visit times.
The latest value token of each channel (what the transition and smooth biases read) is kept up
to date token by token, equal to what training computes from the whole sequence
(:func:`~medsynth.models.network.latest_values`).
Randomness comes from one CPU ``torch.Generator`` and one numpy ``Generator`` seeded together,
so a seed gives the same patients on the same device.
"""

from __future__ import annotations

import numpy as np
import torch

from medsynth.encoding.decode import SampledPatients
from medsynth.encoding.vocabulary import BOS, EOS, GAP, VALUE, Vocabulary
from medsynth.models.conditions import ConditionPlan
from medsynth.models.network import PatientNetwork

__all__ = ["sample_batch"]


def _draw(logits: torch.Tensor, allowed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row by the Gumbel-max trick, noise drawn on the CPU generator."""
    u = torch.rand(logits.shape, generator=generator, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-300))).to(logits.device, logits.dtype)
    scores = (logits.float() + gumbel.float()).masked_fill(~allowed, float("-inf"))
    return scores.argmax(dim=-1)


def _prefix_order(vocab: Vocabulary, plan: ConditionPlan) -> list[int]:
    fixed = list(plan.slots)
    return fixed + [s for s in range(1, vocab.n_prefix + 1) if s not in plan.allowed]


@torch.no_grad()
def sample_batch(
    net: PatientNetwork,
    vocab: Vocabulary,
    n: int,
    *,
    plan: ConditionPlan,
    generator: torch.Generator,
    rng: np.random.Generator,
    device: torch.device,
) -> SampledPatients:
    """Draw ``n`` patients' token sequences (raw, before decoding)."""
    net.eval()
    v = vocab.size
    slot_masks = torch.as_tensor(vocab.slot_masks, device=device)
    follow = torch.as_tensor(vocab.follow_mask, device=device)
    cache: list[list[torch.Tensor]] = []
    token = torch.full((n,), BOS, dtype=torch.long, device=device)
    zero_t = torch.zeros(n, dtype=torch.float32, device=device)
    prefix = np.zeros((n, vocab.n_prefix), dtype=np.int64)
    latest = LatestValues(vocab, n, device)  # prefix tokens carry no value: none seen yet
    position = 0
    # Conditions present so far per row: once the schema's max_conditions is reached, the
    # remaining free condition slots may only draw "absent" (the first token of a slot).
    # Inclusion conditions (never absent) are counted from the start, so optional ones stop
    # in time to leave them room.
    max_conditions = vocab.schema.limits.max_conditions
    inclusion = {c.code for c in vocab.schema.conditions if c.inclusion}
    present = torch.full((n,), len(inclusion), dtype=torch.long, device=device)
    drawn: list[torch.Tensor] = []  # prefix tokens in the order drawn (the pair bias reads them)
    for slot in _prefix_order(vocab, plan):
        info = vocab.slots[slot - 1]
        slots = torch.full((n,), slot, dtype=torch.long, device=device)
        so_far = torch.stack(drawn, dim=1) if drawn else None
        logits = net.step(token, slots, zero_t, position, cache, latest.ids(), drawn=so_far)
        allowed = slot_masks[slot].clone()
        if slot in plan.allowed:
            keep = torch.zeros(v, dtype=torch.bool, device=device)
            keep[info.first + torch.as_tensor(plan.allowed[slot])] = True
            allowed &= keep
        rows = allowed.expand(n, -1)
        optional = info.kind == "condition" and info.name not in inclusion
        if optional and max_conditions is not None and slot not in plan.allowed:
            absent_only = torch.zeros(v, dtype=torch.bool, device=device)
            absent_only[info.first] = True
            rows = torch.where((present >= max_conditions)[:, None], allowed & absent_only, rows)
        token = _draw(logits, rows, generator)
        if optional:
            present += (token != info.first).long()
        prefix[:, slot - 1] = token.cpu().numpy()
        drawn.append(token)
        position += 1
    return _sample_events(
        net, vocab, token, position, cache, latest, prefix, follow, slot_masks, generator, rng
    )


class LatestValues:
    """The latest value token of every channel per row, updated one drawn token at a time."""

    def __init__(self, vocab: Vocabulary, n: int, device: torch.device) -> None:
        self.channel = torch.as_tensor(vocab.token_channel, device=device)
        n_ch = len(vocab.schema.channels)
        self.latest = torch.full((n, n_ch), -1, dtype=torch.long, device=device)

    def update(self, token: torch.Tensor) -> None:
        """Record the value tokens among ``token`` (``[n]``, one per row)."""
        rows = torch.nonzero(self.channel[token] >= 0)[:, 0]
        self.latest[rows, self.channel[token[rows]]] = token[rows]

    def ids(self) -> torch.Tensor:
        """``[n, n_channels]``: the latest value token of each channel, -1 if unseen (the
        layout of :func:`~medsynth.models.network.latest_values` at one position)."""
        return self.latest.clone()


def _sample_events(
    net, vocab, token, position, cache, latest, prefix, follow, slot_masks, generator, rng
) -> SampledPatients:
    device = token.device
    n = token.shape[0]
    limits, schema = vocab.schema.limits, vocab.schema
    horizon = float(schema.time.horizon_days)
    kind = torch.as_tensor(vocab.token_kind, device=device)
    channel = torch.as_tensor(vocab.token_channel, device=device)
    is_value, is_gap = kind == VALUE, kind == GAP
    gap_lo = torch.as_tensor(vocab.gap_edges[:-1], device=device, dtype=torch.float64)
    n_ch = len(schema.channels)
    need = torch.as_tensor(vocab.channel_need, device=device)
    need_t, need_size = need.T.float().contiguous(), need.sum(dim=1)
    entry = torch.as_tensor(vocab.channel_entry, device=device)
    max_total, min_total = limits.max_events_total, limits.min_events_total
    event_slot = torch.full((n,), vocab.event_slot, dtype=torch.long, device=device)
    base = slot_masks[vocab.event_slot]
    counts = torch.zeros((n, n_ch), dtype=torch.long, device=device)
    total = torch.zeros(n, dtype=torch.long, device=device)
    now = np.zeros(n)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    rows, times, chans, bins = [], [], [], []
    prefix_t = torch.as_tensor(prefix, device=device)  # complete: read by prefix_bias networks
    eos_only = torch.zeros(vocab.size, dtype=torch.bool, device=device)
    eos_only[EOS] = True
    while position < vocab.max_len - 1 and not bool(done.all()):
        now_t = torch.as_tensor(now, dtype=torch.float32, device=device)
        logits = net.step(token, event_slot, now_t, position, cache, latest.ids(), prefix_t)
        allowed = follow[token] & base
        # A channel may start only if everything it commits to (its whole measurement group)
        # fits the per-channel and total limits, so no record ends inside a group; a channel
        # inside a group was paid for when the group began.
        full = (counts >= limits.max_events_per_channel).float()
        cannot = ((full @ need_t) > 0) | (total[:, None] + need_size[None, :] > max_total)
        allowed &= ~(cannot[:, channel.clamp(min=0)] & is_value)
        no_room = (cannot | ~entry[None, :]).all(dim=1)
        allowed &= ~(is_gap & no_room[:, None])
        remaining = torch.as_tensor(horizon - now, device=device)
        late = torch.zeros_like(allowed)
        late[:, is_gap] = gap_lo[None, :] >= remaining[:, None]
        allowed &= ~late
        # A record shorter than the schema's min_events_total may not end yet (unless nothing
        # else is possible, below).
        allowed[:, EOS] &= total >= min_total
        stuck = ~allowed.any(dim=1) | done
        allowed = torch.where(stuck[:, None], eos_only, allowed)
        token = _draw(logits, allowed, generator)
        latest.update(token)
        done = done | (token == EOS)
        tok = token.cpu().numpy()
        live = ~done.cpu().numpy()
        k = vocab.token_kind[tok]
        gap_rows = np.flatnonzero(live & (k == GAP))
        if len(gap_rows):
            # Uniform inside the bin, truncated to the time left before the horizon (bins
            # starting past it are masked above), so timelines never pile up at the horizon.
            gap_bins = vocab.token_bin[tok[gap_rows]]
            lo = vocab.gap_edges[gap_bins]
            hi = np.minimum(vocab.gap_edges[gap_bins + 1], horizon - now[gap_rows])
            gaps = lo + np.maximum(hi - lo, 0.0) * rng.random(len(gap_rows))
            now[gap_rows] = np.minimum(now[gap_rows] + gaps, horizon)
        val_rows = np.flatnonzero(live & (k == VALUE))
        if len(val_rows):
            c = vocab.token_channel[tok[val_rows]]
            rows.append(val_rows)
            times.append(now[val_rows].copy())
            chans.append(c)
            bins.append(vocab.token_bin[tok[val_rows]])
            vr = torch.as_tensor(val_rows, device=device)
            counts[vr, torch.as_tensor(c, device=device)] += 1
            total[vr] += 1
        position += 1

    def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return SampledPatients(
        prefix=prefix,
        event_row=cat(rows, np.int64),
        event_time=cat(times, np.float64),
        event_channel=cat(chans, np.int64),
        event_bin=cat(bins, np.int64),
    )
