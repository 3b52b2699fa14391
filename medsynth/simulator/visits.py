"""When patients are seen and what each visit measures.

Visit gaps are gamma distributed around a patient's own visit rate, which rises with age and
the number of chronic diseases (and, in a liver clinic, with cirrhosis). Records follow the
schema's anchor: with ``first_event`` the first visit is at time 0, with ``last_event`` the last
visit is at the end of the horizon, with ``fixed_date`` records start somewhere after the anchor.
Each visit measures whole groups of channels (vital signs at most visits, panels at some); a
visit that measures nothing leaves no trace, but the first and last visits always measure
something. A record has at most ``max_events_per_channel`` visits, so no channel exceeds its
limit, and is thinned, whole groups at a time and never at the first or last visit, to respect
the per-patient total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medsynth.schema.model import TimeSpec
from medsynth.simulator.concepts import Concept
from medsynth.simulator.conditions import DAYS_PER_YEAR, Disease
from medsynth.simulator.demographics import Population
from medsynth.simulator.streams import Streams
from medsynth.simulator.traits import Group

SECONDS_PER_DAY = 86400.0
_COMPLICATIONS = ("ascites", "varices", "portal_hypertension", "encephalopathy", "liver_cancer")


@dataclass(frozen=True)
class GroupPlan:
    """A group present in the schema: its channel positions and their measurement shares."""

    group: Group
    channels: tuple[int, ...]
    shares: tuple[float, ...]
    names: tuple[str, ...]  # channel names, which name their random streams


def visit_rates(
    concepts: Sequence[Concept],
    diseases: dict[str, Disease],
    pop: Population,
    deceased: np.ndarray,
    streams: Streams,
    clinic: bool,
) -> np.ndarray:
    """Visits per year for each patient."""
    chronic = sum(diseases[c.key].at_start.astype(float) for c in concepts if c.chronic)
    rate = (1.5 if clinic else 1.2) * streams.rng("visit-rate").gamma(3.0, 1 / 3, pop.n)
    rate = rate * (1 + 0.15 * chronic) * np.exp(0.01 * (pop.age - 50)) * (1 + 0.3 * deceased)
    if clinic and "cirrhosis" in diseases:
        rate = rate * (1 + 0.3 * diseases["cirrhosis"].at_start)
        for key in _COMPLICATIONS:
            if key in diseases:
                rate = rate * (1 + 0.1 * diseases[key].at_start)
    return np.clip(rate, 0.2, 24.0)


def _record_span(
    spec: TimeSpec, n: int, deceased: np.ndarray, clinic: bool, streams: Streams
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(start, end, backward) of each record in days; backward when anchored at the end."""
    h = spec.horizon_days
    u = streams.uniform("record-span", (n, 3))
    follow = -np.log1p(-u[:, 0]) * (12.0 if clinic else 10.0) * DAYS_PER_YEAR
    if spec.anchor == "last_event":
        history = -np.log1p(-u[:, 1]) * 7.0 * DAYS_PER_YEAR
        return np.maximum(h - history, 0.0), np.full(n, h), True
    start = np.zeros(n)
    if spec.anchor == "fixed_date":
        start = np.minimum(-np.log1p(-u[:, 1]) * h / 4, 0.9 * h)
    end = np.minimum(start + follow, h)
    end = np.where(deceased, np.minimum(end, start + (0.05 + 0.95 * u[:, 2]) * (h - start)), end)
    return start, end, False


def visit_times(
    spec: TimeSpec,
    rate: np.ndarray,
    deceased: np.ndarray,
    max_visits: int,
    streams: Streams,
    clinic: bool = False,
) -> np.ndarray:
    """Visit times in days, shape (patients, max_visits), ascending, NaN after the last visit."""
    n = len(rate)
    start, end, backward = _record_span(spec, n, deceased, clinic, streams)
    shape, mean_gap = 1.3, DAYS_PER_YEAR / rate
    gaps = 1.0 + streams.rng("visit-gaps").gamma(
        shape, np.maximum(mean_gap - 1.0, 0.5)[:, None] / shape, (n, max(max_visits - 1, 0))
    )
    offsets = np.concatenate([np.zeros((n, 1)), np.cumsum(gaps, axis=1)], axis=1)
    if backward:
        times = end[:, None] - offsets
        times = np.where(times >= start[:, None], times, np.nan)
        times = np.sort(times, axis=1)  # NaN sort last
    else:
        times = start[:, None] + offsets
        times = np.where(times <= end[:, None], times, np.nan)
    return np.round(times * SECONDS_PER_DAY) / SECONDS_PER_DAY


