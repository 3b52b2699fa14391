"""Who the simulated patients are: sex, age, race, ethnicity, state and body size.

Attributes are recognised by their FHIR home or name (``Patient.gender``, ``Patient.birthDate``,
``us-core-race``...) and their categories by OMB code, USPS code or plain words. Known categories
get rounded US figures (2020 census shares of race, ethnicity and state population; an adult age
pyramid thinning after 60); categories the simulator does not know get a fixed, decreasing
weighting in schema order. The latent traits that drive physiology (male, Black, Hispanic, body
mass index and its drift, height) are drawn here too, whether or not the schema outputs them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from medsynth.schema.model import Attribute, DatasetSchema
from medsynth.simulator.streams import Streams

# fmt: off
_SEX = {"female": 0.508, "male": 0.488, "other": 0.002, "unknown": 0.002}
_SEX_WORDS = {"female": ("female", "f", "woman", "women"), "male": ("male", "m", "man", "men"),
              "other": ("other", "o"), "unknown": ("unknown", "u", "unk")}
_ETHNICITY = {"hispanic": 0.187, "not_hispanic": 0.813, "unknown": 0.01}
_ETHNICITY_CODES = {"2135-2": "hispanic", "2186-5": "not_hispanic"}
_RACE_CODES = {"1002-5": "american_indian", "2028-9": "asian", "2054-5": "black",
               "2076-8": "pacific_islander", "2106-3": "white", "2131-1": "other"}
_RACE_WORDS = (("american_indian", ("indian", "alaska")), ("pacific_islander", ("hawaiian",
               "pacific")), ("black", ("black", "african")), ("asian", ("asian",)),
               ("white", ("white", "caucasian")), ("other", ("other", "multi", "two or more",
               "mixed")), ("unknown", ("unknown", "declined", "asked", "refused")))
# Race shares among non-Hispanic and Hispanic people (Hispanic people often record "other").
_RACE_NOT_HISPANIC = {"white": 0.73, "black": 0.14, "asian": 0.07, "american_indian": 0.008,
                      "pacific_islander": 0.002, "other": 0.05, "unknown": 0.01}
_RACE_HISPANIC = {"white": 0.58, "black": 0.03, "asian": 0.01, "american_indian": 0.02,
                  "pacific_islander": 0.002, "other": 0.35, "unknown": 0.01}
# 2020 census resident population, millions.
_STATES = dict(zip(
    "CA TX FL NY PA IL OH GA NC MI NJ VA WA AZ MA TN IN MD MO WI CO MN SC AL LA KY OR OK CT UT "
    "IA NV AR MS KS NM NE ID WV HI NH ME RI MT DE SD ND AK DC VT WY PR GU VI AS MP".split(),
    (39.5, 29.1, 21.5, 20.2, 13.0, 12.8, 11.8, 10.7, 10.4, 10.1, 9.3, 8.6, 7.7, 7.2, 7.0, 6.9,
     6.8, 6.2, 6.2, 5.9, 5.8, 5.7, 5.1, 5.0, 4.7, 4.5, 4.2, 4.0, 3.6, 3.3, 3.2, 3.1, 3.0, 3.0,
     2.9, 2.1, 2.0, 1.8, 1.8, 1.5, 1.4, 1.4, 1.1, 1.1, 1.0, 0.9, 0.8, 0.7, 0.7, 0.6, 0.6, 3.3,
     0.17, 0.09, 0.05, 0.05), strict=True))
# fmt: on
_VAGUE = ("other", "unknown", "declined", "asked", "not ", "none", "missing")


@dataclass
class Population:
    """Latent traits and output attribute columns of one block of patients."""

    n: int
    age: np.ndarray  # years at time zero, continuous
    male: np.ndarray
    black: np.ndarray
    hispanic: np.ndarray
    bmi0: np.ndarray  # body mass index at time zero, kg/m2
    bmi_drift: np.ndarray  # change of log BMI per year
    height: np.ndarray  # cm
    columns: dict[str, np.ndarray] = field(default_factory=dict)


def attribute_role(attr: Attribute) -> str:
    """What the simulator knows an attribute to be, or ``generic``."""
    name, fhir = attr.name.casefold(), attr.fhir.casefold()
    if attr.type == "categorical":
        if fhir == "patient.gender" or name in ("sex", "gender"):
            return "sex"
        if "race" in fhir or name == "race":
            return "race"
        if "ethnicity" in fhir or name == "ethnicity":
            return "ethnicity"
        if fhir.endswith("address.state") or name == "state":
            return "state"
    if fhir == "patient.birthdate" or name in ("age", "birth_date", "birthdate"):
        if attr.type in ("numeric", "date"):
            return "age" if attr.type == "numeric" else "birth_date"
    if attr.type == "boolean" and (fhir.startswith("patient.deceased") or "deceased" in name):
        return "deceased"
    return "generic"


def _words(text: str | None) -> str:
    return (text or "").casefold().replace("_", " ").replace("-", " ")


def _key_of(attr: Attribute, role: str, index: int) -> str | None:
    """Internal key of category ``index`` of a recognised attribute, or None."""
    cat = attr.categories[index]
    texts = [_words(cat.value), _words(cat.display), _words(cat.code)]
    if role == "sex":
        return next((k for k, ws in _SEX_WORDS.items() if any(t in ws for t in texts)), None)
    if role == "ethnicity":
        if cat.code in _ETHNICITY_CODES:
            return _ETHNICITY_CODES[cat.code]
        if any(w in t for t in texts for w in ("not ", "non ")):
            return "not_hispanic"
        return "hispanic" if any("hispanic" in t or "latin" in t for t in texts) else None
    if role == "race":
        if cat.code in _RACE_CODES:
            return _RACE_CODES[cat.code]
        return next((k for k, ws in _RACE_WORDS if any(w in t for t in texts for w in ws)), None)
    if role == "state":
        code = (cat.code or cat.value).upper()
        return code if code in _STATES else None
    return None


def _generic_weights(attr: Attribute) -> np.ndarray:
    w = np.array([(i + 1.0) ** -0.7 for i in range(len(attr.categories))])
    vague = [any(v in _words(c.label) + " " for v in _VAGUE) for c in attr.categories]
    return w * np.where(vague, 0.3, 1.0)


def _weights(attr: Attribute, role: str, table: dict[str, float]) -> tuple[np.ndarray, list]:
    keys = [_key_of(attr, role, i) for i in range(len(attr.categories))]
    if not any(k is not None for k in keys):
        return _generic_weights(attr), keys
    small = 0.01 * sum(table.values())
    return np.array([table.get(k, small) if k else small for k in keys]), keys


def _draw(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Category indices from uniforms ``u`` and (row-wise or shared) weights."""
    w = np.atleast_2d(weights)
    cum = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
    return np.minimum((u[:, None] > cum).sum(axis=1), w.shape[1] - 1)


