"""Bin edges from public bounds, and the two directions between numbers and bins.

Every edge here is a pure function of schema content (bounds, normal range, decimals, horizon)
and a few fixed counts, so two cohorts always get the same bins. Channel values get fine bins
around the schema's normal range and coarser, widening bins in the tails, because clinical
values crowd around normal; static numbers and dates get equal-width bins; time gaps get one
same-day bin and log-spaced bins up to the horizon. Edges are snapped to the values a field can
hold (its ``decimals``), so every bin holds at least one representable value and decoding a bin
(uniformly among the values it holds) never leaves it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "digitize",
    "equal_edges",
    "gap_edges",
    "sample_in_bins",
    "snap_edges",
    "value_edges",
]


def snap_edges(edges: np.ndarray, decimals: int | None) -> np.ndarray:
    """Round inner edges to the ``decimals`` grid and drop bins left empty by the rounding."""
    edges = np.asarray(edges, dtype=np.float64)
    if decimals is None:
        return edges
    inner = np.round(edges[1:-1], decimals)
    out = [float(edges[0])]
    for e in inner.tolist():
        if e < edges[-1] and _grid_count(out[-1], e, decimals, closed=False) > 0:
            out.append(e)
    if len(out) > 1 and _grid_count(out[-1], edges[-1], decimals, closed=True) == 0:
        out.pop()
    return np.array([*out, float(edges[-1])])


def _grid_count(left: float, right: float, decimals: int, *, closed: bool) -> int:
    """Values of the ``decimals`` grid in ``[left, right)`` (``[left, right]`` if closed)."""
    step = 10.0 ** (-decimals)
    first = math.ceil(round(left / step, 6))
    last = math.floor(round(right / step, 6)) if closed else math.ceil(round(right / step, 6)) - 1
    return max(0, last - first + 1)


def equal_edges(lo: float, hi: float, n_bins: int, decimals: int | None = None) -> np.ndarray:
    """``n_bins`` equal-width bins over ``[lo, hi]`` (fewer if the decimals grid is coarser)."""
    if not hi > lo:
        return np.array([lo, lo + 1.0])
    return snap_edges(np.linspace(lo, hi, n_bins + 1), decimals)


def value_edges(
    lo: float,
    hi: float,
    *,
    normal: tuple[float, float] | None,
    decimals: int | None,
    n_core: int = 14,
    n_low: int = 3,
    n_high: int = 7,
    log: bool = False,
    point_masses: tuple[float, ...] = (),
) -> np.ndarray:
    """Bins for a channel: ``n_core`` equal bins over the normal range widened by its width on
    each side, and quadratically widening tail bins out to the bounds.

    Without a normal range the middle half of ``[lo, hi]`` plays its part. ``log``: as many
    bins (``n_core + n_low + n_high``), equal in log space over ``[lo, hi]`` (``lo > 0``): a
    right-skewed value on a wide range keeps the same relative resolution everywhere.
    ``point_masses``: each value gets a bin of its own that holds it alone (with ``decimals``,
    the one grid value; without, the value and the next double), added to the others.
    """
    if log:
        edges = np.geomspace(lo, hi, n_core + n_low + n_high + 1)
        edges[0], edges[-1] = lo, hi
        return _with_point_masses(snap_edges(edges, decimals), point_masses, decimals)
    if normal is None:
        a, b = lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo)
    else:
        a, b = float(normal[0]), float(normal[1])
    width = max(b - a, (hi - lo) / 50.0)
    core_lo, core_hi = max(lo, a - width), min(hi, b + width)
    core = np.linspace(core_lo, core_hi, n_core + 1)
    step = (core_hi - core_lo) / n_core
    n_low = max(1, min(n_low, math.ceil((core_lo - lo) / step)))
    n_high = max(1, min(n_high, math.ceil((hi - core_hi) / step)))
    low = core_lo - (core_lo - lo) * (np.arange(n_low, 0, -1) / n_low) ** 2
    high = core_hi + (hi - core_hi) * (np.arange(1, n_high + 1) / n_high) ** 2
    parts = [low if core_lo > lo else np.array([]), core, high if core_hi < hi else np.array([])]
    edges = np.unique(np.clip(np.concatenate(parts), lo, hi))
    edges[0], edges[-1] = lo, hi
    return _with_point_masses(snap_edges(edges, decimals), point_masses, decimals)


def _with_point_masses(
    edges: np.ndarray, values: tuple[float, ...], decimals: int | None
) -> np.ndarray:
    """``edges`` with a bin ``[v, v + step)`` for each value (``[hi - step / 2, hi]`` at the
    top) so that the bin holds ``v`` alone; ``step`` is one unit of the ``decimals`` grid."""
    if not values:
        return edges
    lo, hi = float(edges[0]), float(edges[-1])
    extra = []
    for v in sorted(set(values)):
        step = 10.0 ** (-decimals) if decimals is not None else None
        if v >= hi:  # the last bin is closed: (hi - step / 2, hi] holds hi alone
            extra += [hi - step / 2 if step else np.nextafter(hi, -np.inf)]
            continue
        above = v + step if step else np.nextafter(v, np.inf)
        extra += [v, round(above, decimals) if step else above]
    return np.unique(np.clip(np.concatenate([edges, extra]), lo, hi))


def gap_edges(horizon_days: float, n_bins: int = 48) -> np.ndarray:
    """Time-gap bins in days: ``[0, 1)`` then ``n_bins - 1`` log-spaced bins up to the horizon."""
    horizon = float(horizon_days)
    if horizon <= 1.0:
        return np.array([0.0, horizon])
    rest = np.geomspace(1.0, horizon, n_bins)
    return np.concatenate([[0.0], rest])


def digitize(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value: ``edges[i] <= v < edges[i+1]``, the last bin closed; clipped."""
    idx = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="right") - 1
    return np.clip(idx, 0, len(edges) - 2).astype(np.int64)


