"""Fidelity of the time series: how patient timelines compare, real against synthetic.

Patient records are event streams, so matching the marginals of values is not enough: the number
of events per patient, the spacing of visits, how a value carries over from one measurement to
the next and where trajectories head must match too. Each figure is simple enough to recompute:

* **events per patient TVD**: TVD between the histograms of events per patient (patients with
  none included), binned equal-width over ``[0, limits.max_events_total]``;
* **gap TVD / KS**: the gaps in days between a patient's consecutive distinct event times,
  binned at public edges (1 day, 1 week, 1, 3, 6 months, 1 and 2 years, the horizon);
* **channel share TVD**: TVD between the shares of events falling on each channel;
* **lag-1 correlation difference**: per channel, the Pearson correlation between consecutive
  values of the same patient (pairs pooled over patients), real minus synthetic in absolute
  value; it measures how persistent a patient's level is;
* **slope difference**: per channel, the least-squares slope of value against time (per year)
  of each patient with two or more measurements at distinct times; the *median* over patients
  (a mean is ruled by the few patients with two measurements days apart, whose slopes are
  huge) is compared, the absolute difference divided by the channel's public range
  ``max - min``;
* **slope KS**: the KS statistic between the per-patient slope distributions (trajectory shape:
  how many patients rise, stay flat or fall, and how fast).

The evaluator also draws a *face-validation gallery*: a few synthetic patients' whole timelines
(attributes, conditions, their most measured channels), to be plotted against the schema's
public normal ranges. Only synthetic records are drawn; no real patient appears in the result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from medsynth.audit.base import AuditInputs, AuditResult, Evaluator, not_run
from medsynth.audit.fidelity import (
    MIN_PATIENTS,
    _edge_labels,
    _max,
    _mean,
    bin_counts,
    equal_width_edges,
    ks_statistic,
    tvd,
)
from medsynth.audit.visits import STRUCTURE_FIELDS, structure_counts, visit_figures
from medsynth.cohort import PATIENT_ID, Cohort

DAYS_PER_YEAR = 365.25
GAP_EDGES_DAYS = (0.0, 1.0, 7.0, 30.0, 91.0, 182.0, 365.0, 730.0)


# -- per-cohort quantities ------------------------------------------------------------------------
def events_per_patient(cohort: Cohort) -> np.ndarray:
    """Number of events of each patient (cohort order; zero for patients without events)."""
    counts = cohort.events.groupby(PATIENT_ID).size()
    return counts.reindex(cohort.patients[PATIENT_ID], fill_value=0).to_numpy(dtype="int64")


def count_edges(max_total: int) -> np.ndarray:
    """Public bins for events per patient: single counts up to 10, then widening steps.

    Bin ``[a, b)`` holds the patients with ``a`` to ``b - 1`` events; the last bin ends at
    ``max_total + 1`` so that it holds exactly the records at the public limit.
    """
    steps = [
        *range(0, 11),
        12,
        15,
        20,
        25,
        30,
        40,
        50,
        60,
        80,
        100,
        120,
        150,
        200,
        250,
        300,
        400,
        500,
        600,
        800,
        1000,
    ]
    inner = [s for s in steps if s <= max_total]
    return np.array([*inner, max_total + 1], dtype="float64")


def count_labels(edges: np.ndarray) -> list[str]:
    """Labels of integer bins ``[a, b)``: ``"a"`` or ``"a-(b-1)"``."""
    out = []
    for a, b in zip(edges[:-1].astype(int), edges[1:].astype(int), strict=True):
        out.append(str(a) if b - a == 1 else f"{a}-{b - 1}")
    return out


def gap_edges(horizon_days: float) -> np.ndarray:
    """Public edges for gaps between events: fixed clinical spans cut at the horizon."""
    inner = [e for e in GAP_EDGES_DAYS if e < horizon_days]
    return np.array([*inner, float(horizon_days)])


def event_gaps(cohort: Cohort) -> np.ndarray:
    """Gaps in days between each patient's consecutive distinct event times, pooled."""
    times = cohort.events[[PATIENT_ID, "time"]].drop_duplicates().sort_values([PATIENT_ID, "time"])
    same = times[PATIENT_ID].to_numpy()[1:] == times[PATIENT_ID].to_numpy()[:-1]
    return np.diff(times["time"].to_numpy(dtype="float64"))[same]


