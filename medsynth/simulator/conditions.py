"""Who has which disease, since when, and how severe: condition onsets and death.

Each concept gets, per patient, an onset in days since time zero (:data:`BEFORE` when present
at time zero, ``inf`` when absent during the horizon), a severity around 1 and a yearly
progression of that severity. Physiology reads these to shift channels; the condition table
reports onsets clipped to 0 for conditions present at time zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medsynth.simulator.concepts import Concept
from medsynth.simulator.demographics import Population
from medsynth.simulator.streams import Streams

BEFORE = -3650.0  # onset of a disease already present at time zero (ten years before)
DAYS_PER_YEAR = 365.25
_HR_DAMPING = 0.7
_HR_CAP = 5.0


@dataclass(frozen=True)
class Disease:
    """One concept across a block of patients."""

    onset: np.ndarray  # days since time zero; BEFORE at time zero; inf when absent
    severity: np.ndarray  # about 1 at onset
    progression: np.ndarray  # severity gained per year after onset

    @property
    def ever(self) -> np.ndarray:
        return np.isfinite(self.onset)

    @property
    def at_start(self) -> np.ndarray:
        return self.onset < 0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _odds(c: Concept, pop: Population, found: dict[str, Disease], clinic: bool) -> np.ndarray:
    base = c.clinic_logit if clinic and c.clinic_logit is not None else c.logit
    x = (
        base
        + c.age * (pop.age - 50)
        + c.male * pop.male
        + c.bmi * (pop.bmi0 - 27)
        + c.black * pop.black
        + c.hispanic * pop.hispanic
    )
    for key, shift in c.risks:
        if key in found:
            x = x + shift * found[key].ever
    return _sigmoid(x)


def _logistic_onset(c: Concept, p: np.ndarray, horizon: float, streams: Streams) -> np.ndarray:
    u = streams.uniform(f"onset:{c.key}", (len(p), 2))
    hazard = np.maximum(c.incidence * p, 1e-9) / DAYS_PER_YEAR
    later = -np.log1p(-u[:, 1]) / hazard
    return np.where(u[:, 0] < p, BEFORE, np.where(later <= horizon, later, np.inf))


def _bmi_onset(c: Concept, pop: Population, horizon: float, streams: Streams) -> np.ndarray:
    threshold = float(c.bmi_threshold)  # type: ignore[arg-type]
    coded = streams.uniform(f"coded:{c.key}", pop.n) < 0.85
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = np.log(threshold / pop.bmi0) / pop.bmi_drift * DAYS_PER_YEAR
    later = np.where((pop.bmi_drift > 0) & (cross <= horizon), cross, np.inf)
    onset = np.where(pop.bmi0 >= threshold, BEFORE, later)
    return np.where(coded, onset, np.inf)


def _complication_onset(
    c: Concept,
    parent: Disease,
    pop: Population,
    horizon: float,
    streams: Streams,
    clinic: bool,
    found: dict[str, Disease],
) -> np.ndarray:
    """When the parent's severity first reaches a per-patient threshold (or another cause)."""
    theta = c.threshold * np.exp(0.2 * streams.normal(f"threshold:{c.key}", pop.n))
    start = np.maximum(parent.onset, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = (theta - parent.severity) / parent.progression * DAYS_PER_YEAR
    wait = np.where(parent.severity >= theta, 0.0, np.where(parent.progression > 0, wait, np.inf))
    via_parent = np.where(parent.at_start & (wait == 0), BEFORE, start + wait)
    via_parent = np.where(parent.ever & (via_parent <= horizon), via_parent, np.inf)
    other = _logistic_onset(c, _odds(c, pop, found, clinic), horizon, streams)
    return np.minimum(via_parent, other)


def sample_diseases(
    concepts: Sequence[Concept],
    pop: Population,
    horizon: float,
    streams: Streams,
    clinic: bool = False,
) -> dict[str, Disease]:
    """Onset, severity and progression of every concept, in dependency order."""
    found: dict[str, Disease] = {}
    for c in concepts:
        severity = np.exp(c.severity_sd * streams.normal(f"severity:{c.key}", pop.n))
        progression = c.progression * streams.rng(f"progression:{c.key}").gamma(2.0, 0.5, pop.n)
        if c.bmi_threshold is not None:
            onset = _bmi_onset(c, pop, horizon, streams)
        elif c.parent is not None and c.parent in found:
            onset = _complication_onset(c, found[c.parent], pop, horizon, streams, clinic, found)
        else:
            onset = _logistic_onset(c, _odds(c, pop, found, clinic), horizon, streams)
        found[c.key] = Disease(onset, severity, progression)
    for c in concepts:
        if c.excluded_by is not None and c.excluded_by in found:
            d = found[c.key]
            onset = np.where(found[c.excluded_by].at_start, np.inf, d.onset)
            found[c.key] = Disease(onset, d.severity, d.progression)
    return found


def sample_deceased(
    concepts: Sequence[Concept],
    diseases: dict[str, Disease],
    pop: Population,
    horizon: float,
    streams: Streams,
) -> np.ndarray:
    """Death during the horizon: a Gompertz hazard in age times disease hazard ratios.

    Hazard ratios of single diseases overlap (they were not adjusted for one another), so their
    combined log is damped by :data:`_HR_DAMPING` and capped at :data:`_HR_CAP`.
    """
    shift = np.zeros(pop.n)
    for c in concepts:
        if c.mortality != 1.0:
            shift = shift + np.log(c.mortality) * diseases[c.key].ever
    log_hazard = -10.2 + 0.085 * pop.age + np.minimum(_HR_DAMPING * shift, np.log(_HR_CAP))
    p = -np.expm1(-np.exp(log_hazard) * horizon / DAYS_PER_YEAR)
    return streams.uniform("deceased", pop.n) < p


def condition_rows(
    codes: Sequence[tuple[str, str]],
    diseases: dict[str, Disease],
    record_end: np.ndarray,
    streams: Streams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patient index, code, onset) for each schema code; ``codes`` pairs code and concept.

    A condition is reported when it is present by the patient's last visit. When several schema
    codes name one concept, each patient gets one of them (the first most often).
    """
    by_concept: dict[str, list[str]] = {}
    for code, key in codes:
        by_concept.setdefault(key, []).append(code)
    idx_parts, code_parts, onset_parts = [], [], []
    for key, names in by_concept.items():
        d = diseases[key]
        keep = d.ever & (d.onset <= record_end)
        rows = np.flatnonzero(keep)
        if len(names) > 1:
            w = 0.6 ** np.arange(len(names))
            cum = np.cumsum(w) / w.sum()
            u = streams.uniform(f"code-choice:{key}", len(keep))[rows]
            chosen = np.minimum((u[:, None] > cum[None, :]).sum(axis=1), len(names) - 1)
        else:
            chosen = np.zeros(len(rows), dtype=int)
        idx_parts.append(rows)
        code_parts.append(np.array(names, dtype=object)[chosen])
        onset_parts.append(np.maximum(d.onset[rows], 0.0))
    if not idx_parts:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=object), np.zeros(0)
    return np.concatenate(idx_parts), np.concatenate(code_parts), np.concatenate(onset_parts)