def _group_chance(
    plan: GroupPlan, diseases: dict[str, Disease], n: int, clinic: bool
) -> np.ndarray:
    p = np.full(n, plan.group.clinic_rate if clinic else plan.group.rate)
    for key, boost in plan.group.boosts:
        if key in diseases:
            p = p + boost * diseases[key].ever
    return np.clip(p, 0.0, 0.98)


def measurement_masks(
    times: np.ndarray,
    plans: Sequence[GroupPlan],
    n_channels: int,
    diseases: dict[str, Disease],
    max_total: int,
    streams: Streams,
    clinic: bool = False,
) -> np.ndarray:
    """Which channel each visit measures: boolean (patients, visits, channels)."""
    n, v = times.shape
    valid = ~np.isnan(times)
    g = len(plans)
    chance = np.stack([_group_chance(p, diseases, n, clinic) for p in plans], axis=1)  # (n, g)
    first = np.array([max(p.group.first, p.group.rate) for p in plans])
    u = np.stack([streams.uniform(f"group:{p.group.key}", (n, v)) for p in plans], axis=2)
    taken = u < chance[:, None, :]
    taken[:, 0, :] = u[:, 0, :] < np.maximum(chance, first[None, :])
    taken &= valid[:, :, None]
    # The first and last visits measure something: they set the record's span.
    ends = np.zeros_like(valid)
    ends[:, 0] = valid[:, 0]
    ends[np.arange(n), np.maximum(valid.sum(axis=1) - 1, 0)] = valid.any(axis=1)
    taken[ends & ~taken.any(axis=2), int(np.argmax(first))] = True

    sub = np.zeros((n, v, n_channels), dtype=bool)
    sizes = np.zeros((n, v, g))
    for j, plan in enumerate(plans):
        always = max(plan.shares) < 1.0  # no channel is always measured: measure all
        for pos, share, name in zip(plan.channels, plan.shares, plan.names, strict=True):
            keep = (streams.uniform(f"share:{name}", (n, v)) < share) | always
            keep[:, 0] = True
            sub[:, :, pos] = keep & taken[:, :, j]
            sizes[:, :, j] += sub[:, :, pos]
    taken = _thin(taken, sizes, valid, max_total, streams)
    for j, plan in enumerate(plans):
        for pos in plan.channels:
            sub[:, :, pos] &= taken[:, :, j]
    return sub


def _thin(
    taken: np.ndarray, sizes: np.ndarray, valid: np.ndarray, max_total: int, streams: Streams
) -> np.ndarray:
    """Drop random whole groups (not at the first or last visit) beyond ``max_total`` events."""
    n, v, g = taken.shape
    totals = (sizes * taken).sum(axis=(1, 2))
    over = np.flatnonzero(totals > max_total)
    if len(over) == 0:
        return taken
    last = valid.sum(axis=1) - 1
    prio = streams.uniform("thinning", (n, v, g))[over]
    ends = np.zeros((len(over), v), dtype=bool)
    ends[:, 0] = True
    ends[np.arange(len(over)), last[over]] = True
    prio = np.where(ends[:, :, None], -1.0, prio).reshape(len(over), v * g)
    size = (sizes[over] * taken[over]).reshape(len(over), v * g)
    order = np.argsort(prio, axis=1, kind="stable")
    kept_sorted = np.cumsum(np.take_along_axis(size, order, axis=1), axis=1) <= max_total
    kept = np.zeros_like(kept_sorted)
    np.put_along_axis(kept, order, kept_sorted, axis=1)
    out = taken.copy()
    out[over] = taken[over] & kept.reshape(len(over), v, g)
    return out