def _channel_frame(cohort: Cohort, channel: str) -> pd.DataFrame:
    ev = cohort.events[cohort.events["channel"] == channel]
    return ev.sort_values([PATIENT_ID, "time"], kind="mergesort")


def lag1_correlation(cohort: Cohort, channel: str, *, min_pairs: int = 10) -> dict[str, Any]:
    """Pearson correlation of consecutive same-patient values of ``channel`` (None if too few)."""
    ev = _channel_frame(cohort, channel)
    ids, values = ev[PATIENT_ID].to_numpy(), ev["value"].to_numpy(dtype="float64")
    same = ids[1:] == ids[:-1]
    x, y = values[:-1][same], values[1:][same]
    corr = None
    if len(x) >= min_pairs and np.std(x) > 0 and np.std(y) > 0:
        corr = float(np.corrcoef(x, y)[0, 1])
    return {"pairs": int(len(x)), "correlation": corr}


def patient_slopes(cohort: Cohort, channel: str) -> np.ndarray:
    """Least-squares slope (unit per year) of each patient with two or more distinct times."""
    ev = _channel_frame(cohort, channel)
    t = ev["time"].to_numpy(dtype="float64") / DAYS_PER_YEAR
    v = ev["value"].to_numpy(dtype="float64")
    key = ev[PATIENT_ID].to_numpy()
    frame = pd.DataFrame({"k": key, "t": t, "v": v})
    grouped = frame.groupby("k", sort=True)
    dt = t - grouped["t"].transform("mean").to_numpy()
    dv = v - grouped["v"].transform("mean").to_numpy()
    sums = pd.DataFrame({"k": key, "tv": dt * dv, "tt": dt * dt}).groupby("k", sort=True).sum()
    span = grouped["t"].max() - grouped["t"].min()
    ok = (span.to_numpy() > 0) & (sums["tt"].to_numpy() > 0)
    return (sums["tv"].to_numpy()[ok] / sums["tt"].to_numpy()[ok]).astype("float64")


def mean_trajectory(cohort: Cohort, channel: str, edges: np.ndarray) -> list[float | None]:
    """Mean value of ``channel`` per public time bin (None for empty bins)."""
    ev = cohort.events[cohort.events["channel"] == channel]
    t = ev["time"].to_numpy(dtype="float64")
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    sums = np.bincount(idx, weights=ev["value"].to_numpy(dtype="float64"), minlength=len(edges) - 1)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    return [float(s / c) if c else None for s, c in zip(sums, counts, strict=True)]


# -- comparison -----------------------------------------------------------------------------------
def timeseries_figures(
    real: Cohort, other: Cohort, *, bins: int = 10, min_pairs: int = 10
) -> dict[str, Any]:
    """Every time-series figure of ``other`` against ``real`` (per channel and overall)."""
    schema = real.schema
    c_edges = count_edges(schema.limits.max_events_total)
    ca = bin_counts(events_per_patient(real), c_edges)
    cb = bin_counts(events_per_patient(other), c_edges)
    g_edges = gap_edges(schema.time.horizon_days)
    ga, gb = event_gaps(real), event_gaps(other)
    names = list(schema.channel_names)
    share_a = real.events["channel"].value_counts().reindex(names, fill_value=0).to_numpy()
    share_b = other.events["channel"].value_counts().reindex(names, fill_value=0).to_numpy()
    t_edges = equal_width_edges(0, schema.time.horizon_days, bins)
    channels: dict[str, Any] = {}
    for ch in schema.channels:
        la = lag1_correlation(real, ch.name, min_pairs=min_pairs)
        lb = lag1_correlation(other, ch.name, min_pairs=min_pairs)
        sa, sb = patient_slopes(real, ch.name), patient_slopes(other, ch.name)
        span = ch.max - ch.min
        ma = float(np.median(sa)) if len(sa) else None
        mb = float(np.median(sb)) if len(sb) else None
        channels[ch.name] = {
            "display": ch.display,
            "unit": ch.unit,
            "min": ch.min,
            "max": ch.max,
            "normal": list(ch.normal) if ch.normal else None,
            "lag1_real": la["correlation"],
            "lag1_synthetic": lb["correlation"],
            "lag1_pairs_real": la["pairs"],
            "lag1_pairs_synthetic": lb["pairs"],
            "lag1_difference": (
                abs(la["correlation"] - lb["correlation"])
                if la["correlation"] is not None and lb["correlation"] is not None
                else None
            ),
            "slope_real": ma,
            "slope_synthetic": mb,
            "slope_patients_real": int(len(sa)),
            "slope_patients_synthetic": int(len(sb)),
            "slope_difference_scaled": (
                abs(ma - mb) / span if ma is not None and mb is not None else None
            ),
            "slope_ks": ks_statistic(sa / span, sb / span),
            "trajectory_real": mean_trajectory(real, ch.name, t_edges),
            "trajectory_synthetic": mean_trajectory(other, ch.name, t_edges),
        }
    return {
        "events_per_patient": {
            "edges": c_edges.tolist(),
            "labels": count_labels(c_edges),
            "real": ca.tolist(),
            "synthetic": cb.tolist(),
            "tvd": tvd(ca, cb),
        },
        "gaps": {
            "edges": g_edges.tolist(),
            "labels": list(_edge_labels(g_edges, 0)),
            "real": bin_counts(ga, g_edges).tolist(),
            "synthetic": bin_counts(gb, g_edges).tolist(),
            "tvd": tvd(bin_counts(ga, g_edges), bin_counts(gb, g_edges)),
            "ks": ks_statistic(ga, gb),
        },
        "channel_share": {
            "labels": names,
            "real": share_a.tolist(),
            "synthetic": share_b.tolist(),
            "tvd": tvd(share_a, share_b),
        },
        "time_edges": t_edges.tolist(),
        "channels": channels,
        "plausibility": plausibility(real, other),
    }