def _sample_ages(n: int, attr: Attribute | None, clinic: bool, streams: Streams) -> np.ndarray:
    lo = int(attr.min) if attr is not None and attr.min is not None else 18
    top = int(attr.max) if attr is not None and attr.max is not None else 90
    hi = 104 if top >= 89 else top  # ages above ~90 are top-coded, so draw them too
    years = np.arange(lo, max(hi, lo) + 1, dtype=float)
    w = np.where(years < 60, 1.0, np.exp(-(((years - 60) / 20) ** 2)))
    if clinic:  # patients followed for liver disease are mostly middle-aged
        w = w * (0.3 + np.exp(-(((years - 57) / 16) ** 2)))
    idx = _draw(streams.uniform("age", n), w)
    return years[idx] + streams.uniform("age:fraction", n)


def sample_population(
    schema: DatasetSchema, n: int, streams: Streams, clinic: bool = False
) -> Population:
    """Latent traits and attribute columns (all but ``deceased``) for ``n`` patients."""
    roles = {a.name: attribute_role(a) for a in schema.attributes}
    by_role = {role: a for a in schema.attributes if (role := roles[a.name]) != "generic"}
    cols: dict[str, np.ndarray] = {}

    age_attr = by_role.get("age")
    age = _sample_ages(n, age_attr, clinic, streams)

    def categorical(role: str, table: dict[str, float], fallback: np.ndarray) -> np.ndarray:
        attr = by_role.get(role)
        if attr is None:
            return fallback
        w, keys = _weights(attr, role, table)
        idx = _draw(streams.uniform(role, n), w)
        cols[attr.name] = np.array(attr.values, dtype=object)[idx]
        return np.array(keys, dtype=object)[idx]

    coin = streams.uniform("latent:coin", (n, 3))
    sex = categorical("sex", _SEX, np.where(coin[:, 0] < 0.49, "male", "female"))
    male = (sex == "male") | ((sex != "female") & (coin[:, 0] < 0.49))
    eth = categorical("ethnicity", _ETHNICITY, np.where(coin[:, 1] < 0.187, "hispanic", ""))
    hispanic = (eth == "hispanic") | ((eth != "not_hispanic") & (eth != "") & (coin[:, 1] < 0.187))
    black = _sample_race(by_role.get("race"), hispanic, coin[:, 2], streams, cols)
    categorical("state", _STATES, np.array([]))

    z = streams.normal("bmi", n)
    mu = np.log(28.3) + 0.002 * (age - 50) - 0.00012 * (age - 50) ** 2 + 0.04 * (black & ~male)
    bmi0 = np.exp(mu + 0.22 * z)
    drift = 0.003 - 0.0005 * np.clip(age - 65, 0, None) + 0.012 * streams.normal("bmi:drift", n)
    shrink = 0.05 * np.clip(age - 50, 0, None)
    height = (
        np.where(male, 176.0, 162.0)
        - shrink
        + np.where(male, 7.0, 6.5) * streams.normal("height", n)
    )

    for attr in schema.attributes:
        role = roles[attr.name]
        if role == "age":
            cols[attr.name] = np.clip(np.floor(age), attr.min, attr.max).astype(float)
        elif role == "birth_date":
            cols[attr.name] = _birth_dates(attr, schema.time.output_start, age)
        elif attr.name not in cols and role != "deceased":
            cols[attr.name] = _generic_column(attr, n, streams)
    return Population(n, age, male, black, hispanic, bmi0, drift, height, cols)


