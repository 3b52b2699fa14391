"""Visit-level figures of a longitudinal cohort, as a clinician reads a timeline.

A **visit** is one patient on one calendar day (``floor`` of the event time in days from the
patient's time zero) with at least one measurement. The figures compare a synthetic cohort
with the real training cohort it was trained on (or a real holdout with the training cohort:
the sampling floor of each figure). Their definitions are those of the shared pbcseq export's
README, so a figure measured here can be checked against it:

* **lab TVD**: per channel, the TVD between the distributions of its value over visits, in 10
  equal-width bins between the *real* minimum and maximum (values outside are clipped into the
  end bins), a visit without the channel in a bin of its own; averaged over channels;
* **visits TVD**: the TVD between the distributions of visits per patient (exact counts);
* **gap TVD**: the TVD between the distributions of days between consecutive visits of a
  patient, 10 equal-width bins over the real range;
* **lag-1 MAD**: per channel with at least 30 real pairs, the Spearman correlation of
  consecutive visit values of a patient; the mean absolute difference real vs synthetic;
* **presence**: per channel, the share of visits holding it.

Structure counts of the synthetic side, which plausible records never break:

* **repeat cells**: (patient, day, channel) cells holding two or more values;
* **onsets after the last visit**: conditions whose onset day is after the patient's last visit
  day (counted over conditions with an onset; patients without visits are not counted).

The data are read only to compute these figures; nothing is learned from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from medsynth.cohort import PATIENT_ID, Cohort

__all__ = ["STRUCTURE_FIELDS", "VisitFigures", "structure_counts", "visit_figures", "visit_table"]

# The keys of :func:`structure_counts`, also fields of :class:`VisitFigures`.
STRUCTURE_FIELDS = ("repeat_cells", "cells", "onsets_after_last_visit", "onsets")

N_BINS = 10
MIN_LAG_PAIRS = 30
_DAY = "day"


def visit_table(cohort: Cohort, channels: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per visit (patient, day), one column per channel: the visit's first value.

    The index is ``(patient_id, day)``, sorted; a channel the visit lacks is NaN.
    """
    names = list(channels or cohort.schema.channel_names)
    ev = cohort.events[cohort.events["channel"].isin(names)]
    frame = pd.DataFrame(
        {
            PATIENT_ID: ev[PATIENT_ID].to_numpy(),
            _DAY: np.floor(ev["time"].to_numpy(dtype="float64") + 1e-9).astype("int64"),
            "channel": ev["channel"].to_numpy(),
            "value": ev["value"].to_numpy(dtype="float64"),
            "time": ev["time"].to_numpy(dtype="float64"),
        }
    ).sort_values([PATIENT_ID, _DAY, "time"], kind="stable")
    wide = frame.groupby([PATIENT_ID, _DAY, "channel"], sort=True)["value"].first().unstack()
    return wide.reindex(columns=names)


def _tvd(p: pd.Series, q: pd.Series) -> float:
    keys = p.index.union(q.index)
    a = p.reindex(keys, fill_value=0.0)
    b = q.reindex(keys, fill_value=0.0)
    return 0.5 * float(np.abs(a / max(a.sum(), 1e-300) - b / max(b.sum(), 1e-300)).sum())


def _binned(values: np.ndarray, lo: float, hi: float) -> pd.Series:
    """Counts of 10 equal-width bins over ``[lo, hi]`` (clipped), NaN as bin -1."""
    v = np.asarray(values, dtype="float64")
    width = (hi - lo) / N_BINS if hi > lo else 1.0
    idx = np.where(np.isnan(v), -1, np.clip(np.floor((v - lo) / width), 0, N_BINS - 1))
    return pd.Series(idx.astype("int64")).value_counts()


def _gaps(table: pd.DataFrame) -> np.ndarray:
    days = table.index.to_frame(index=False)
    return days.groupby(PATIENT_ID)[_DAY].diff().dropna().to_numpy(dtype="float64")


def _lag_pairs(table: pd.DataFrame, channel: str) -> tuple[np.ndarray, np.ndarray]:
    col = table[channel].dropna()
    if col.empty:
        return np.empty(0), np.empty(0)
    frame = col.reset_index()
    nxt = frame.groupby(PATIENT_ID)[channel].shift(-1)
    keep = nxt.notna()
    return frame.loc[keep, channel].to_numpy(), nxt[keep].to_numpy()


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def _visits_per_patient(cohort: Cohort, table: pd.DataFrame) -> pd.Series:
    counts = table.groupby(level=PATIENT_ID).size()
    return counts.reindex(cohort.patients[PATIENT_ID], fill_value=0)