def plausibility(real: Cohort, other: Cohort) -> dict[str, Any]:
    """What a clinician checks first in a timeline (:mod:`medsynth.audit.visits`): values of one
    channel repeated at one visit (a patient-day), diagnoses dated after the last visit,
    channels missing from visits, visits per patient, and values beyond the schema's bounds."""
    outside = 0
    for ch in other.schema.channels:
        values = other.events.loc[other.events["channel"] == ch.name, "value"]
        outside += int(((values < ch.min) | (values > ch.max)).sum())
    if len(real.events) and len(other.events):
        fig = visit_figures(real, other)  # holds the structure counts of ``other`` too
        counts = {k: getattr(fig, k) for k in STRUCTURE_FIELDS}
        presence_gap, visits = fig.presence_max_gap, fig.visits_tvd
        presence = {"real": fig.presence_real, "synthetic": fig.presence_synthetic}
    else:
        counts = structure_counts(other)
        presence_gap, visits, presence = None, None, {}
    return {
        "repeat_cells": counts["repeat_cells"],
        "cells": counts["cells"],
        "repeat_share": counts["repeat_cells"] / counts["cells"] if counts["cells"] else 0.0,
        "onsets_after_last_visit": counts["onsets_after_last_visit"],
        "onsets": counts["onsets"],
        "onsets_after_last_visit_share": (
            counts["onsets_after_last_visit"] / counts["onsets"] if counts["onsets"] else 0.0
        ),
        "values_outside_bounds": outside,
        "presence": presence,
        "presence_gap_max": presence_gap,
        "visits_per_patient_tvd": visits,
    }


def summarize_timeseries(fig: dict[str, Any]) -> dict[str, Any]:
    """The flat headline figures a policy can set thresholds on."""
    ch = fig["channels"].values()
    return {
        "events_per_patient_tvd": fig["events_per_patient"]["tvd"],
        "gap_tvd": fig["gaps"]["tvd"],
        "gap_ks": fig["gaps"]["ks"],
        "channel_share_tvd": fig["channel_share"]["tvd"],
        "lag1_diff_max": _max([c["lag1_difference"] for c in ch]),
        "lag1_diff_mean": _mean([c["lag1_difference"] for c in ch]),
        "slope_diff_max": _max([c["slope_difference_scaled"] for c in ch]),
        "slope_ks_max": _max([c["slope_ks"] for c in ch]),
        "repeat_share": fig["plausibility"]["repeat_share"],
        "onsets_after_last_visit_share": fig["plausibility"]["onsets_after_last_visit_share"],
        "values_outside_bounds": fig["plausibility"]["values_outside_bounds"],
        "presence_gap_max": fig["plausibility"]["presence_gap_max"],
        "visits_per_patient_tvd": fig["plausibility"]["visits_per_patient_tvd"],
    }


