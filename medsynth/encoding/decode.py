"""Sampled tokens -> a Cohort: the inverse of :mod:`medsynth.encoding.encode`, plus noise.

Every numeric value is drawn uniformly among the values its field can hold inside its bin
(:func:`medsynth.encoding.bins.sample_in_bins`); categories come back as schema values; visit
times arrive already drawn by the sampler. Timelines are then aligned to the schema's anchor
(first observation at time zero for ``first_event``, last observation at the horizon for
``last_event``), and the tables go through :meth:`Cohort.conform` like any other input. All of
this is post-processing of the model's output and reads no training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medsynth.cohort import Cohort, Source
from medsynth.encoding.bins import sample_in_bins
from medsynth.encoding.vocabulary import Vocabulary, channel_is_log

__all__ = ["SampledPatients", "decode_patients"]

_EPOCH = np.datetime64("1970-01-01", "s")


@dataclass(frozen=True, eq=False)
class SampledPatients:
    """Raw sampler output: prefix tokens per slot and the observed events."""

    prefix: np.ndarray  # [n, n_prefix] token ids, schema slot order
    event_row: np.ndarray  # [m] patient row of each observation
    event_time: np.ndarray  # [m] visit time in days
    event_channel: np.ndarray  # [m] channel index
    event_bin: np.ndarray  # [m] value bin


def _attribute_column(
    vocab: Vocabulary,
    j: int,
    local: np.ndarray,
    rng: np.random.Generator,
    ranges: dict[str, tuple[float, float]],
) -> pd.Series:
    attr = vocab.schema.attributes[j]
    missing = local == 0
    if attr.type == "categorical":
        values = np.array([None, *attr.values], dtype=object)[local]
        return pd.Series(values, dtype="object").astype("str").where(~missing, pd.NA)
    if attr.type == "boolean":
        return pd.Series(np.where(missing, None, local == 2), dtype="object").astype("boolean")
    edges = vocab.attribute_edges[attr.name]
    lo, hi = ranges.get(attr.name, (None, None))
    decimals = 0 if attr.type == "date" else attr.decimals
    bins = np.clip(local - 1, 0, len(edges) - 2)
    values = sample_in_bins(bins, edges, decimals, rng, lo=lo, hi=hi)
    values = np.where(missing, np.nan, values)
    if attr.type == "date":
        seconds = np.where(missing, 0, values * 86400).astype("int64")
        dates = pd.Series(_EPOCH + seconds.astype("timedelta64[s]"))
        return dates.where(~missing, pd.NaT)
    return pd.Series(values, dtype="float64")


def _align(vocab: Vocabulary, rows: np.ndarray, times: np.ndarray, n: int) -> np.ndarray:
    """Per-patient shift that puts the timeline where the schema's anchor says."""
    anchor = vocab.schema.time.anchor
    shift = np.zeros(n)
    if anchor == "fixed_date" or len(rows) == 0:
        return shift
    if anchor == "first_event":
        first = np.full(n, np.inf)
        np.minimum.at(first, rows, times)
        shift = np.where(np.isfinite(first), -first, 0.0)
    else:
        last = np.full(n, -np.inf)
        np.maximum.at(last, rows, times)
        shift = np.where(np.isfinite(last), vocab.schema.time.horizon_days - last, 0.0)
    return shift


def _visit_times(events: pd.DataFrame, patient_ids: list[str]) -> list[np.ndarray]:
    """Each patient's distinct event times, sorted (patient order of ``patient_ids``)."""
    index = {pid: i for i, pid in enumerate(patient_ids)}
    rows = events["patient_id"].map(index).to_numpy(dtype=np.int64)
    times = events["time"].to_numpy(dtype=np.float64)
    order = np.lexsort((times, rows))
    rows, times = rows[order], times[order]
    cuts = np.searchsorted(rows, np.arange(1, len(patient_ids)))
    return [np.unique(t) for t in np.split(times, cuts)]


