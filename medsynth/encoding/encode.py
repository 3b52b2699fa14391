"""Cohort -> padded token matrices, one row per patient, through a fixed vocabulary.

Row ``i`` is patient ``cohort.patients.iloc[i]``: ``BOS``, the prefix (attributes in schema
order, then conditions in schema order), the visits (gap token, then channel-value tokens in
schema channel order), ``EOS``, then padding. Beside the tokens, ``times`` holds for every
position the time (days since time zero) of the visit in effect after that token, which the
network reads as an input feature. Records are already truncated to the schema's limits by
:meth:`Cohort.conform`; nothing here looks at one patient to encode another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medsynth.cohort import Cohort
from medsynth.encoding.bins import digitize
from medsynth.encoding.vocabulary import BOS, EOS, PAD, Vocabulary, date_to_days
from medsynth.errors import DataError

__all__ = ["EncodedCohort", "encode_cohort", "prefix_tokens"]


@dataclass(frozen=True, eq=False)
class EncodedCohort:
    """Token ids ``[n, max_len]`` (int32), visit times ``[n, max_len]`` (float32), lengths."""

    tokens: np.ndarray
    times: np.ndarray
    lengths: np.ndarray

    @property
    def n(self) -> int:
        return len(self.lengths)


def _attribute_tokens(vocab: Vocabulary, patients: pd.DataFrame) -> np.ndarray:
    n = len(patients)
    out = np.zeros((n, len(vocab.schema.attributes)), dtype=np.int64)
    for j, attr in enumerate(vocab.schema.attributes):
        slot = vocab.slots[j]
        col = patients[attr.name] if attr.name in patients.columns else pd.Series([pd.NA] * n)
        if attr.type == "categorical":
            index = {v: k + 1 for k, v in enumerate(attr.values)}
            local = col.map(lambda v, index=index: index.get(v, 0) if isinstance(v, str) else 0)
            local = local.to_numpy(dtype=np.int64)
        elif attr.type == "boolean":
            b = col.astype("boolean")
            local = np.where(b.isna().to_numpy(), 0, np.where(b.fillna(False).to_numpy(), 2, 1))
        else:
            raw = (
                date_to_days(col)
                if attr.type == "date"
                else pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            )
            missing = ~np.isfinite(raw)
            bins = digitize(np.where(missing, 0.0, raw), vocab.attribute_edges[attr.name])
            local = np.where(missing, 0, bins + 1)
        out[:, j] = slot.first + local
    return out


def _condition_tokens(vocab: Vocabulary, cohort: Cohort, rows: pd.Index) -> np.ndarray:
    n_attr = len(vocab.schema.attributes)
    cond_slots = vocab.slots[n_attr : vocab.n_prefix]
    out = np.array([[s.first for s in cond_slots]] * len(rows), dtype=np.int64)
    out = out.reshape(len(rows), len(cond_slots))
    cond = cohort.conditions
    if len(cond) == 0:
        return out
    r = rows.get_indexer(cond["patient_id"])
    code_index = {s.name: k for k, s in enumerate(cond_slots)}
    c = cond["code"].map(code_index).to_numpy(dtype=np.float64)
    ok = (r >= 0) & np.isfinite(c)
    r, c = r[ok], c[ok].astype(np.int64)
    onset = cond["onset"].to_numpy(dtype=np.float64)[ok]
    local = np.where(onset <= 0.0, 1, 2 + digitize(onset, vocab.onset_edges))
    firsts = np.array([s.first for s in cond_slots], dtype=np.int64)
    out[r, c] = firsts[c] + local
    return out


def prefix_tokens(vocab: Vocabulary, cohort: Cohort) -> np.ndarray:
    """``[n, n_prefix]`` prefix token ids (attributes then conditions, schema order)."""
    rows = pd.Index(cohort.patients["patient_id"])
    return np.concatenate(
        [_attribute_tokens(vocab, cohort.patients), _condition_tokens(vocab, cohort, rows)], axis=1
    )


def _event_stream(vocab: Vocabulary, cohort: Cohort, rows: pd.Index):
    """Flattened event tokens: (row, token, time) in sequence order."""
    ev = cohort.events
    order = {name: i for i, name in enumerate(vocab.schema.channel_names)}
    r = rows.get_indexer(ev["patient_id"])
    ch = ev["channel"].map(order).to_numpy(dtype=np.float64)
    keep = (r >= 0) & np.isfinite(ch)
    frame = pd.DataFrame(
        {
            "r": r[keep],
            "t": ev["time"].to_numpy(dtype=np.float64)[keep],
            "c": ch[keep].astype(np.int64),
            "v": ev["value"].to_numpy(dtype=np.float64)[keep],
        }
    ).sort_values(["r", "t", "c", "v"], kind="mergesort")
    r, t = frame["r"].to_numpy(), frame["t"].to_numpy()
    c, v = frame["c"].to_numpy(), frame["v"].to_numpy()
    value_tok = np.zeros(len(frame), dtype=np.int64)
    for i, name in enumerate(vocab.schema.channel_names):
        sel = c == i
        value_tok[sel] = vocab.value_first[name] + digitize(v[sel], vocab.value_edges[name])
    same_patient = np.concatenate([[False], r[1:] == r[:-1]])
    prev_t = np.where(same_patient, np.concatenate([[0.0], t[:-1]]), 0.0)
    new_visit = ~same_patient | (t != prev_t)
    gap_tok = vocab.gap_first + digitize(t - prev_t, vocab.gap_edges)
    pair = np.stack([np.where(new_visit, gap_tok, -1), value_tok], axis=1).reshape(-1)
    keep = pair >= 0
    return np.repeat(r, 2)[keep], pair[keep], np.repeat(t, 2)[keep]


def encode_cohort(vocab: Vocabulary, cohort: Cohort) -> EncodedCohort:
    """Encode every patient of ``cohort`` (rows in ``cohort.patients`` order)."""
    if cohort.schema.sha256 != vocab.schema.sha256:
        raise DataError(
            f"cohort uses schema {cohort.schema.name!r} ({cohort.schema.sha256[:12]}) but the "
            f"model was built for {vocab.schema.name!r} ({vocab.schema.sha256[:12]}); "
            "ingest the data with the model's schema"
        )
    n, width = cohort.n_patients, vocab.max_len
    rows = pd.Index(cohort.patients["patient_id"])
    tokens = np.full((n, width), PAD, dtype=np.int32)
    times = np.zeros((n, width), dtype=np.float32)
    start = 1 + vocab.n_prefix
    tokens[:, 0] = BOS
    tokens[:, 1:start] = prefix_tokens(vocab, cohort)
    er, etok, et = _event_stream(vocab, cohort, rows)
    counts = np.bincount(er, minlength=n)
    if counts.max(initial=0) > width - start - 1:
        raise DataError(
            f"a patient has {counts.max()} event tokens, more than the schema limits allow; "
            "build the cohort with Cohort.conform so the limits are applied"
        )
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = start + np.arange(len(er)) - first[er]
    tokens[er, pos] = etok
    times[er, pos] = et
    ends = start + counts
    tokens[np.arange(n), ends] = EOS
    last_time = np.zeros(n, dtype=np.float32)
    has = counts > 0
    last_time[has] = et[first[has] + counts[has] - 1]
    times[np.arange(n), ends] = last_time
    return EncodedCohort(tokens=tokens, times=times, lengths=(ends + 1).astype(np.int64))
