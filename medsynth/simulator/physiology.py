"""Values of every channel at every visit, from a patient's traits, diseases and time.

A trait's value on its model scale is the sum of a population part (typical value, age, sex,
body mass index, race), disease shifts scaled by each disease's severity at that time (which
grows for progressive diseases, and fades in around an onset during the horizon), the patient's
own level, a slow Ornstein-Uhlenbeck fluctuation over irregular visit times (autocorrelation
``exp(-gap / memory)``), and measurement noise. Derived channels follow public formulas:
BMI = weight / height^2, total cholesterol = LDL + HDL + triglycerides / 5 (Friedewald),
glucose from HbA1c (ADAG: eAG = 28.7 * HbA1c - 46.7), eGFR from creatinine (CKD-EPI 2021),
total protein = albumin + globulin, INR from prothrombin time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medsynth.simulator.conditions import DAYS_PER_YEAR, Disease
from medsynth.simulator.demographics import Population
from medsynth.simulator.streams import Streams
from medsynth.simulator.traits import TRAIT_BY_KEY, Trait

_FADE_DAYS = 60.0  # how quickly a disease's effect appears around its onset


class Physiology:
    """Lazily computed (patients, visits) value matrices, memoised per trait."""

    def __init__(
        self, pop: Population, diseases: dict[str, Disease], times: np.ndarray, streams: Streams
    ) -> None:
        self.pop = pop
        self.diseases = diseases
        self.streams = streams
        valid = ~np.isnan(times)
        last = np.where(valid.any(axis=1), np.nanmax(np.where(valid, times, -np.inf), axis=1), 0)
        self.times = np.where(valid, times, last[:, None])  # padding repeats the last visit
        self.age = pop.age[:, None] + self.times / DAYS_PER_YEAR
        self._cache: dict[str, np.ndarray] = {}

    # -- building blocks ---------------------------------------------------------------------
    def intensity(self, key: str) -> np.ndarray:
        """Severity of a disease at each visit; 0 before its onset and when absent."""
        name = f"intensity:{key}"
        if name not in self._cache:
            d = self.diseases.get(key)
            if d is None:
                self._cache[name] = np.zeros_like(self.times)
            else:
                onset = np.where(d.ever, d.onset, 0.0)[:, None]
                fade = 1.0 / (1.0 + np.exp(-np.clip((self.times - onset) / _FADE_DAYS, -50, 50)))
                years = np.maximum(self.times - np.maximum(onset, 0.0), 0.0) / DAYS_PER_YEAR
                level = d.severity[:, None] + d.progression[:, None] * years
                self._cache[name] = np.where(d.ever[:, None], fade * level, 0.0)
        return self._cache[name]

    def fluctuation(self, name: str, memory: float) -> np.ndarray:
        """A standard Ornstein-Uhlenbeck process sampled at the visits."""
        key = f"ou:{name}:{memory:g}"
        if key not in self._cache:
            eps = self.streams.normal(key, self.times.shape)
            x = np.empty_like(self.times)
            x[:, 0] = eps[:, 0]
            for j in range(1, self.times.shape[1]):
                rho = np.exp(-(self.times[:, j] - self.times[:, j - 1]) / memory)
                x[:, j] = rho * x[:, j - 1] + np.sqrt(1.0 - rho**2) * eps[:, j]
            self._cache[key] = x
        return self._cache[key]

    def level(self, name: str) -> np.ndarray:
        """A patient's standard-normal own level for ``name``, as a column."""
        key = f"level:{name}"
        if key not in self._cache:
            self._cache[key] = self.streams.normal(key, self.pop.n)[:, None]
        return self._cache[key]

    def _model(self, t: Trait) -> np.ndarray:
        """The trait without measurement noise, on its model scale."""
        p = self.pop
        x = (
            t.to_scale(t.center)
            + t.male * p.male[:, None]
            + t.age * (self.age - 50)
            + t.age_late * np.maximum(self.age - 60, 0)
            + t.bmi * (p.bmi0[:, None] - 27)
            + t.black * p.black[:, None]
        )
        for key, shift in t.effects:
            x = x + shift * self.intensity(key)
        own = np.sqrt(1.0 - t.loading**2)
        b, w = self.level(t.key) * own, self.fluctuation(t.key, t.memory) * own
        if t.shared is not None:
            b = b + t.loading * self.level(t.shared)
            w = w + t.loading * self.fluctuation(t.shared, t.memory)
        return x + t.between * b + t.within * w

    def _natural(self, t: Trait, x: np.ndarray) -> np.ndarray:
        return t.floor + np.exp(x) if t.log else x

    def noise(self, key: str) -> np.ndarray:
        return self.streams.normal(f"noise:{key}", self.times.shape)

    # -- values --------------------------------------------------------------------------------
    def true(self, t: Trait) -> np.ndarray:
        """The trait's value without measurement noise, in the trait's unit."""
        key = f"true:{t.key}"
        if key not in self._cache:
            if t.derived and t.key in _TRUE:
                self._cache[key] = _TRUE[t.key](self)
            else:
                self._cache[key] = self._natural(t, self._model(t))
        return self._cache[key]

    def measured(self, t: Trait) -> np.ndarray:
        """The trait as measured at each visit, in the trait's unit."""
        key = f"measured:{t.key}"
        if key not in self._cache:
            if t.derived:
                self._cache[key] = _MEASURED[t.key](self)
            else:
                x = self._model(t) + t.noise * self.noise(t.key)
                self._cache[key] = self._natural(t, x)
        return self._cache[key]

    def measured_key(self, key: str) -> np.ndarray:
        return self.measured(TRAIT_BY_KEY[key])

    def true_key(self, key: str) -> np.ndarray:
        return self.true(TRAIT_BY_KEY[key])


