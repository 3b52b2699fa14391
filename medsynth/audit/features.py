"""Patients as numeric feature vectors, built from the public dataset schema alone.

The privacy attacks compare whole records: static attributes, diagnoses *and* time series. This
module turns each patient of a cohort into one row of numbers whose scale comes only from the
schema (its categories, bounds and per-patient limits), never from the data, so that the same
patient gets the same row whatever cohort it sits in:

* a **categorical** attribute becomes one indicator per schema category, each ``1/sqrt(2)``, so
  two different categories lie at distance 1 (a missing value is all zeros);
* a **numeric** or **date** attribute becomes its value scaled by the schema bounds to
  ``[0, 1]`` and a missing-value flag; a **boolean** becomes 0 or 1 (0.5 when missing);
* every schema **condition** becomes a 0/1 flag;
* every **channel** becomes four summaries: the number of events divided by the schema's
  per-channel limit, the mean and the last value scaled by the channel bounds, and the
  least-squares slope per year divided by the channel range (clipped to ``[-1, 1]``); a channel
  never measured gives zeros.

Columns are grouped in *blocks* (one per attribute, ``"conditions"``, one per channel) so that
an attack can use part of a record (the linkability attack splits the blocks into two views).
:func:`patient_features` caches its result per cohort object, so the evaluators of one audit
share the work.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from medsynth.audit.base import AuditResult, not_run
from medsynth.cohort import PATIENT_ID, Cohort
from medsynth.errors import DataError

__all__ = [
    "FeatureMatrix",
    "cohort_problems",
    "does_not_apply",
    "histogram",
    "nearest",
    "patient_features",
    "row_keys",
    "same_records",
    "sample_rows",
    "split_blocks",
]

ONE_HOT = 1.0 / math.sqrt(2.0)  # two different categories lie at distance 1
DAYS_PER_YEAR = 365.25
SERIES_SUMMARIES = ("count", "mean", "last", "slope")
CONDITIONS = "conditions"
ROUNDING = 1e-6  # distances below this are equal records (features are scaled to [0, 1])


@dataclass(frozen=True)
class FeatureMatrix:
    """One row of numbers per patient (cohort order) with named columns in named blocks.

    Attributes:
        names: column names, e.g. ``"sex=female"``, ``"age"``, ``"condition:38341003"``,
            ``"glucose:slope"``.
        values: ``(n_patients, n_columns)`` float64 array.
        blocks: block name (attribute, ``"conditions"`` or channel) -> column indices.
    """

    names: tuple[str, ...]
    values: np.ndarray
    blocks: Mapping[str, tuple[int, ...]]

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    def columns(self, blocks: Iterable[str]) -> np.ndarray:
        """Indices of the columns of ``blocks`` (in block order).

        Raises:
            DataError: a block name that is not an attribute, ``"conditions"`` or a channel.
        """
        out: list[int] = []
        for name in blocks:
            if name not in self.blocks:
                raise DataError(
                    f"feature block {name!r} does not exist; valid: {', '.join(self.blocks)}"
                )
            out.extend(self.blocks[name])
        return np.asarray(out, dtype=np.int64)


def _scaled(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = float(hi) - float(lo)
    if not span > 0:
        return np.zeros_like(values, dtype="float64")
    return np.clip((values - float(lo)) / span, 0.0, 1.0)


def _attribute_columns(cohort: Cohort) -> list[tuple[str, str, np.ndarray]]:
    """(block, column name, values) for every static attribute."""
    cols: list[tuple[str, str, np.ndarray]] = []
    for attr in cohort.schema.attributes:
        col = cohort.patients[attr.name]
        if attr.type == "categorical":
            text = col.astype("object")
            for value in attr.values:
                cols.append(
                    (attr.name, f"{attr.name}={value}", (text == value).to_numpy(float) * ONE_HOT)
                )
        elif attr.type == "boolean":
            b = col.astype("boolean")
            v = b.astype("Float64").to_numpy(dtype="float64", na_value=0.5)
            cols.append((attr.name, attr.name, v))
        else:
            if attr.type == "date":
                lo_d, hi_d = (pd.Timestamp(d) for d in attr.date_bounds())
                days = (pd.to_datetime(col) - lo_d).dt.total_seconds() / 86400.0
                raw = days.to_numpy(dtype="float64", na_value=np.nan)
                lo, hi = 0.0, (hi_d - lo_d).total_seconds() / 86400.0
            else:
                raw = col.to_numpy(dtype="float64", na_value=np.nan)
                lo, hi = float(attr.min), float(attr.max)  # type: ignore[arg-type]
            missing = ~np.isfinite(raw)
            cols.append((attr.name, attr.name, np.where(missing, 0.0, _scaled(raw, lo, hi))))
            cols.append((attr.name, f"{attr.name}:missing", missing.astype("float64")))
    return cols


def _condition_columns(cohort: Cohort) -> np.ndarray:
    codes = list(cohort.schema.condition_codes)
    ids = pd.Index(cohort.patients[PATIENT_ID].astype("object"))
    rows = ids.get_indexer(cohort.conditions[PATIENT_ID].astype("object"))
    cols = pd.Index(codes, dtype="object").get_indexer(cohort.conditions["code"].astype("object"))
    keep = (rows >= 0) & (cols >= 0)
    flags = np.zeros((len(ids), len(codes)), dtype="float64")
    flags[rows[keep], cols[keep]] = 1.0
    return flags


def _series_columns(cohort: Cohort) -> np.ndarray:
    """``(n_patients, n_channels, 4)``: count, mean, last, slope per patient and channel."""
    schema = cohort.schema
    n, k = cohort.n_patients, len(schema.channels)
    out = np.zeros((n, k, len(SERIES_SUMMARIES)), dtype="float64")
    ev = cohort.events
    if n == 0 or k == 0 or len(ev) == 0:
        return out
    rows = pd.Index(cohort.patients[PATIENT_ID].astype("object")).get_indexer(
        ev[PATIENT_ID].astype("object")
    )
    chans = pd.Index(list(schema.channel_names), dtype="object").get_indexer(
        ev["channel"].astype("object")
    )
    keep = (rows >= 0) & (chans >= 0)
    group = rows[keep] * k + chans[keep]
    t = ev["time"].to_numpy(dtype="float64")[keep] / DAYS_PER_YEAR
    v = ev["value"].to_numpy(dtype="float64")[keep]
    size = n * k
    count = np.bincount(group, minlength=size).astype("float64")
    st = np.bincount(group, t, size)
    sv = np.bincount(group, v, size)
    stt = np.bincount(group, t * t, size)
    stv = np.bincount(group, t * v, size)
    seen = count > 0
    c = np.where(seen, count, 1.0)
    mean_v = sv / c
    var_t = stt / c - (st / c) ** 2
    cov_tv = stv / c - (st / c) * mean_v
    slope = np.where(seen & (var_t > 1e-12), cov_tv / np.where(var_t > 1e-12, var_t, 1.0), 0.0)
    order = np.lexsort((t, group))  # by group, then time; the stable sort keeps table order
    g_sorted = group[order]
    is_last = np.r_[g_sorted[1:] != g_sorted[:-1], True]
    last = np.zeros(size)
    last[g_sorted[is_last]] = v[order][is_last]
    lo = np.tile(np.array([ch.min for ch in schema.channels], dtype="float64"), n)
    hi = np.tile(np.array([ch.max for ch in schema.channels], dtype="float64"), n)
    span = np.where(hi > lo, hi - lo, 1.0)
    limit = float(max(schema.limits.max_events_per_channel, 1))
    out[..., 0] = np.minimum(count / limit, 1.0).reshape(n, k)
    out[..., 1] = np.where(seen, np.clip((mean_v - lo) / span, 0, 1), 0.0).reshape(n, k)
    out[..., 2] = np.where(seen, np.clip((last - lo) / span, 0, 1), 0.0).reshape(n, k)
    out[..., 3] = np.clip(slope / span, -1.0, 1.0).reshape(n, k)
    return out


_CACHE: weakref.WeakKeyDictionary[Cohort, FeatureMatrix] = weakref.WeakKeyDictionary()


def patient_features(cohort: Cohort) -> FeatureMatrix:
    """The feature matrix of a cohort (rows in ``cohort.patients`` order); cached per cohort.

    Example:
        >>> fm = patient_features(cohort)  # doctest: +SKIP
        >>> fm.values.shape  # (patients, columns)  # doctest: +SKIP
    """
    cached = _CACHE.get(cohort)
    if cached is not None:
        return cached
    names: list[str] = []
    blocks: dict[str, list[int]] = {}
    parts: list[np.ndarray] = []
    for block, name, values in _attribute_columns(cohort):
        blocks.setdefault(block, []).append(len(names))
        names.append(name)
        parts.append(values.reshape(-1, 1))
    flags = _condition_columns(cohort)
    blocks[CONDITIONS] = list(range(len(names), len(names) + flags.shape[1]))
    names.extend(f"condition:{code}" for code in cohort.schema.condition_codes)
    parts.append(flags)
    series = _series_columns(cohort)
    for j, ch in enumerate(cohort.schema.channels):
        blocks[ch.name] = list(range(len(names), len(names) + len(SERIES_SUMMARIES)))
        names.extend(f"{ch.name}:{s}" for s in SERIES_SUMMARIES)
        parts.append(series[:, j, :])
    n = cohort.n_patients
    values = np.hstack(parts) if parts else np.zeros((n, 0))
    fm = FeatureMatrix(
        names=tuple(names),
        values=np.ascontiguousarray(values.reshape(n, len(names)), dtype="float64"),
        blocks={b: tuple(ix) for b, ix in blocks.items()},
    )
    _CACHE[cohort] = fm
    return fm


def split_blocks(fm: FeatureMatrix, view_a: Iterable[str] | None) -> tuple[list[str], list[str]]:
    """Two disjoint lists of block names: ``view_a`` (default: the static attributes) and the
    rest. Blocks without a column (the diagnoses of a schema that lists no condition) are left
    out, so either list may come back empty: the schema then gives the attack no second view.

    Raises:
        DataError: an unknown block name.
    """
    attributes = [b for b in fm.blocks if b != CONDITIONS and not _is_channel(fm, b)]
    a = list(view_a) if view_a is not None else attributes
    unknown = [b for b in a if b not in fm.blocks]
    if unknown:
        raise DataError(
            f"linkability view_a names unknown block(s) {unknown}; valid: {', '.join(fm.blocks)}"
        )
    filled = [b for b in fm.blocks if fm.blocks[b]]
    return [x for x in a if x in filled], [x for x in filled if x not in a]


def _is_channel(fm: FeatureMatrix, block: str) -> bool:
    ix = fm.blocks[block]
    return len(ix) == len(SERIES_SUMMARIES) and fm.names[ix[0]] == f"{block}:count"


# -- shared helpers of the attacks ---------------------------------------------------------------
def nearest(reference: np.ndarray, query: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances and indices of the ``k`` nearest ``reference`` rows of each query row.

    Brute force over BLAS (scikit-learn's ``NearestNeighbors``): exact, and fast for the few
    hundred columns of a patient's features. Shapes ``(len(query), k)``.
    """
    from sklearn.neighbors import NearestNeighbors

    if len(reference) == 0 or len(query) == 0:
        shape = (len(query), k)
        return np.full(shape, np.inf), np.full(shape, -1, dtype=np.int64)
    k = min(k, len(reference))
    index = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(reference)
    dist, idx = index.kneighbors(query)
    dist = np.asarray(dist, dtype="float64")
    dist[dist < ROUNDING] = 0.0  # BLAS distances of equal rows come out as ~1e-8, not 0
    return dist, np.asarray(idx, dtype=np.int64)


