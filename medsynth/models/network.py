"""The generator network: a small causal transformer over patient token sequences.

Each input position adds four things: the embedding of the current token, the embedding of the
*slot the next token fills* (which attribute or condition comes next, or "event"), a projection
of the current visit time, and a fixed sinusoidal position.
With ``transition_steps`` above 0, the logit of each value token also gets a learned bias for
its channel and the step, in bins, from that channel's last value in the record (see
:class:`TransitionBias`): persistence of a patient's labs becomes a handful of parameters per
channel, which DP-SGD learns in few steps, instead of an interaction the transformer must find.
With ``prefix_bias`` on (the default), each value token's logit also gets a learned weight for every
attribute and condition token of the patient's prefix (summed over the prefix): how a
diagnosis or an age band shifts each channel's values, as a direct path to the output.
With ``smooth_bias`` on (the default), each channel's value logits also get a slope and a
curvature over its bins, linear in the prefix and in every channel's latest value (see
:class:`SmoothBias`): the linear relations between values, in a few weights per pair of channels.
Telling the network which slot comes next lets training present the prefix in random orders,
so that at sampling time any set of attributes can be fixed first and the rest drawn
conditionally (see ``docs/architecture.md``).
Every trainable layer is an ``nn.Linear``, ``nn.Embedding`` or ``nn.LayerNorm``, for which
Opacus computes per-sample gradients; attention itself has no parameters.
:meth:`PatientNetwork.step` decodes one position at a time with a key/value cache.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medsynth.encoding.vocabulary import ATTRIBUTE, CONDITION, GAP, VALUE
from medsynth.errors import DataError

__all__ = [
    "NetworkConfig",
    "PatientNetwork",
    "SmoothBias",
    "TransitionBias",
    "latest_values",
    "masked_log_probs",
]

# Parts of the network that were tried, measured and removed (docs/benchmarks.md): their
# switches, and every stored field that belonged to them.
_REMOVED_SWITCHES = ("value_memory", "pair_bias")
_REMOVED_FIELDS = (*_REMOVED_SWITCHES, "pair_scale")


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the transformer, and the output biases that read the patient's own tokens.

    ``transition_steps``: bias each value token's logit by a learned weight for its channel and
    its step in bins from the channel's last value, steps beyond this many bins sharing the end
    weights (0: off; default 2), times ``transition_scale``. ``prefix_bias`` (default on): bias
    each value token's logit by a learned weight for each token of the patient's prefix
    (attributes and conditions), times ``prefix_scale`` (see :meth:`PatientNetwork._add_prefix`).
    ``smooth_bias`` (default on): bias each value token's logit by a quadratic in its bin's
    rank whose two coefficients per channel are learned linear functions of the prefix tokens
    and of every channel's latest value, times ``smooth_scale`` (see :class:`SmoothBias`).
    ``visit_bias`` (default on): bias the logits of what comes next in the event stream (a
    value of channel ``c'``, a gap, the end of the record) by a learned weight for the pair
    (what came last, what comes next), times ``visit_scale`` (see :class:`VisitBias`).
    ``prefix_marginal`` (default on): one learned logit per attribute and condition token, zero
    at start, times ``marginal_scale``: the marginal of each prefix slot (a category's share,
    how often an attribute is missing, a diagnosis's prevalence) moves that many times faster
    under Adam than through the output layer's own bias, so the few noisy DP-SGD steps can
    carry it all the way from the uniform start to what the data says. ``gap_marginal``
    (default on): the same for each gap bin (the spacing of visits). ``prefix_pairs`` (default
    on): bias each prefix token's logit by a learned linear function of the prefix tokens drawn
    before it (a numeric attribute by its missing flag and the slope and curvature of its bin's
    rank, an absent diagnosis by nothing, every other token by its own weight), times
    ``prefix_scale``: how age, sex and each diagnosis shift the slots after them, in a few
    weights that collect every patient's gradient (see :meth:`PatientNetwork._pair_bias`).
    These parts are off, and their scales 1, when a stored config lacks them (artifacts made
    before they existed load unchanged). The defaults come from three-seed benchmark runs
    (``docs/benchmarks.md``).
    """

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128
    transition_steps: int = 2
    transition_scale: float = 10.0
    prefix_bias: bool = True
    prefix_scale: float = 10.0
    smooth_bias: bool = True
    smooth_scale: float = 10.0
    visit_bias: bool = True
    visit_scale: float = 10.0
    prefix_marginal: bool = True
    gap_marginal: bool = True
    marginal_scale: float = 10.0
    prefix_pairs: bool = True

    def to_dict(self) -> dict[str, int | bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> NetworkConfig:
        doc = _without_removed_parts(doc)
        unknown = sorted(set(doc) - set(cls.__dataclass_fields__))
        if unknown:
            raise DataError(f"network config has unknown field(s) {unknown}")
        flags = {}
        for name in (
            "prefix_bias",
            "smooth_bias",
            "visit_bias",
            "prefix_marginal",
            "gap_marginal",
            "prefix_pairs",
        ):
            flags[name] = doc.get(name, False)
            if not isinstance(flags[name], bool):
                raise DataError(
                    f"network config field {name!r} must be true or false, got {flags[name]!r}"
                )
        steps = doc.get("transition_steps", 0)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= 64:
            raise DataError(
                f"network config field 'transition_steps' must be an integer in 0..64, "
                f"got {steps!r}"
            )
        scales = {}
        for name in (
            "prefix_scale",
            "transition_scale",
            "smooth_scale",
            "visit_scale",
            "marginal_scale",
        ):
            scale = doc.get(name, 1.0)  # configs without it were trained at scale 1
            if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
                raise DataError(
                    f"network config field {name!r} must be a number > 0, got {scale!r}"
                )
            scales[name] = float(scale)
        special = {*flags, *scales, "transition_steps"}
        sizes = {k: int(v) for k, v in doc.items() if k not in special}
        # A stored config without the field predates the bias: off, whatever today's default.
        return cls(**sizes, **flags, **scales, transition_steps=steps)


def _without_removed_parts(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without the fields of removed parts, which must be off (or absent).

    Artifacts made before those parts were removed record them switched off (with their scale);
    such a config loads unchanged. One that switched a part on cannot be loaded faithfully.
    """
    for name in _REMOVED_SWITCHES:
        if name in doc and doc[name] is not False:
            raise DataError(
                f"network config field {name!r} is {doc[name]!r}, but this version of medsynth "
                f"has no {name} (it was removed); retrain the model with this version, or "
                f"generate from it with medsynth <= 0.1.0"
            )
    return {k: v for k, v in doc.items() if k not in _REMOVED_FIELDS}


def latest_values(
    tokens: torch.Tensor, token_channel: torch.Tensor, n_channels: int
) -> torch.Tensor:
    """``[b, t, n_channels]`` id of the latest value token of each channel at or before each
    position, -1 where the channel has not been seen yet.

    A forward fill by a running maximum of the positions where each channel was seen.
    """
    b, t = tokens.shape
    hit = token_channel[tokens][:, :, None] == torch.arange(n_channels, device=tokens.device)
    where = torch.arange(t, device=tokens.device)[None, :, None].expand(b, t, n_channels)
    last = torch.where(hit, where, torch.full_like(where, -1)).cummax(dim=1).values
    latest = tokens[:, :, None].expand(b, t, n_channels).gather(1, last.clamp(min=0))
    return torch.where(last >= 0, latest, torch.full_like(latest, -1))


class TransitionBias(nn.Module):
    """A learned logit bias for each value token: by channel and step from its last value.

    For value token ``v`` of channel ``c`` and bin ``k``, where ``c``'s latest value so far lies
    in bin ``j``, the bias is the weight of ``(c, clamp(k - j, -steps, steps))``; while ``c`` is
    unseen, the weight of ``(c, unseen)``. The weights are one ``nn.Embedding`` row per channel
    (Opacus computes its per-sample gradients), initialised at 0 so that a new network starts as if
    the bias were absent, and multiplied by ``scale``: a reparametrisation that gives them
    ``scale`` times the gradient, hence a larger share of each patient's clipped gradient norm
    under DP-SGD. Bins are ranks inside a channel (its public edges, finer near the normal
    range), so a step of one bin is a small clinical change there and a large one in the tails.
    """

    def __init__(
        self,
        token_channel: torch.Tensor,
        token_bin: torch.Tensor,
        value_first: int,
        n_channels: int,
        steps: int,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.steps, self.value_first, self.scale = int(steps), int(value_first), float(scale)
        self.register_buffer("token_channel", token_channel.clone(), persistent=False)
        self.register_buffer("token_bin", token_bin.clone(), persistent=False)
        self.n_channels = int(n_channels)
        # One row of 2 * steps + 2 weights per channel. The rows are looked up per patient
        # ([b, n_channels], cheap) and the biases gathered from that activation: an embedding
        # fed one index per (position, value token) would cost a sort of b * t * values indices
        # in its backward pass.
        self.weight = nn.Embedding(self.n_channels, 2 * self.steps + 2)
        nn.init.zeros_(self.weight.weight)

    def forward(self, latest: torch.Tensor) -> torch.Tensor:
        """``[..., n_value_tokens]`` biases from ``latest`` (``[..., n_channels]``, as
        :func:`latest_values`)."""
        chan = self.token_channel[self.value_first :]  # [Vv]
        target = self.token_bin[self.value_first :]
        last = latest[..., chan]  # [..., Vv]
        last_bin = self.token_bin[last.clamp(min=0)]
        step = (target - last_bin).clamp(-self.steps, self.steps) + self.steps
        step = torch.where(last >= 0, step, torch.full_like(step, 2 * self.steps + 1))
        b = latest.shape[0]
        ids = torch.arange(self.n_channels, device=latest.device).expand(b, -1).contiguous()
        rows = self.weight(ids).reshape(b, -1)  # [b, n_channels * (2 * steps + 2)]
        index = chan * (2 * self.steps + 2) + step  # [b, ..., Vv]
        bias = rows.gather(1, index.reshape(b, -1)).reshape(index.shape)
        return self.scale * bias


class SmoothBias(nn.Module):
    """A learned logit bias for each value token, smooth over its channel's bins.

    For value token ``v`` of channel ``c`` whose bin has rank ``r`` (:attr:`Vocabulary.token_rank`,
    in ``(0, 1)``), with ``x = 2 r - 1``, the bias is ``scale * (a_c x + b_c (x**2 -
    1/3))``: a slope and a curvature over the channel's bins. The coefficients ``a_c, b_c`` are a
    learned linear function (one bias-free ``nn.Linear``, zero at start) of the *sources*: a
    constant 1, the count of each prefix token (attributes and conditions), and for every
    channel ``d`` a 0/1 "seen" flag and ``x_d``, the centred rank of ``d``'s latest value so far
    (both 0 while ``d`` is unseen).

    So a channel's marginal is shaped by two numbers instead of one weight per bin, a diagnosis
    or an age band tilts every channel's distribution up or down, and a channel's value leans
    linearly on each earlier value: the linear-by-linear association of a log-linear model, four
    weights per pair of channels (two coefficients times seen and ``x``) whatever their number of
    bins. Tail bins that no patient reaches are pulled down together by the curvature instead of
    each carrying its own noisy weight. Everything is a function of the patient's own tokens and
    the public bins.
    """

    def __init__(
        self,
        token_channel: torch.Tensor,
        token_rank: torch.Tensor,
        value_first: int,
        n_channels: int,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.value_first = int(value_first)
        self.n_channels = int(n_channels)
        self.scale = float(scale)
        chan = token_channel[self.value_first :].clone()
        x = 2.0 * token_rank.float() - 1.0  # [V], 0 for tokens that are not values
        basis = torch.stack([x, x * x - 1.0 / 3.0], dim=-1)[self.value_first :]
        self.register_buffer("chan", chan, persistent=False)  # [Vv]
        self.register_buffer("basis", basis, persistent=False)  # [Vv, 2]
        self.register_buffer("token_x", x, persistent=False)  # [V]
        self.n_sources = 1 + self.value_first + 2 * self.n_channels
        self.linear = nn.Linear(self.n_sources, 2 * self.n_channels, bias=False)
        nn.init.zeros_(self.linear.weight)

    def prefix_counts(self, prefix: torch.Tensor | None, batch: int) -> torch.Tensor:
        """``[b, value_first]`` counts of the token ids of ``prefix`` (``[b, n_prefix]``), zeros
        when there is no prefix yet."""
        counts = torch.zeros(batch, self.value_first, device=self.basis.device)
        if prefix is not None and prefix.shape[-1]:
            counts.scatter_add_(
                1,
                prefix.clamp(max=self.value_first - 1),
                torch.ones_like(prefix, dtype=counts.dtype),
            )
        return counts

    def forward(self, prefix_counts: torch.Tensor, latest: torch.Tensor) -> torch.Tensor:
        """``[..., n_value_tokens]`` biases.

        Args:
            prefix_counts: ``[b, value_first]`` from :meth:`prefix_counts`.
            latest: ``[b, n_channels]`` or ``[b, t, n_channels]``, as :func:`latest_values`.
        """
        seen = (latest >= 0).to(prefix_counts.dtype)
        x = self.token_x[latest.clamp(min=0)] * seen
        pre = prefix_counts if latest.dim() == 2 else prefix_counts[:, None, :]
        pre = pre.expand(*latest.shape[:-1], -1)
        ones = torch.ones(*latest.shape[:-1], 1, device=latest.device, dtype=pre.dtype)
        sources = torch.cat([ones, pre, seen, x], dim=-1)
        coef = self.linear(sources).unflatten(-1, (self.n_channels, 2))  # [..., C, 2]
        per_token = coef.index_select(-2, self.chan)  # [..., Vv, 2]
        return self.scale * (per_token * self.basis).sum(dim=-1)


class VisitBias(nn.Module):
    """A learned logit bias for the shape of a visit: what follows what in the event stream.

    The *state* after a token is the channel of a value token, "a gap" (a visit was opened),
    or "the start" (BOS or a prefix token); the *class* of a candidate next token is its
    channel for a value token or "a gap" for every gap bin. The bias of a candidate is the
    weight of (state, class): ``(C + 2) * (C + 1)`` weights for ``C`` channels, one
    ``nn.Embedding`` row per state, zero at start, times ``scale`` (the reparametrisation of
    the other biases). Tokens of other kinds, the end of the record included, get no bias.

    Which labs come together at a visit, in which order, and when a record ends are the same
    few choices in every patient's record, so these weights collect the gradient of every
    visit of every patient: under DP-SGD they are learned from few noisy steps where the same
    regularity spread over the transformer's weights is not.
    """

    def __init__(
        self, token_channel: torch.Tensor, token_kind: torch.Tensor, n_channels: int, scale: float
    ) -> None:
        super().__init__()
        c = int(n_channels)
        values, gaps = token_kind == VALUE, token_kind == GAP
        state = torch.full_like(token_channel, c + 1)
        state[values] = token_channel[values]
        state[gaps] = c
        # The end of the record gets no weight here (its column stays zero): a record's length
        # is left to the network, which sees the whole record so far; a weight of its own for
        # the end moved with the noise and shortened records.
        klass = torch.full_like(token_channel, c + 1)  # the zero column: no bias
        klass[values] = token_channel[values]
        klass[gaps] = c
        self.register_buffer("state", state, persistent=False)  # [V]
        self.register_buffer("klass", klass, persistent=False)  # [V]
        self.scale = float(scale)
        # Zero at start, built without drawing from the random generator, so adding the bias
        # leaves every other layer's initialisation for a given seed as it was.
        self.weight = nn.Embedding(c + 2, c + 1, _weight=torch.zeros(c + 2, c + 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[..., V]`` biases of the token after each of ``tokens`` (``[b]`` or ``[b, t]``)."""
        rows = self.weight(self.state[tokens].contiguous())  # [..., C + 2]
        rows = torch.cat([rows, torch.zeros_like(rows[..., :1])], dim=-1)
        return self.scale * rows.index_select(-1, self.klass)


def _sinusoid(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and a GELU feed-forward layer."""

    def __init__(self, cfg: NetworkConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if cache is None:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            if cache:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
            att = F.scaled_dot_product_attention(q, k, v)
        b, h, t, dh = att.shape
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, h * dh))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class PatientNetwork(nn.Module):
    """Causal transformer giving next-token logits for patient sequences."""

    def __init__(
        self,
        *,
        vocab_size: int,
        n_slots: int,
        max_len: int,
        horizon_days: float,
        config: NetworkConfig,
        token_channel: torch.Tensor | None = None,
        token_bin: torch.Tensor | None = None,
        token_rank: torch.Tensor | None = None,
        value_first: int = 0,
        n_prefix: int = 0,
        token_kind: torch.Tensor | None = None,
        prefix_features: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if config.d_model % config.n_heads or config.d_model % 2:
            raise DataError(
                f"d_model {config.d_model} must be even and divisible by n_heads {config.n_heads}"
            )
        self.config = config
        self.horizon = float(horizon_days)
        self.n_prefix = int(n_prefix)
        self.tok = nn.Embedding(vocab_size, config.d_model)
        self.slot = nn.Embedding(n_slots, config.d_model)
        self.time = nn.Linear(2, config.d_model)
        if token_channel is not None:
            self.register_buffer("token_channel", token_channel.clone(), persistent=False)
            self.n_channels = int(token_channel.max()) + 1
        if config.transition_steps:
            if token_channel is None or token_bin is None or int(token_channel.max()) < 0:
                raise DataError("transition_steps needs a schema with at least one channel")
            self.transition = TransitionBias(
                token_channel,
                token_bin,
                value_first,
                self.n_channels,
                config.transition_steps,
                config.transition_scale,
            )
        if config.prefix_bias:
            if not 0 < value_first < vocab_size:
                raise DataError("prefix_bias needs a schema with at least one channel")
            # One row of value-token weights per token id below the value tokens (only the
            # attribute and condition tokens of the prefix are ever looked up), zero at start.
            self.value_first = int(value_first)
            self.prefix_weights = nn.Embedding(value_first, vocab_size - value_first)
            nn.init.zeros_(self.prefix_weights.weight)
        if config.smooth_bias:
            if token_channel is None or token_rank is None or int(token_channel.max()) < 0:
                raise DataError("smooth_bias needs a schema with at least one channel")
            self.smooth = SmoothBias(
                token_channel, token_rank, value_first, self.n_channels, config.smooth_scale
            )
        if config.visit_bias:
            if token_channel is None or token_kind is None or int(token_channel.max()) < 0:
                raise DataError("visit_bias needs a schema with at least one channel")
            self.visit = VisitBias(token_channel, token_kind, self.n_channels, config.visit_scale)
        if config.prefix_marginal or config.gap_marginal:
            if token_kind is None:
                raise DataError(
                    "prefix_marginal and gap_marginal need the vocabulary's token kinds"
                )
            marked = torch.zeros_like(token_kind, dtype=torch.bool)
            if config.prefix_marginal:
                marked |= (token_kind == ATTRIBUTE) | (token_kind == CONDITION)
            if config.gap_marginal:
                marked |= token_kind == GAP
            self.register_buffer("marginal_tokens", marked.float(), persistent=False)
            # zero at start, without drawing from the random generator (see VisitBias)
            self.marginal = nn.Embedding(1, vocab_size, _weight=torch.zeros(1, vocab_size))
        # A prefix of one slot has no pairs: nothing is built, nothing to learn.
        self.has_pairs = config.prefix_pairs and self.n_prefix > 1
        if self.has_pairs:
            if prefix_features is None or not 0 < prefix_features.shape[0] <= vocab_size:
                raise DataError("prefix_pairs needs the vocabulary's prefix features")
            self.prefix_end = int(prefix_features.shape[0])  # the prefix tokens lie below it
            self.register_buffer("pair_rows", prefix_features.float().clone(), persistent=False)
            # zero at start; built inside fork_rng so that every other layer's initialisation
            # for a given seed stays as it was (see VisitBias)
            with torch.random.fork_rng(devices=[]):
                self.pairs = nn.Linear(prefix_features.shape[1], self.prefix_end, bias=False)
            nn.init.zeros_(self.pairs.weight)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, vocab_size)
        self.register_buffer("pos", _sinusoid(max_len, config.d_model), persistent=False)

    def _embed(
        self, tokens: torch.Tensor, slots: torch.Tensor, times: torch.Tensor, start: int
    ) -> torch.Tensor:
        frac = (times / self.horizon).clamp(0.0, 1.0)
        feats = torch.stack([frac, frac.sqrt()], dim=-1)
        pos = self.pos[start : start + tokens.shape[1]]
        return self.tok(tokens) + self.slot(slots) + self.time(feats) + pos

    def forward(
        self, tokens: torch.Tensor, slots: torch.Tensor, times: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``[b, t, vocab]`` for the token after each position.

        Args:
            tokens: ``[b, t]`` token ids.
            slots: ``[b, t]`` slot ids of the *next* token at each position.
            times: ``[b, t]`` visit time in days after each token.
        """
        x = self._embed(tokens, slots, times, 0)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if self.config.visit_bias:
            logits = logits + self.visit(tokens)
        if self.config.prefix_marginal or self.config.gap_marginal:
            logits = logits + self._marginal(tokens.shape[0])[:, None, :]
        if self.has_pairs:
            logits = self._add_pairs(logits, tokens[:, 1 : self.n_prefix])
        if self.config.transition_steps or self.config.smooth_bias:
            latest = latest_values(tokens, self.token_channel, self.n_channels)
        if self.config.transition_steps:
            logits = self._add_transition(logits, latest)
        if self.config.prefix_bias:
            # Value tokens come after the whole prefix (inside it the grammar masks them), so
            # every position that may hold a value sees the complete prefix.
            logits = self._add_prefix(logits, tokens[:, 1 : 1 + self.n_prefix])
        if self.config.smooth_bias:
            counts = self.smooth.prefix_counts(tokens[:, 1 : 1 + self.n_prefix], tokens.shape[0])
            logits = self._add_smooth(logits, counts, latest)
        return logits

    def _pair_bias(self, drawn: torch.Tensor) -> torch.Tensor:
        """``[b, k, prefix_end]``: at each of the ``k`` positions of ``drawn`` (``[b, k]``
        prefix token ids), the bias of the next prefix slot's tokens: a learned linear map,
        times ``prefix_scale``, of the summed :attr:`Vocabulary.prefix_features` of that token
        and every one before it. A numeric attribute enters by its missing flag and the slope
        and curvature of its bin's rank (three weights per target token instead of one per
        bin), an absent diagnosis by nothing, every other prefix token by its own weight."""
        features = self.pair_rows[drawn].cumsum(dim=1)  # [b, k, F]
        return self.config.prefix_scale * self.pairs(features)

    def _add_pairs(self, logits: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
        """Add :meth:`_pair_bias` to the prefix-token logits at positions ``1 .. k``: position
        ``i`` (after the ``i``-th prefix token) predicts prefix slot ``i + 1``. Later positions
        predict events, where the grammar masks every prefix token."""
        end = self.prefix_end
        bias = self._pair_bias(drawn)
        after = logits.shape[1] - 1 - bias.shape[1]
        bias = F.pad(bias, (0, 0, 1, after))  # zero at BOS and from the events on
        return torch.cat([logits[..., :end] + bias, logits[..., end:]], dim=-1)

    def _marginal(self, batch: int) -> torch.Tensor:
        """``[b, V]``: the scaled marginal logits of the prefix and gap tokens (zero for every
        other token)."""
        # [b, 1] indices: Opacus' per-sample gradients need the batch dimension first
        index = torch.zeros(batch, 1, dtype=torch.long, device=self.marginal_tokens.device)
        weights = self.marginal(index)[:, 0]
        return self.config.marginal_scale * weights * self.marginal_tokens

    def _add_smooth(
        self, logits: torch.Tensor, prefix_counts: torch.Tensor, latest: torch.Tensor
    ) -> torch.Tensor:
        first = self.smooth.value_first
        bias = self.smooth(prefix_counts, latest)
        return torch.cat([logits[..., :first], logits[..., first:] + bias], dim=-1)

    def _add_prefix(self, logits: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Add the summed value-token weights of ``prefix`` (``[b, n_prefix]`` token ids).

        The weights enter multiplied by ``prefix_scale``: a reparametrisation that gives them
        ``prefix_scale`` times the gradient, hence a larger share of each patient's clipped
        gradient norm under DP-SGD, and with Adam a step that many times larger in logit units.
        """
        # contiguous: Opacus' ghost norm of nn.Embedding views its input
        weights = self.prefix_weights(prefix.contiguous()).sum(dim=1)  # [b, n_values]
        bias = self.config.prefix_scale * weights
        if logits.dim() == 3:
            bias = bias[:, None, :]
        first = self.value_first
        return torch.cat([logits[..., :first], logits[..., first:] + bias], dim=-1)

    def _add_transition(self, logits: torch.Tensor, latest: torch.Tensor) -> torch.Tensor:
        first = self.transition.value_first
        bias = self.transition(latest)
        return torch.cat([logits[..., :first], logits[..., first:] + bias], dim=-1)

    @torch.no_grad()
    def step(
        self,
        tokens: torch.Tensor,
        slots: torch.Tensor,
        times: torch.Tensor,
        position: int,
        cache: list[list[torch.Tensor]],
        latest: torch.Tensor | None = None,
        prefix: torch.Tensor | None = None,
        drawn: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[b, vocab]`` after feeding one more position (``[b]`` each), cached.

        ``latest`` is ``[b, n_channels]``, :func:`latest_values` at this position (read only
        with ``transition_steps`` or ``smooth_bias``). ``prefix`` is ``[b, n_prefix]``, the
        patient's prefix tokens (read only with ``prefix_bias`` and ``smooth_bias``, and only once
        the prefix is complete: before that, value tokens are masked anyway). ``drawn`` is
        ``[b, k]``, the prefix tokens drawn so far while the prefix is being filled (read only
        with ``prefix_pairs``; None or empty before the first).
        """
        if not cache:
            cache.extend([] for _ in self.blocks)
        x = self._embed(tokens[:, None], slots[:, None], times[:, None], position)
        for block, kv in zip(self.blocks, cache, strict=True):
            x = block(x, kv)
        logits = self.head(self.ln_f(x))[:, 0]
        if self.config.visit_bias:
            logits = logits + self.visit(tokens)
        if self.config.prefix_marginal or self.config.gap_marginal:
            logits = logits + self._marginal(tokens.shape[0])
        if self.has_pairs and drawn is not None and drawn.shape[-1]:
            end = self.prefix_end
            bias = self._pair_bias(drawn)[:, -1]
            logits = torch.cat([logits[:, :end] + bias, logits[:, end:]], dim=-1)
        if self.config.transition_steps:
            if latest is None:
                raise DataError("this network reads each channel's last value; pass `latest`")
            logits = self._add_transition(logits, latest)
        if self.config.prefix_bias and prefix is not None:
            logits = self._add_prefix(logits, prefix)
        if self.config.smooth_bias:
            if latest is None:
                raise DataError("this network reads each channel's last value; pass `latest`")
            pre = self.smooth.prefix_counts(prefix, logits.shape[0])
            logits = self._add_smooth(logits, pre, latest)
        return logits


def masked_log_probs(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the allowed tokens only (disallowed get -inf)."""
    return torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