def _at_visits(
    onset: np.ndarray,
    later: np.ndarray,
    rows: np.ndarray,
    bins: np.ndarray,
    edges: np.ndarray,
    shift: np.ndarray,
    visits: list[np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """Onsets dated at one of the patient's visits inside their onset bin, when there is one.

    The model chooses the bin (a stretch of the timeline); where inside it a diagnosis falls is
    not learned. Diagnoses are made at encounters, so a visit of the patient inside the bin is
    chosen at random when the bin holds any, and the uniform draw is kept otherwise (a
    diagnosis in a stretch without visits stays where the model put it).
    """
    out = onset.copy()
    for j in np.flatnonzero(later):
        times = visits[rows[j]]
        lo, hi = edges[bins[j]] + shift[rows[j]], edges[bins[j] + 1] + shift[rows[j]]
        a, b = np.searchsorted(times, lo), np.searchsorted(times, hi)
        if b > a:
            out[j] = times[a + int(rng.integers(b - a))]
    return out


def decode_patients(
    vocab: Vocabulary,
    sampled: SampledPatients,
    patient_ids: list[str],
    rng: np.random.Generator,
    *,
    ranges: dict[str, tuple[float, float]] | None = None,
    source: Source | None = None,
) -> Cohort:
    """Build a :class:`Cohort` from sampler output (values drawn inside their bins)."""
    schema = vocab.schema
    n = len(patient_ids)
    ranges = ranges or {}
    local = sampled.prefix - np.array([s.first for s in vocab.slots[: vocab.n_prefix]])
    patients = pd.DataFrame({"patient_id": pd.Series(patient_ids, dtype="str")})
    for j, attr in enumerate(schema.attributes):
        patients[attr.name] = _attribute_column(vocab, j, local[:, j], rng, ranges)
    shift = _align(vocab, sampled.event_row, sampled.event_time, n)
    horizon = float(schema.time.horizon_days)
    values = np.zeros(len(sampled.event_row))
    for c, ch in enumerate(schema.channels):
        sel = sampled.event_channel == c
        values[sel] = sample_in_bins(
            sampled.event_bin[sel],
            vocab.value_edges[ch.name],
            ch.decimals,
            rng,
            log=channel_is_log(ch, vocab.config),
        )
    ids = np.array(patient_ids, dtype=object)
    channel_names = np.array(schema.channel_names, dtype=object)
    events = pd.DataFrame(
        {
            "patient_id": pd.Series(ids[sampled.event_row], dtype="str"),
            "time": np.clip(sampled.event_time + shift[sampled.event_row], 0.0, horizon),
            "channel": pd.Series(channel_names[sampled.event_channel], dtype="str"),
            "value": values,
        }
    )
    n_attr = len(schema.attributes)
    cond_rows, cond_codes, cond_onsets = [], [], []
    edges = vocab.onset_edges
    visits = _visit_times(events, patient_ids)
    for k, cond in enumerate(schema.conditions):
        loc = local[:, n_attr + k]
        present = np.flatnonzero(loc > 0)
        later = loc[present] >= 2
        bins = np.clip(loc[present] - 2, 0, len(edges) - 2)
        onset = np.where(later, sample_in_bins(bins, edges, None, rng) + shift[present], 0.0)
        onset = _at_visits(onset, later, present, bins, edges, shift, visits, rng)
        cond_rows.append(present)
        cond_codes += [cond.code] * len(present)
        cond_onsets.append(np.clip(onset, 0.0, horizon))
    rows = np.concatenate(cond_rows) if cond_rows else np.zeros(0, dtype=np.int64)
    conditions = pd.DataFrame(
        {
            "patient_id": pd.Series(ids[rows], dtype="str"),
            "code": pd.Series(cond_codes, dtype="str"),
            "onset": np.concatenate(cond_onsets) if cond_onsets else np.zeros(0),
        }
    )
    src = source or Source(fingerprint="", kind="synthetic", description="medsynth generate")
    cohort, _ = Cohort.conform(schema, patients, events, conditions, source=src)
    return cohort