def _sample_race(
    attr: Attribute | None,
    hispanic: np.ndarray,
    coin: np.ndarray,
    streams: Streams,
    cols: dict[str, np.ndarray],
) -> np.ndarray:
    if attr is None:
        return ~hispanic & (coin < _RACE_NOT_HISPANIC["black"])
    w_not, keys = _weights(attr, "race", _RACE_NOT_HISPANIC)
    w_his, _ = _weights(attr, "race", _RACE_HISPANIC)
    rows = np.where(hispanic[:, None], w_his[None, :], w_not[None, :])
    idx = _draw(streams.uniform("race", len(hispanic)), rows)
    cols[attr.name] = np.array(attr.values, dtype=object)[idx]
    return np.array(keys, dtype=object)[idx] == "black"


def _birth_dates(attr: Attribute, start: dt.date, age: np.ndarray) -> np.ndarray:
    days = np.round(age * 365.25).astype("int64")
    dates = np.datetime64(start, "D") - days.astype("timedelta64[D]")
    lo, hi = (np.datetime64(d, "D") for d in attr.date_bounds())
    return np.clip(dates, lo, hi).astype("datetime64[s]")


def _generic_column(attr: Attribute, n: int, streams: Streams) -> np.ndarray:
    key = f"attribute:{attr.name}"
    if attr.type == "categorical":
        idx = _draw(streams.uniform(key, n), _generic_weights(attr))
        return np.array(attr.values, dtype=object)[idx]
    if attr.type == "boolean":
        return streams.uniform(key, n) < 0.15
    if attr.type == "date":
        lo, hi = (np.datetime64(d, "D") for d in attr.date_bounds())
        span = int((hi - lo).astype("int64"))
        offsets = np.floor(streams.uniform(key, n) * (span + 1)).astype("int64")
        return (lo + offsets.astype("timedelta64[D]")).astype("datetime64[s]")
    lo, hi = float(attr.min), float(attr.max)  # type: ignore[arg-type]
    return np.clip((lo + hi) / 2 + (hi - lo) / 6 * streams.normal(key, n), lo, hi)