# -- derived traits -------------------------------------------------------------------------------
def _height_true(ph: Physiology) -> np.ndarray:
    return np.broadcast_to(ph.pop.height[:, None], ph.times.shape).copy()


def _bmi_true(ph: Physiology) -> np.ndarray:
    p = ph.pop
    trend = p.bmi_drift[:, None] * ph.times / DAYS_PER_YEAR
    return p.bmi0[:, None] * np.exp(trend + 0.02 * ph.fluctuation("bmi", 200.0))


def _weight_true(ph: Physiology) -> np.ndarray:
    return _bmi_true(ph) * (ph.true_key("height") / 100) ** 2


def _bmi_measured(ph: Physiology) -> np.ndarray:
    return ph.measured_key("weight") / (ph.true_key("height") / 100) ** 2


def _diastolic(ph: Physiology) -> np.ndarray:
    t = TRAIT_BY_KEY["diastolic_bp"]
    dbp = ph._model(t) + t.noise * ph.noise(t.key)
    return np.minimum(dbp, ph.measured_key("systolic_bp") - 10.0)


def _glucose(ph: Physiology) -> np.ndarray:
    eag = 28.7 * ph.true_key("hba1c") - 46.7
    diabetic = (ph.intensity("diabetes") + ph.intensity("diabetes_t1")) > 0.5
    sd = np.where(diabetic, 0.15, 0.09)
    return np.maximum(eag - 8.0, 40.0) * np.exp(sd * ph.noise("glucose"))


def _egfr(ph: Physiology) -> np.ndarray:
    """CKD-EPI 2021 creatinine equation (race-free)."""
    male = ph.pop.male[:, None]
    kappa, alpha = np.where(male, 0.9, 0.7), np.where(male, -0.302, -0.241)
    ratio = ph.measured_key("creatinine") / kappa
    egfr = (
        142
        * np.minimum(ratio, 1) ** alpha
        * np.maximum(ratio, 1) ** -1.2
        * 0.9938**ph.age
        * np.where(male, 1.0, 1.012)
    )
    return egfr


def _total_cholesterol(ph: Physiology) -> np.ndarray:
    return (
        ph.measured_key("ldl")
        + ph.measured_key("hdl")
        + ph.measured_key("triglycerides") / 5
        + 4.0 * ph.noise("cholesterol_total")
    )


def _total_protein(ph: Physiology) -> np.ndarray:
    return ph.true_key("albumin") + ph.true_key("globulin") + 0.1 * ph.noise("total_protein")


def _inr(ph: Physiology) -> np.ndarray:
    return (ph.measured_key("prothrombin_time") / 12.2) ** 1.1


_TRUE: dict[str, Callable[[Physiology], np.ndarray]] = {
    "height": _height_true,
    "weight": _weight_true,
    "bmi": _bmi_true,
}
_MEASURED: dict[str, Callable[[Physiology], np.ndarray]] = {
    "height": lambda ph: ph.true_key("height") + 0.6 * ph.noise("height"),
    "weight": lambda ph: ph.true_key("weight") * np.exp(0.005 * ph.noise("weight")),
    "bmi": _bmi_measured,
    "diastolic_bp": _diastolic,
    "glucose": _glucose,
    "egfr": _egfr,
    "cholesterol_total": _total_cholesterol,
    "total_protein": _total_protein,
    "inr": _inr,
}
