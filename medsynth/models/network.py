"""The generator network: a small causal transformer over patient token sequences.

Each input position adds four things: the embedding of the current token, the embedding of the
*slot the next token fills* (which attribute or condition comes next, or "event"), a projection
of the current visit time, and a fixed sinusoidal position. Telling the network which slot comes
next lets training present the prefix in random orders, so that at sampling time any set of
attributes can be fixed first and the rest drawn conditionally (see ``docs/architecture.md``).
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

from medsynth.errors import DataError

__all__ = ["NetworkConfig", "PatientNetwork", "masked_log_probs"]


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the transformer."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 128

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> NetworkConfig:
        unknown = sorted(set(doc) - set(cls.__dataclass_fields__))
        if unknown:
            raise DataError(f"network config has unknown field(s) {unknown}")
        return cls(**{k: int(v) for k, v in doc.items()})


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
    ) -> None:
        super().__init__()
        if config.d_model % config.n_heads or config.d_model % 2:
            raise DataError(
                f"d_model {config.d_model} must be even and divisible by n_heads {config.n_heads}"
            )
        self.config = config
        self.horizon = float(horizon_days)
        self.tok = nn.Embedding(vocab_size, config.d_model)
        self.slot = nn.Embedding(n_slots, config.d_model)
        self.time = nn.Linear(2, config.d_model)
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
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def step(
        self,
        tokens: torch.Tensor,
        slots: torch.Tensor,
        times: torch.Tensor,
        position: int,
        cache: list[list[torch.Tensor]],
    ) -> torch.Tensor:
        """Logits ``[b, vocab]`` after feeding one more position (``[b]`` each), cached."""
        if not cache:
            cache.extend([] for _ in self.blocks)
        x = self._embed(tokens[:, None], slots[:, None], times[:, None], position)
        for block, kv in zip(self.blocks, cache, strict=True):
            x = block(x, kv)
        return self.head(self.ln_f(x))[:, 0]


def masked_log_probs(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the allowed tokens only (disallowed get -inf)."""
    return torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