def sample_in_bins(
    bins: np.ndarray,
    edges: np.ndarray,
    decimals: int | None,
    rng: np.random.Generator,
    *,
    lo: float | None = None,
    hi: float | None = None,
    log: bool = False,
) -> np.ndarray:
    """Values drawn uniformly inside their bins (among the values ``decimals`` can represent).

    ``lo``/``hi`` narrow every bin further (used when a condition fixes a numeric range).
    ``log``: log-uniformly (a bin of a log-scaled channel, whose edges are all > 0), then
    rounded to the ``decimals`` grid inside the bin.
    """
    bins = np.asarray(bins, dtype=np.int64)
    left = edges[bins].astype(np.float64)
    right = edges[bins + 1].astype(np.float64)
    last = bins == len(edges) - 2
    if lo is not None:
        left = np.maximum(left, lo)
    if hi is not None:
        last = last | (hi < right)
        right = np.minimum(right, hi)
    u = rng.random(len(bins))
    if log:
        drawn = np.exp(np.log(left) + (np.log(right) - np.log(left)) * u)
        if decimals is None:
            return np.clip(drawn, left, right)
    elif decimals is None:
        # a bin one double wide is a point mass (see value_edges): its value exactly
        single = right <= np.nextafter(left, np.inf)
        point = np.where(last, right, left)  # the top bin is closed: its point is the bound
        return np.where(single, point, left + (right - left) * u)
    step = 10.0 ** (-decimals)
    first = np.ceil(np.round(left / step, 6))
    scaled = np.round(right / step, 6)
    end = np.where(last, np.floor(scaled), np.ceil(scaled) - 1)
    end = np.maximum(end, first)
    if log:
        k = np.clip(np.round(drawn / step), first, end)
    else:
        k = np.minimum(first + np.floor(u * (end - first + 1)), end)
    return np.clip(np.round(k * step, decimals), edges[0], edges[-1])
