"""One block of simulated patients, from latent traits to the three raw tables.

The steps, each in its own module: who the patients are (:mod:`.demographics`), which diseases
they have and since when, and who dies (:mod:`.conditions`), when they are seen and what each
visit measures (:mod:`.visits`), and what the measurements read (:mod:`.physiology`). This module
runs them in order for one block of patients drawn from its own random streams, converts values
into the channels' units, keeps them inside the schema's bounds and decimals, keeps records
inside the per-patient limits, and lays out the ``patients``, ``events`` and ``conditions``
tables that :meth:`medsynth.cohort.Cohort.conform` takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medsynth.schema.model import Channel
from medsynth.simulator.conditions import condition_rows, sample_deceased, sample_diseases
from medsynth.simulator.demographics import attribute_role, sample_population
from medsynth.simulator.physiology import Physiology
from medsynth.simulator.plan import Plan
from medsynth.simulator.streams import Streams
from medsynth.simulator.visits import SECONDS_PER_DAY, measurement_masks, visit_rates, visit_times


@dataclass(frozen=True)
class RawBlock:
    """The three tables of one block, before conformance."""

    patients: pd.DataFrame
    events: pd.DataFrame
    conditions: pd.DataFrame


def to_channel(values: np.ndarray, channel: Channel) -> np.ndarray:
    """Keep values inside ``[min, max]`` and round them to the channel's decimals.

    Rounding never leaves the bounds: a bound that is not a multiple of the rounding step is
    approached from inside.
    """
    out = np.clip(values, channel.min, channel.max)
    if channel.decimals is None:
        return out
    step = 10.0**channel.decimals
    out = np.round(out, channel.decimals)
    out = np.where(out < channel.min, np.ceil(channel.min * step) / step, out)
    return np.where(out > channel.max, np.floor(channel.max * step) / step, out)


def _events(plan: Plan, ph: Physiology, mask: np.ndarray, times: np.ndarray) -> tuple:
    """(patient index, time, channel position, value) of every measured value."""
    pi, vi, ci = np.nonzero(mask)
    values = np.empty(len(pi))
    for pos, cp in enumerate(plan.channels):
        sel = ci == pos
        raw = ph.measured(cp.trait)[pi[sel], vi[sel]] * cp.scale + cp.offset
        values[sel] = to_channel(raw, cp.channel)
    return pi, times[pi, vi], ci, values


def _anchor_shift(plan: Plan, n: int, pi: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-patient shift that puts the first (or last) event on the anchor when thinning moved it.

    Visits already start at 0 (``first_event``) or end at the horizon (``last_event``); a shift
    is only needed when the per-patient total limit dropped every group of that visit.
    """
    shift = np.zeros(n)
    if len(pi) == 0 or plan.schema.time.anchor == "fixed_date":
        return shift
    has = np.zeros(n, dtype=bool)
    has[pi] = True
    if plan.schema.time.anchor == "first_event":
        first = np.full(n, np.inf)
        np.minimum.at(first, pi, t)
        return np.where(has, -first, 0.0)
    last = np.full(n, -np.inf)
    np.maximum.at(last, pi, t)
    return np.where(has, plan.schema.time.horizon_days - last, 0.0)


def _record_end(
    times: np.ndarray, n: int, pi: np.ndarray, t: np.ndarray, with_channels: bool
) -> np.ndarray:
    if not with_channels:
        return np.nanmax(np.where(np.isnan(times), -np.inf, times), axis=1)
    end = np.full(n, -np.inf)
    np.maximum.at(end, pi, t)
    return end


def _limit_conditions(frame: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """Keep each patient's ``limit`` earliest conditions (ties by code), as conform would."""
    frame = frame.sort_values(["_pos", "onset", "code"], kind="mergesort")
    if limit is not None:
        frame = frame[frame.groupby("_pos", sort=False).cumcount() < limit]
    return frame.reset_index(drop=True)


def simulate_block(plan: Plan, streams: Streams, ids: np.ndarray) -> RawBlock:
    """Simulate the patients named ``ids`` (one block) from ``streams``.

    The tables carry an extra integer column ``_pos`` (the patient's position in the block) so
    that callers can cut blocks into chunks without string comparisons.
    """
    schema, n = plan.schema, len(ids)
    horizon, clinic = schema.time.horizon_days, plan.clinic
    pop = sample_population(schema, n, streams, clinic)
    diseases = sample_diseases(plan.concepts, pop, horizon, streams, clinic)
    deceased = sample_deceased(plan.concepts, diseases, pop, horizon, streams)
    rate = visit_rates(plan.concepts, diseases, pop, deceased, streams, clinic)
    times = visit_times(
        schema.time, rate, deceased, schema.limits.max_events_per_channel, streams, clinic
    )

    pi = np.zeros(0, dtype=np.int64)
    t = ci = values = np.zeros(0)
    if plan.channels:
        mask = measurement_masks(
            times,
            plan.groups,
            len(plan.channels),
            diseases,
            schema.limits.max_events_total,
            streams,
            clinic,
        )
        ph = Physiology(pop, diseases, times, streams)
        pi, t, ci, values = _events(plan, ph, mask, times)
    end = _record_end(times, n, pi, t, bool(plan.channels))
    shift = _anchor_shift(plan, n, pi, t)
    t = np.round((t + shift[pi]) * SECONDS_PER_DAY) / SECONDS_PER_DAY

    names = np.array([cp.channel.name for cp in plan.channels] or [""], dtype=object)
    events = pd.DataFrame(
        {
            "patient_id": ids[pi],
            "time": t,
            "channel": names[ci.astype(int)],
            "value": values,
            "_pos": pi,
        }
    )

    ci_idx, codes, onset = condition_rows(plan.condition_codes, diseases, end, streams)
    onset = np.clip(onset + shift[ci_idx], 0.0, horizon)
    onset = np.round(onset * SECONDS_PER_DAY) / SECONDS_PER_DAY
    conditions = _limit_conditions(
        pd.DataFrame({"patient_id": ids[ci_idx], "code": codes, "onset": onset, "_pos": ci_idx}),
        schema.limits.max_conditions,
    )

    columns = {"patient_id": ids}
    for attr in schema.attributes:
        role = attribute_role(attr)
        if role == "deceased":
            columns[attr.name] = deceased
        else:
            columns[attr.name] = pop.columns[attr.name]
    patients = pd.DataFrame(columns)
    patients["_pos"] = np.arange(n)
    return RawBlock(patients, events, conditions)