def _attribute_text(cohort: Cohort, row: pd.Series) -> dict[str, str | None]:
    """A patient's static attributes as display text (category labels, rounded numbers)."""
    out: dict[str, str | None] = {}
    for attr in cohort.schema.attributes:
        v = row[attr.name]
        if pd.isna(v):
            out[attr.name] = None
        elif attr.type == "categorical":
            cat = next((c for c in attr.categories if c.value == v), None)
            out[attr.name] = cat.label if cat else str(v)
        elif attr.type == "numeric":
            out[attr.name] = f"{float(v):g}"
        else:
            out[attr.name] = ("yes" if v else "no") if attr.type == "boolean" else str(v)[:10]
    return out


def record_fingerprints(cohort: Cohort) -> np.ndarray:
    """One sha256 per patient (cohort order) of the record's content, its id left out.

    Two patients with the same attributes, events (time, channel, value) and conditions get the
    same fingerprint whatever their ids, so a synthetic patient that copies a real one is found
    even under another id, and two different patients sharing an id are told apart.
    """
    ids = cohort.patients[PATIENT_ID].astype("object").to_numpy()
    attrs = cohort.patients.drop(columns=[PATIENT_ID]).astype("object")
    attr_text = attrs.apply(lambda r: "|".join(map(repr, r.tolist())), axis=1).to_numpy()
    ev = cohort.events.sort_values([PATIENT_ID, "time", "channel", "value"], kind="mergesort")
    ev_text = pd.Series(
        [
            f"{t:.6g}:{c}={v:.6g}"
            for t, c, v in zip(ev["time"], ev["channel"], ev["value"], strict=True)
        ],
        dtype=object,
    )
    ev_by = ev_text.groupby(ev[PATIENT_ID].to_numpy()).agg(";".join) if len(ev) else {}
    cond = cohort.conditions.sort_values([PATIENT_ID, "code"], kind="mergesort")
    cond_text = pd.Series(
        [f"{c}@{o:.6g}" for c, o in zip(cond["code"], cond["onset"], strict=True)], dtype=object
    )
    cond_by = cond_text.groupby(cond[PATIENT_ID].to_numpy()).agg(";".join) if len(cond) else {}
    out = []
    for pid, a in zip(ids, attr_text, strict=True):
        text = f"{a}#{ev_by.get(pid, '')}#{cond_by.get(pid, '')}"
        out.append(hashlib.sha256(text.encode()).hexdigest())
    return np.array(out, dtype=object)


def gallery(
    synthetic: Cohort,
    *,
    n_patients: int = 4,
    n_channels: int = 4,
    random_state: int = 0,
    real: Iterable[Cohort] = (),
) -> dict[str, Any]:
    """A few synthetic patients' whole timelines, for face validation by a clinician.

    Patients are drawn at random *by position* among the synthetic rows with events at two or
    more distinct times; ids play no part (a generator may reuse ids such as ``sim-000000``
    that real patients also carry). Synthetic rows whose whole record equals a real patient's record
    (same content under any id, see :func:`record_fingerprints`) are never drawn, so no real
    timeline is shown even when the synthetic data copies real records. Each patient comes
    with its static attributes, its conditions (with onset day) and its ``n_channels`` most
    measured channels, each with the schema's public bounds and normal range.

    Returns:
        ``{"horizon_days", "patients", "eligible", "excluded_copies", "note"}``; ``note`` says
        why fewer patients than asked are shown (empty when all could be).
    """
    schema = synthetic.schema
    ev = synthetic.events
    ids = synthetic.patients[PATIENT_ID].astype("object").to_numpy()
    sizes = ev.groupby(PATIENT_ID)["time"].nunique()
    n_times = sizes.reindex(ids, fill_value=0).to_numpy()
    rows = np.flatnonzero(n_times >= 2)
    copies = 0
    real = [c for c in real if c.n_patients]
    if len(rows) and real:
        known = set().union(*(set(record_fingerprints(c).tolist()) for c in real))
        mine = record_fingerprints(synthetic)
        is_copy = np.array([mine[i] in known for i in rows], dtype=bool)
        copies = int(is_copy.sum())
        rows = rows[~is_copy]
    rng = np.random.default_rng(random_state)
    take = min(n_patients, len(rows))
    chosen = np.sort(rng.choice(rows, size=take, replace=False)) if take else np.zeros(0, int)
    note = ""
    if take < n_patients:
        note = (
            f"{take} of the {n_patients} requested synthetic timelines could be shown: "
            f"{int((n_times >= 2).sum())} of {len(ids)} synthetic patients have events at two "
            f"or more times"
            + (
                f", and {copies} of those are exact copies of real records (never shown)"
                if copies
                else ""
            )
            + "."
        )
    events_by_row = {i: ev[ev[PATIENT_ID] == ids[i]] for i in chosen}
    out = [_timeline(synthetic, int(i), events_by_row[i], n_channels) for i in chosen.tolist()]
    return {
        "horizon_days": float(schema.time.horizon_days),
        "patients": out,
        "eligible": int(len(rows)),
        "excluded_copies": copies,
        "note": note,
    }