@dataclass(frozen=True)
class VisitFigures:
    """The figures of :func:`visit_figures` (see the module docstring)."""

    lab_tvd: float
    visits_tvd: float
    gap_tvd: float
    lag1_mad: float
    presence_real: dict[str, float] = field(default_factory=dict)
    presence_synthetic: dict[str, float] = field(default_factory=dict)
    lab_tvd_by_channel: dict[str, float] = field(default_factory=dict)
    repeat_cells: int = 0
    cells: int = 0
    onsets_after_last_visit: int = 0
    onsets: int = 0
    visits_real: int = 0
    visits_synthetic: int = 0

    @property
    def presence_max_gap(self) -> float:
        """Largest absolute difference of per-channel presence at visits (in shares)."""
        gaps = [
            abs(self.presence_real[c] - self.presence_synthetic.get(c, 0.0))
            for c in self.presence_real
        ]
        return max(gaps, default=0.0)

    def to_dict(self) -> dict[str, object]:
        return {
            "lab_tvd": self.lab_tvd,
            "visits_tvd": self.visits_tvd,
            "gap_tvd": self.gap_tvd,
            "lag1_mad": self.lag1_mad,
            "presence_max_gap": self.presence_max_gap,
            "presence_real": self.presence_real,
            "presence_synthetic": self.presence_synthetic,
            "lab_tvd_by_channel": self.lab_tvd_by_channel,
            "repeat_cells": self.repeat_cells,
            "cells": self.cells,
            "onsets_after_last_visit": self.onsets_after_last_visit,
            "onsets": self.onsets,
            "visits_real": self.visits_real,
            "visits_synthetic": self.visits_synthetic,
        }


def structure_counts(cohort: Cohort, channels: Sequence[str] | None = None) -> dict[str, int]:
    """Repeated (patient, day, channel) cells and condition onsets after the last visit."""
    names = list(channels or cohort.schema.channel_names)
    ev = cohort.events[cohort.events["channel"].isin(names)]
    day = np.floor(ev["time"].to_numpy(dtype="float64") + 1e-9).astype("int64")
    cells = pd.DataFrame({PATIENT_ID: ev[PATIENT_ID].to_numpy(), _DAY: day, "c": ev["channel"]})
    sizes = cells.groupby([PATIENT_ID, _DAY, "c"]).size()
    last = cells.groupby(PATIENT_ID)[_DAY].max()
    cond = cohort.conditions
    onset = cond["onset"].to_numpy(dtype="float64")
    with_onset = cond[np.isfinite(onset)]
    last_day = with_onset[PATIENT_ID].map(last)
    onset_day = np.floor(with_onset["onset"].to_numpy(dtype="float64") + 1e-9)
    known = last_day.notna().to_numpy()
    after = known & (onset_day > last_day.fillna(np.inf).to_numpy())
    return {
        "repeat_cells": int((sizes > 1).sum()),
        "cells": int(len(sizes)),
        "onsets_after_last_visit": int(after.sum()),
        "onsets": int(known.sum()),
    }


def visit_figures(
    real: Cohort, synthetic: Cohort, channels: Sequence[str] | None = None
) -> VisitFigures:
    """Visit-level figures of ``synthetic`` against ``real`` (see the module docstring)."""
    names = list(channels or real.schema.channel_names)
    rt, st = visit_table(real, names), visit_table(synthetic, names)
    lab = {}
    lags = []
    for c in names:
        r = rt[c].to_numpy(dtype="float64")
        present = r[~np.isnan(r)]
        if present.size == 0:
            continue
        lo, hi = float(present.min()), float(present.max())
        lab[c] = _tvd(_binned(r, lo, hi), _binned(st[c].to_numpy(dtype="float64"), lo, hi))
        ra, rb = _lag_pairs(rt, c)
        if len(ra) >= MIN_LAG_PAIRS:
            real_rho = _spearman(ra, rb)
            sa, sb = _lag_pairs(st, c)
            syn_rho = _spearman(sa, sb)
            if np.isfinite(real_rho):
                lags.append(abs(real_rho - (syn_rho if np.isfinite(syn_rho) else 0.0)))
    rg, sg = _gaps(rt), _gaps(st)
    if rg.size:
        lo, hi = float(rg.min()), float(rg.max())
        gap = _tvd(_binned(rg, lo, hi), _binned(sg, lo, hi))
    else:
        gap = float("nan")
    visits = _tvd(
        _visits_per_patient(real, rt).value_counts(),
        _visits_per_patient(synthetic, st).value_counts(),
    )
    counts = structure_counts(synthetic, names)
    return VisitFigures(
        lab_tvd=float(np.mean(list(lab.values()))) if lab else float("nan"),
        visits_tvd=visits,
        gap_tvd=gap,
        lag1_mad=float(np.mean(lags)) if lags else float("nan"),
        presence_real={c: float(rt[c].notna().mean()) if len(rt) else 0.0 for c in names},
        presence_synthetic={c: float(st[c].notna().mean()) if len(st) else 0.0 for c in names},
        lab_tvd_by_channel=lab,
        visits_real=len(rt),
        visits_synthetic=len(st),
        **counts,
    )
