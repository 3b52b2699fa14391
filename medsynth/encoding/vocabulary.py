"""The token vocabulary of a dataset schema: every token a patient sequence can hold.

A patient is the sequence ``BOS, prefix, events, EOS``. The prefix has one *slot* per static
attribute and one per schema condition, each filled by exactly one token of that slot (a
category, a numeric or date bin, "missing"; for a condition "absent", "present at time zero"
or "onset in bin k"). The event part is a run of visits: a time-gap token opens a visit, then
one channel-value token (channel and value bin in one token) per observation, channels in schema
order, the channels of a schema measurement group always all together. The vocabulary is built
from the schema and :class:`EncodingConfig` alone; it is never fitted, so two cohorts under one
schema always share it byte for byte (see :meth:`to_bytes`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from medsynth.encoding.bins import equal_edges, gap_edges, value_edges
from medsynth.errors import DataError
from medsynth.schema import Attribute, Channel, DatasetSchema

__all__ = ["EncodingConfig", "Slot", "Vocabulary", "build_vocabulary", "date_to_days"]

PAD, BOS, EOS = 0, 1, 2
# Token kinds (Vocabulary.token_kind).
SPECIAL, ATTRIBUTE, CONDITION, GAP, VALUE, END = range(6)
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class EncodingConfig:
    """Bin counts of the encoding; with the schema they fix the vocabulary."""

    value_core_bins: int = 14
    value_low_bins: int = 3
    value_high_bins: int = 7
    attribute_bins: int = 16
    gap_bins: int = 48
    onset_bins: int = 8
    # A channel without a declared scale is binned in log space when min > 0 and
    # max / min >= this ratio (two orders of magnitude); 0: never (encodings stored before
    # the field, whose bins stay what they were).
    log_scale_ratio: float = 100.0

    def to_dict(self) -> dict[str, int | float]:
        """The fields as JSON; ``log_scale_ratio`` only when on, so an encoding stored before
        the field keeps its identity (its vocabulary hash) when read back."""
        doc: dict[str, int | float] = asdict(self)
        if not self.log_scale_ratio:
            doc.pop("log_scale_ratio")
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EncodingConfig:
        unknown = sorted(set(doc) - set(cls.__dataclass_fields__))
        if unknown:
            raise DataError(f"encoding config has unknown field(s) {unknown}")
        fields = {k: int(v) for k, v in doc.items() if k != "log_scale_ratio"}
        return cls(**fields, log_scale_ratio=float(doc.get("log_scale_ratio", 0.0)))


def channel_is_log(channel: Channel, config: EncodingConfig) -> bool:
    """Is ``channel`` binned in log space? Its declared ``scale``; else, from its public bounds
    alone, when ``min > 0`` and ``max / min >= config.log_scale_ratio``."""
    if channel.scale is not None:
        return channel.scale == "log"
    ratio = config.log_scale_ratio
    return ratio > 0 and channel.min > 0 and channel.max / channel.min >= ratio


@dataclass(frozen=True)
class Slot:
    """A prefix position (one attribute or condition) or the event part, with its tokens."""

    kind: str  # "attribute", "condition" or "event"
    name: str
    first: int  # first token id (attribute/condition slots hold a contiguous range)
    size: int


def date_to_days(values: Any) -> np.ndarray:
    """Days since 1970-01-01 of datetime-like values (NaN where missing)."""
    import pandas as pd

    ts = pd.to_datetime(pd.Series(values), errors="coerce")
    days = (ts - pd.Timestamp(_EPOCH)) / pd.Timedelta(days=1)
    return days.to_numpy(dtype=np.float64, na_value=np.nan)


def _attribute_edges(attr: Attribute, n_bins: int) -> np.ndarray | None:
    if attr.type == "numeric":
        return equal_edges(float(attr.min), float(attr.max), n_bins, attr.decimals)
    if attr.type == "date":
        lo, hi = attr.date_bounds()
        return equal_edges((lo - _EPOCH).days, (hi - _EPOCH).days, n_bins, 0)
    return None


def _attribute_labels(attr: Attribute, edges: np.ndarray | None) -> list[str]:
    if attr.type == "categorical":
        return list(attr.values)
    if attr.type == "boolean":
        return ["false", "true"]
    assert edges is not None
    return [f"[{edges[i]:g},{edges[i + 1]:g})" for i in range(len(edges) - 1)]


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Tokens, slots and bin edges derived from one schema; see the module docstring."""

    schema: DatasetSchema
    config: EncodingConfig
    tokens: tuple[str, ...]
    slots: tuple[Slot, ...]
    attribute_edges: dict[str, np.ndarray] = field(repr=False)
    value_edges: dict[str, np.ndarray] = field(repr=False)
    gap_edges: np.ndarray = field(repr=False)
    onset_edges: np.ndarray = field(repr=False)
    gap_first: int = 0
    value_first: dict[str, int] = field(default_factory=dict, repr=False)

    # -- sizes and positions --------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def n_prefix(self) -> int:
        """Attribute and condition slots (the prefix length)."""
        return len(self.slots) - 1

    @property
    def event_slot(self) -> int:
        """Slot id of the event part (slot ids start at 1; 0 means "no slot")."""
        return len(self.slots)

    @property
    def max_len(self) -> int:
        """Longest possible sequence: BOS, prefix, a gap and a value per event, EOS."""
        return 2 + self.n_prefix + 2 * self.schema.limits.max_events_total

    @property
    def n_gaps(self) -> int:
        return len(self.gap_edges) - 1

    @property
    def value_start(self) -> int:
        """Id of the first value token; value tokens run to the end of the vocabulary."""
        return self.gap_first + self.n_gaps

    # -- per-token tables -------------------------------------------------------------------
    @cached_property
    def prefix_features(self) -> np.ndarray:
        """``[gap_first, F]`` features of the prefix tokens (the ids before the first gap token),
        what the prefix-pair bias reads.

        A numeric attribute's slot has three columns: "missing", and the centred rank ``x`` of
        its bin (``(k + 1/2) / n`` mapped to ``(-1, 1)``) with ``x**2 - 1/3``; its bins are
        ordered, so a slope and a curvature stand for one weight per bin. A categorical
        attribute has one column per token (one-hot); a condition one per token but "absent",
        whose row is zero: most patients lack most diagnoses, and a slot drawn after many
        absent ones (the prefix order is shuffled for half the patients) must not read a
        different sum than one drawn before them. The rows of the special tokens are zero.
        """
        columns: list[np.ndarray] = []
        for slot in self.slots:
            if slot.kind == "event":
                continue
            if slot.kind == "attribute" and slot.name in self.attribute_edges:
                n_bins = slot.size - 1
                x = 2.0 * (np.arange(n_bins) + 0.5) / n_bins - 1.0
                block = np.zeros((self.gap_first, 3))
                block[slot.first, 0] = 1.0  # <missing>
                block[slot.first + 1 : slot.first + slot.size, 1] = x
                block[slot.first + 1 : slot.first + slot.size, 2] = x * x - 1.0 / 3.0
            elif slot.kind == "condition":  # "absent" (the slot's first token) is the reference
                block = np.zeros((self.gap_first, slot.size - 1))
                block[slot.first + 1 + np.arange(slot.size - 1), np.arange(slot.size - 1)] = 1.0
            else:
                block = np.zeros((self.gap_first, slot.size))
                block[slot.first + np.arange(slot.size), np.arange(slot.size)] = 1.0
            columns.append(block)
        if not columns:
            return np.zeros((self.gap_first, 0), dtype=np.float32)
        return np.concatenate(columns, axis=1).astype(np.float32)

    @cached_property
    def token_slot(self) -> np.ndarray:
        """Slot id of every token (0 for PAD and BOS; the event slot for EOS, gaps, values)."""
        out = np.zeros(self.size, dtype=np.int64)
        for sid, slot in enumerate(self.slots, start=1):
            if slot.kind != "event":
                out[slot.first : slot.first + slot.size] = sid
        out[EOS] = self.event_slot
        out[self.gap_first :] = self.event_slot
        return out

    @cached_property
    def token_kind(self) -> np.ndarray:
        out = np.full(self.size, SPECIAL, dtype=np.int64)
        for slot in self.slots:
            kind = {"attribute": ATTRIBUTE, "condition": CONDITION}.get(slot.kind)
            if kind is not None:
                out[slot.first : slot.first + slot.size] = kind
        out[self.gap_first : self.gap_first + self.n_gaps] = GAP
        out[self.gap_first + self.n_gaps :] = VALUE
        out[EOS] = END
        return out

    @cached_property
    def token_channel(self) -> np.ndarray:
        """Channel index of each value token, -1 elsewhere."""
        out = np.full(self.size, -1, dtype=np.int64)
        for i, name in enumerate(self.schema.channel_names):
            first = self.value_first[name]
            out[first : first + len(self.value_edges[name]) - 1] = i
        return out

    @cached_property
    def token_rank(self) -> np.ndarray:
        """``[size]`` rank of each value token's bin inside its channel, ``(k + 0.5) / n_bins``
        in ``(0, 1)`` (0 for other tokens): a public position that spreads the fine bins
        around the normal range evenly. Read by the smooth bias.
        """
        out = np.zeros(self.size, dtype=np.float32)
        for name, first in self.value_first.items():
            n = len(self.value_edges[name]) - 1
            out[first : first + n] = (np.arange(n) + 0.5) / n
        return out

    @cached_property
    def token_bin(self) -> np.ndarray:
        """Index of each token inside its slot or channel (bin, category, gap bin)."""
        out = np.zeros(self.size, dtype=np.int64)
        for slot in self.slots:
            if slot.kind != "event":
                out[slot.first : slot.first + slot.size] = np.arange(slot.size)
        out[self.gap_first : self.gap_first + self.n_gaps] = np.arange(self.n_gaps)
        for name, first in self.value_first.items():
            n = len(self.value_edges[name]) - 1
            out[first : first + n] = np.arange(n)
        return out

    @cached_property
    def slot_masks(self) -> np.ndarray:
        """``[n_slots + 1, size]`` booleans: the tokens each slot may take (row 0: none).

        An attribute the schema declares never missing (``may_be_missing: false``) may not
        take its ``<missing>`` token, and an inclusion condition not its ``absent`` token:
        generation cannot leave them out.
        """
        masks = np.zeros((self.event_slot + 1, self.size), dtype=bool)
        masks[self.token_slot, np.arange(self.size)] = True
        masks[0, :] = False
        inclusion = {c.code for c in self.schema.conditions if c.inclusion}
        for number, slot in enumerate(self.slots, start=1):
            if slot.kind == "attribute" and not self.schema.attribute_by_name[
                slot.name
            ].may_be_missing:
                masks[number, slot.first] = False
            if slot.kind == "condition" and slot.name in inclusion:
                masks[number, slot.first] = False  # "absent"
        return masks

    @cached_property
    def channel_group(self) -> np.ndarray:
        """Measurement-group index of each channel (schema order), -1 for ungrouped channels."""
        out = np.full(len(self.schema.channels), -1, dtype=np.int64)
        index = {name: i for i, name in enumerate(self.schema.channel_names)}
        for g, group in enumerate(self.schema.measurement_groups):
            out[[index[name] for name in group.channels]] = g
        return out

    @cached_property
    def channel_entry(self) -> np.ndarray:
        """Per channel: may a visit's run of values reach it other than from its predecessor?

        True for ungrouped channels and the first channel of each measurement group.
        """
        group = self.channel_group
        previous = np.concatenate([[-1], group[:-1]])
        return (group < 0) | (group != previous)

    @cached_property
    def channel_need(self) -> np.ndarray:
        """``[n_channels, n_channels]`` booleans: the channels a visit commits to by entering one.

        An entry channel commits to its whole measurement group (itself alone when ungrouped);
        a channel inside a group commits to itself.
        """
        n = len(self.schema.channels)
        group, entry = self.channel_group, self.channel_entry
        out = np.eye(n, dtype=bool)
        for c in np.flatnonzero(entry & (group >= 0)):
            out[c] = group == group[c]
        return out

    @cached_property
    def follow_mask(self) -> np.ndarray:
        """``[size, size]`` booleans: may token ``b`` follow token ``a`` (the event grammar)?

        After BOS or a prefix token: prefix tokens, a gap (opening the first visit) or EOS;
        with the ``first_event`` anchor the first visit is at time zero, so only the first gap
        bin (``[0, 1)`` days) opens it. After a gap: a value token (no empty visit). After a
        value of channel ``c``: a value of a channel after ``c`` (schema order within a visit;
        ``c`` itself again only when the channel has ``repeat_within_visit``), a gap, or EOS;
        the gap is at least a day (not the first gap bin) unless the schema's time allows
        ``same_day_visits``. Measurement groups narrow this: a group is entered only at its
        first channel, and after a value of a group channel other than the last only a value
        of the group's next channel may follow (no gap, no EOS), so every visit holds whole
        groups.
        """
        kind = self.token_kind
        channel = self.token_channel
        prefix = (kind == ATTRIBUTE) | (kind == CONDITION)
        gaps, values = kind == GAP, kind == VALUE
        group, entry = self.channel_group, self.channel_entry
        enterable = values & entry[channel.clip(min=0)]
        out = np.zeros((self.size, self.size), dtype=bool)
        first_gaps = gaps.copy()
        if self.schema.time.anchor == "first_event" and self.n_gaps > 1:
            first_gaps[self.gap_first + 1 : self.gap_first + self.n_gaps] = False
        later_gaps = gaps.copy()
        if not self.schema.time.same_day_visits and self.n_gaps > 1:
            later_gaps[self.gap_first] = False
        opening = prefix | first_gaps
        opening[EOS] = True
        out[BOS] = opening
        out[prefix] = opening
        out[gaps] = enterable
        n = len(self.schema.channels)
        for c in range(n):
            if group[c] >= 0 and c + 1 < n and group[c + 1] == group[c]:
                out[channel == c] = channel == c + 1
                continue
            again = self.schema.channels[c].repeat_within_visit
            out[channel == c] = (enterable & ((channel > c) | (again & (channel == c)))) | (
                later_gaps
            )
            out[channel == c, EOS] = True
        return out

    # -- identity ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything that defines the encoding, as plain JSON (no data, only schema content).

        Measurement groups appear only when the schema has some, so vocabularies of schemas
        without groups keep their identity.
        """
        out = {
            "schema_sha256": self.schema.sha256,
            "config": self.config.to_dict(),
            "tokens": list(self.tokens),
            "attribute_edges": {k: v.tolist() for k, v in self.attribute_edges.items()},
            "value_edges": {k: v.tolist() for k, v in self.value_edges.items()},
            "gap_edges": self.gap_edges.tolist(),
            "onset_edges": self.onset_edges.tolist(),
        }
        if self.schema.measurement_groups:
            out["measurement_groups"] = [list(g.channels) for g in self.schema.measurement_groups]
        return out

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def build_vocabulary(schema: DatasetSchema, config: EncodingConfig | None = None) -> Vocabulary:
    """The vocabulary of ``schema``: a pure function of the schema and ``config``."""
    config = config or EncodingConfig()
    tokens: list[str] = ["<pad>", "<bos>", "<eos>"]
    slots: list[Slot] = []
    attr_edges: dict[str, np.ndarray] = {}
    for attr in schema.attributes:
        edges = _attribute_edges(attr, config.attribute_bins)
        if edges is not None:
            attr_edges[attr.name] = edges
        labels = ["<missing>", *_attribute_labels(attr, edges)]
        slots.append(Slot("attribute", attr.name, len(tokens), len(labels)))
        tokens += [f"{attr.name}={label}" for label in labels]
    onset = equal_edges(0.0, float(schema.time.horizon_days), config.onset_bins)
    for cond in schema.conditions:
        labels = ["absent", "at-start", *[f"onset{k}" for k in range(len(onset) - 1)]]
        slots.append(Slot("condition", cond.code, len(tokens), len(labels)))
        tokens += [f"condition:{cond.code}={label}" for label in labels]
    gaps = gap_edges(schema.time.horizon_days, config.gap_bins)
    gap_first = len(tokens)
    tokens += [f"gap{k}" for k in range(len(gaps) - 1)]
    val_edges: dict[str, np.ndarray] = {}
    val_first: dict[str, int] = {}
    for ch in schema.channels:
        edges = value_edges(
            ch.min,
            ch.max,
            normal=ch.normal,
            decimals=ch.decimals,
            n_core=config.value_core_bins,
            n_low=config.value_low_bins,
            n_high=config.value_high_bins,
            log=channel_is_log(ch, config),
            point_masses=ch.point_masses,
        )
        val_edges[ch.name] = edges
        val_first[ch.name] = len(tokens)
        tokens += [f"{ch.name}:{k}" for k in range(len(edges) - 1)]
    slots.append(Slot("event", "events", gap_first, len(tokens) - gap_first))
    return Vocabulary(
        schema=schema,
        config=config,
        tokens=tuple(tokens),
        slots=tuple(slots),
        attribute_edges=attr_edges,
        value_edges=val_edges,
        gap_edges=gaps,
        onset_edges=onset,
        gap_first=gap_first,
        value_first=val_first,
    )