def row_keys(values: np.ndarray, decimals: int = 9) -> np.ndarray:
    """One hashable key per row (bytes of the rounded row): equal keys mean equal records."""
    rounded = np.ascontiguousarray(np.round(values, decimals) + 0.0)  # +0.0: no negative zero
    return np.array([r.tobytes() for r in rounded], dtype=object)


def same_records(a: FeatureMatrix, b: FeatureMatrix) -> bool:
    """True when two cohorts hold exactly the same records (as features), ignoring order."""
    if a.n != b.n or a.names != b.names:
        return False
    return bool(np.array_equal(np.sort(row_keys(a.values)), np.sort(row_keys(b.values))))


def sample_rows(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``min(n, limit)`` rows drawn without replacement (all when no limit)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=int(limit), replace=False))


def cohort_problems(sizes: Mapping[str, int], minimum: Mapping[str, int]) -> str | None:
    """Why an attack cannot run on cohorts of these sizes (None when it can)."""
    short = [f"{name} has {sizes[name]}" for name, need in minimum.items() if sizes[name] < need]
    if not short:
        return None
    need = ", ".join(f"{name} {m}" for name, m in minimum.items())
    return f"too few patients ({'; '.join(short)}); this attack needs at least: {need}"


def does_not_apply(
    name: str, kind: str, reason: str, parameters: Mapping[str, Any] | None = None
) -> AuditResult:
    """A ``not_run`` result for an attack that the dataset schema gives nothing to work on (no
    attribute an attacker could know, no second view of a record...), marked so in its
    details (``applies_to_schema: false``): the policy reports its checks as NOT RUN with the
    reason, even when they are required: the attack, as configured, has nothing to try on data
    of this schema, which says nothing about the data either way."""
    result = not_run(name, kind, reason, parameters)
    return replace(result, details={"applies_to_schema": False})


def histogram(values: np.ndarray, edges: np.ndarray) -> list[int]:
    """Counts of finite values per bin over ``edges`` (values outside go to the end bins)."""
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1).astype(int).tolist()