def _timeline(synthetic: Cohort, row: int, g: pd.DataFrame, n_channels: int) -> dict[str, Any]:
    """One synthetic patient (by row position) as plain data for the gallery."""
    schema = synthetic.schema
    g = g.sort_values("time", kind="mergesort")
    counts = g["channel"].value_counts()
    names = sorted(counts.index, key=lambda c: (-int(counts[c]), schema.channel_names.index(c)))
    series = {}
    for name in names[:n_channels]:
        ch = schema.channel_by_name[name]
        part = g[g["channel"] == name]
        series[name] = {
            "display": ch.display,
            "unit": ch.unit,
            "min": ch.min,
            "max": ch.max,
            "normal": list(ch.normal) if ch.normal else None,
            "time": part["time"].round(4).tolist(),
            "value": part["value"].tolist(),
        }
    pid = synthetic.patients[PATIENT_ID].iloc[row]
    cond = synthetic.conditions[synthetic.conditions[PATIENT_ID] == pid].sort_values("onset")
    return {
        "row": row,
        "attributes": [  # pairs in schema order (canonical JSON sorts object keys)
            [k, v] for k, v in _attribute_text(synthetic, synthetic.patients.iloc[row]).items()
        ],
        "conditions": [
            {
                "code": c,
                "display": schema.condition_by_code[c].display,
                "onset": round(float(o), 1),
            }
            for c, o in zip(cond["code"], cond["onset"], strict=True)
        ],
        "events": int(len(g)),
        "channels": series,
    }


# -- evaluator ------------------------------------------------------------------------------------
class TimeSeriesEvaluator(Evaluator):
    """Time-series fidelity of the synthetic cohort against the training cohort.

    Args:
        inputs: the audit inputs.
        bins: number of public bins for the time axis of the mean trajectories.
        min_pairs: fewest consecutive pairs for a lag-1 correlation.
        gallery_channels: channels in the face-validation gallery.
        gallery_patients: synthetic patients per gallery channel.
    """

    name = "timeseries"
    kind = "fidelity"

    def __init__(
        self,
        inputs: AuditInputs,
        *,
        bins: int = 10,
        min_pairs: int = 10,
        gallery_channels: int = 4,
        gallery_patients: int = 4,
    ) -> None:
        super().__init__(inputs)
        self.bins = bins
        self.min_pairs = min_pairs
        self.gallery_channels = gallery_channels
        self.gallery_patients = gallery_patients

    def _run(self) -> AuditResult:
        train, holdout, synth = self.inputs.train, self.inputs.holdout, self.inputs.synthetic
        params = {
            "bins": self.bins,
            "min_pairs": self.min_pairs,
            "reference": "train",
            "gallery_channels": self.gallery_channels,
            "gallery_patients": self.gallery_patients,
            "random_state": self.inputs.random_state,
        }
        problems = [
            f"{n} has {c.n_patients} patients and {len(c.events)} events"
            for n, c in (("train", train), ("synthetic", synth))
            if c.n_patients < MIN_PATIENTS or len(c.events) == 0
        ]
        if problems:
            return not_run(
                self.name,
                self.kind,
                f"needs {MIN_PATIENTS}+ patients with events per cohort: {'; '.join(problems)}",
                params,
            )
        fig = timeseries_figures(train, synth, bins=self.bins, min_pairs=self.min_pairs)
        baseline: dict[str, Any] = {}
        if holdout.n_patients >= MIN_PATIENTS and len(holdout.events):
            baseline = summarize_timeseries(
                timeseries_figures(train, holdout, bins=self.bins, min_pairs=self.min_pairs)
            )
        fig["gallery"] = gallery(
            synth,
            n_channels=self.gallery_channels,
            n_patients=self.gallery_patients,
            random_state=self.inputs.random_state,
            real=(train, holdout),
        )
        return AuditResult(
            name=self.name,
            kind=self.kind,
            status="ok",
            metrics=summarize_timeseries(fig),
            baseline=baseline,
            parameters=params,
            details=fig,
        )
