"""Fast builders of FHIR R4 resources as plain dicts.

The writer turns millions of cohort rows into Patient, Encounter, Observation and Condition
resources, so it never goes through the pydantic models at run time. :class:`Templates`
precomputes, once per dataset schema, every constant part of every resource (``meta`` with the
synthetic tag, categories, LOINC / SNOMED CT / ICD-10-CM codings, UCUM units, race and ethnicity
extensions); the ``build_*`` functions only fill in ids, references, times and values. Constant
parts are shared between resources: treat the returned dicts as read-only. The tests prove that
every dict these functions can produce equals what the ``fhir.resources.R4B`` models make of it
and passes medsynth's required-binding checks (:mod:`medsynth.fhir.validate`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsynth.errors import MedsynthError
from medsynth.fhir.names import pick_name
from medsynth.schema import DatasetSchema
from medsynth.schema.model import LOINC, OMB_RACE_ETHNICITY, UCUM, Attribute, Category

V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
#: Namespace of the invented medical record numbers; ``.invalid`` is reserved (RFC 2606), so
#: the namespace can never be mistaken for a real assigning authority.
IDENTIFIER_SYSTEM = "https://medsynth.invalid/sid/synthetic-mrn"
#: The identifier that carries a real (or simulated) cohort's own patient id through an export,
#: so that reading the export back gives the same patients (and the same privacy budget).
#: Synthetic patients from a model never carry it.
SOURCE_ID_SYSTEM = "https://medsynth.invalid/sid/source-patient-id"

#: The tag on every resource and Bundle medsynth writes: "test health data" (HL7 v3 ActReason).
SYNTHETIC_TAG: dict[str, str] = {
    "system": V3_ACT_REASON,
    "code": "HTEST",
    "display": "test health data",
}
META: dict[str, Any] = {"tag": [SYNTHETIC_TAG]}

OMB_RACE_CODES = frozenset({"1002-5", "2028-9", "2054-5", "2076-8", "2106-3"})
OMB_ETHNICITY_CODES = frozenset({"2135-2", "2186-5"})

ENCOUNTER_CLASS = {"system": V3_ACT_CODE, "code": "AMB", "display": "ambulatory"}
CLINICAL_ACTIVE = {
    "coding": [{"system": CONDITION_CLINICAL, "code": "active", "display": "Active"}]
}
VERIFICATION_CONFIRMED = {
    "coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed", "display": "Confirmed"}]
}
PROBLEM_LIST_ITEM = [
    {
        "coding": [
            {
                "system": CONDITION_CATEGORY,
                "code": "problem-list-item",
                "display": "Problem List Item",
            }
        ]
    }
]
MRN_TYPE = {"coding": [{"system": V2_0203, "code": "MR", "display": "Medical record number"}]}
_CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "laboratory": "Laboratory"}

#: Random 64-bit words drawn per patient, by position.
W_DAY, W_CLOCK, W_GIVEN, W_FAMILY, W_MRN, W_BIRTH = range(6)
WORDS_PER_PATIENT = 6
#: Synthetic timelines start between 08:00 and 15:59 local time on the start date.
START_HOUR = 8
START_MINUTES = 8 * 60
SECONDS_PER_DAY = 86400


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _observation_category(category: str) -> list[dict[str, Any]]:
    return [
        {
            "coding": [
                {
                    "system": OBSERVATION_CATEGORY,
                    "code": category,
                    "display": _CATEGORY_DISPLAY[category],
                }
            ]
        }
    ]


def _race_extension(url: str, omb_codes: frozenset[str], cat: Category) -> dict[str, Any]:
    """A US Core race/ethnicity extension: OMB codes as ``ombCategory``, others ``detailed``."""
    subs: list[dict[str, Any]] = []
    if cat.code is not None and cat.system in (None, OMB_RACE_ETHNICITY):
        slot = "ombCategory" if cat.code in omb_codes else "detailed"
        subs.append(
            {
                "url": slot,
                "valueCoding": {
                    "system": OMB_RACE_ETHNICITY,
                    "code": cat.code,
                    "display": cat.label,
                },
            }
        )
    subs.append({"url": "text", "valueString": cat.label})
    return {"url": url, "extension": subs}


@dataclass(frozen=True)
class Templates:
    """The constant parts of every resource for one dataset schema, indexed for speed.

    Channels are indexed by their position in ``schema.channels``; ``panel_of[i]`` is the
    index of channel ``i``'s panel in ``schema.panels`` or -1.
    """

    schema: DatasetSchema
    tz_suffix: str
    channel_code: tuple[dict[str, Any], ...]
    channel_category: tuple[list[dict[str, Any]], ...]
    channel_unit: tuple[str, ...]
    channel_decimals: np.ndarray  # int; -1 means "no rounding"
    panel_of: np.ndarray  # int; -1 for a channel outside every panel
    slot: np.ndarray  # int; observations at one time are ordered by slot (panels: first member)
    panel_code: tuple[dict[str, Any], ...]
    panel_category: tuple[list[dict[str, Any]], ...]
    condition_code: tuple[dict[str, Any], ...]  # by position in schema.conditions
    homes: dict[str, Attribute]  # attribute by FHIR home
    extensions: dict[str, dict[str, dict[str, Any]]]  # home -> category value -> extension
    states: dict[str, str]  # category value -> Address.state

    @classmethod
    def for_schema(cls, schema: DatasetSchema) -> Templates:
        """Precompute the templates of ``schema``."""
        names = schema.channel_names
        panel_index = {name: j for j, p in enumerate(schema.panels) for name in p.components}
        panel_of = np.array([panel_index.get(n, -1) for n in names], dtype=np.int64)
        first_member = [min(names.index(c) for c in p.components) for p in schema.panels]
        slot = np.array(
            [first_member[p] if p >= 0 else i for i, p in enumerate(panel_of)], dtype=np.int64
        )
        homes = dict(schema.attribute_by_fhir)
        extensions = {}
        for home, url, omb in (
            ("us-core-race", US_CORE_RACE, OMB_RACE_CODES),
            ("us-core-ethnicity", US_CORE_ETHNICITY, OMB_ETHNICITY_CODES),
        ):
            if home in homes:
                extensions[home] = {
                    c.value: _race_extension(url, omb, c) for c in homes[home].categories
                }
        state = homes.get("Patient.address.state")
        return cls(
            schema=schema,
            tz_suffix=fhir_offset(schema.time.timezone),
            channel_code=tuple(_concept(LOINC, c.code, c.display) for c in schema.channels),
            channel_category=tuple(_observation_category(c.category) for c in schema.channels),
            channel_unit=tuple(c.unit for c in schema.channels),
            channel_decimals=np.array(
                [-1 if c.decimals is None else c.decimals for c in schema.channels], dtype=np.int64
            ),
            panel_of=panel_of,
            slot=slot,
            panel_code=tuple(_concept(LOINC, p.code, p.display) for p in schema.panels),
            panel_category=tuple(_observation_category(p.category) for p in schema.panels),
            condition_code=tuple(
                _concept(schema.condition_system, c.code, c.display) for c in schema.conditions
            ),
            homes=homes,
            extensions=extensions,
            states={c.value: c.code or c.value for c in state.categories} if state else {},
        )


# -- values, ids, dates ------------------------------------------------------------------------
_FHIR_OFFSET = re.compile(r"Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)")


def fhir_offset(timezone: str) -> str:
    """The suffix every written dateTime carries: ``Z`` for UTC, else ``+hh:mm`` / ``-hh:mm``.

    UTC is written ``Z`` because that is how the ``fhir.resources`` models write it back.

    >>> fhir_offset("+00:00"), fhir_offset("-05:00")
    ('Z', '-05:00')
    """
    if timezone in ("Z", "+00:00", "-00:00"):
        return "Z"
    if not _FHIR_OFFSET.fullmatch(timezone):
        raise MedsynthError(
            f"schema time.timezone {timezone!r} is not a FHIR time-zone offset "
            "(Z or -14:00 to +14:00, e.g. '-05:00'); fix the dataset schema"
        )
    return timezone


def offset_seconds(days: np.ndarray) -> np.ndarray:
    """Day offsets since time zero as whole seconds (int64), rounded half to even.

    >>> offset_seconds(np.array([0.0, 1.5, 1 / 86400 * 0.4])).tolist()
    [0, 129600, 0]
    """
    return np.round(np.asarray(days, dtype=np.float64) * SECONDS_PER_DAY).astype(np.int64)


def quantity_values(values: np.ndarray, decimals: np.ndarray) -> list[float | int]:
    """Values rounded to their channel's decimals: ints for 0 decimals, floats otherwise.

    ``decimals`` holds one entry per value (-1: leave the value as it is).

    >>> quantity_values(np.array([120.4, 1.2345]), np.array([0, 2]))
    [120, 1.23]
    """
    scale = np.power(10.0, np.maximum(decimals, 0))
    # "+ 0.0" turns a rounded -0.0 into 0.0
    rounded = np.where(decimals >= 0, np.round(values * scale) / scale, values) + 0.0
    out: list[float | int] = rounded.tolist()
    for i in np.flatnonzero(decimals == 0).tolist():
        out[i] = int(out[i])
    return out


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Where the 32 hex digits go in the 36 characters of a UUID string (dashes at 8, 13, 18, 23).
_UUID_SLOTS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def uuid_strings(words: np.ndarray) -> list[str]:
    """Version-4 UUID strings from pairs of random 64-bit words.

    The i-th string equals ``str(uuid.UUID(int=words[2i] << 64 | words[2i+1], version=4))``.
    """
    n = len(words) // 2
    raw = np.asarray(words, dtype=np.uint64).astype(">u8").view(np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, _UUID_SLOTS] = _HEX[np.stack([raw >> 4, raw & 0x0F], axis=-1).reshape(n, 32)]
    flat = text.tobytes().decode("ascii")
    return [flat[i : i + 36] for i in range(0, 36 * n, 36)]


def local_datetimes(seconds: np.ndarray, tz_suffix: str) -> list[str]:
    """``YYYY-MM-DDThh:mm:ss`` plus the offset, from local wall-clock seconds since 1970."""
    text = np.datetime_as_string(
        np.asarray(seconds, dtype=np.int64).astype("datetime64[s]"), unit="s"
    )
    return [t + tz_suffix for t in text.tolist()]


def _same_day_in(day: dt.date, year: int) -> dt.date:
    """``day`` moved to ``year``; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=year)
    except ValueError:
        return day.replace(year=year, day=28)


def birth_date_for_age(start: dt.date, age: float, word: int) -> dt.date:
    """A birth date giving ``floor(age)`` completed years on ``start``, chosen by ``word``.

    Every date in the window of such birth dates (a year long) is equally likely.

    >>> birth_date_for_age(dt.date(2021, 3, 4), 40, 0)
    datetime.date(1980, 3, 5)
    """
    years = math.floor(age)
    latest = _same_day_in(start, start.year - years)
    earliest = _same_day_in(start, start.year - years - 1) + dt.timedelta(days=1)
    span = (latest - earliest).days + 1
    return earliest + dt.timedelta(days=word % span)


def start_of(schema: DatasetSchema, day_word: int, clock_word: int) -> dt.datetime:
    """A patient's invented start (naive local time): a day in the spread, a clock time."""
    t = schema.time
    day = t.output_start + dt.timedelta(days=day_word % (t.output_spread_days + 1))
    minutes = START_HOUR * 60 + clock_word % START_MINUTES
    return dt.datetime(day.year, day.month, day.day) + dt.timedelta(minutes=minutes)


_EPOCH = dt.datetime(1970, 1, 1)


def epoch_seconds(when: dt.datetime) -> int:
    """Seconds from 1970-01-01T00:00:00 to the naive local ``when`` (wall-clock arithmetic)."""
    return (when - _EPOCH) // dt.timedelta(seconds=1)


# -- resource builders -------------------------------------------------------------------------
def build_patient(
    t: Templates,
    rid: str,
    attrs: dict[str, Any],
    start: dt.date,
    words: Sequence[int],
    source_id: str | None = None,
) -> dict[str, Any]:
    """A Patient from attribute values by FHIR home (None = missing) and its random words;
    ``source_id``, the cohort's own patient id, when the cohort is not synthetic."""
    res: dict[str, Any] = {"resourceType": "Patient", "id": rid, "meta": META}
    extension = [
        t.extensions[home][v]
        for home in ("us-core-race", "us-core-ethnicity")
        if (v := attrs.get(home)) is not None
    ]
    if extension:
        res["extension"] = extension
    res["identifier"] = [
        {
            "use": "usual",
            "type": MRN_TYPE,
            "system": IDENTIFIER_SYSTEM,
            "value": f"{words[W_MRN] % 10**10:010d}",
        }
    ]
    if source_id is not None:
        own = {"use": "secondary", "system": SOURCE_ID_SYSTEM, "value": source_id}
        res["identifier"].append(own)
    gender = attrs.get("Patient.gender")
    given, family = pick_name(gender, words[W_GIVEN], words[W_FAMILY])
    res["name"] = [{"use": "official", "family": family, "given": [given]}]
    if gender is not None:
        res["gender"] = gender
    birth = attrs.get("Patient.birthDate")
    if isinstance(birth, dt.date):
        res["birthDate"] = birth.isoformat()
    elif birth is not None:
        res["birthDate"] = birth_date_for_age(start, birth, words[W_BIRTH]).isoformat()
    deceased = attrs.get("Patient.deceased")
    if deceased is not None:
        res["deceasedBoolean"] = bool(deceased)
    address: dict[str, str] = {}
    if (state := attrs.get("Patient.address.state")) is not None:
        address["state"] = t.states[state]
    if (zip3 := attrs.get("Patient.address.zip3")) is not None:
        address["postalCode"] = f"{zip3}00"
    if address:
        res["address"] = [{"use": "home", **address}]
    return res


def build_encounter(rid: str, subject: dict[str, str], start: str, end: str) -> dict[str, Any]:
    """A finished ambulatory Encounter: one visit day, from its first to its last event."""
    return {
        "resourceType": "Encounter",
        "id": rid,
        "meta": META,
        "status": "finished",
        "class": ENCOUNTER_CLASS,
        "subject": subject,
        "period": {"start": start, "end": end},
    }


def quantity(t: Templates, channel: int, value: float | int) -> dict[str, Any]:
    """A UCUM valueQuantity of ``channel``."""
    unit = t.channel_unit[channel]
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def build_observation(
    t: Templates,
    rid: str,
    channel: int,
    subject: dict[str, str],
    encounter: dict[str, str],
    when: str,
    value: float | int,
) -> dict[str, Any]:
    """A final Observation of one channel's value."""
    unit = t.channel_unit[channel]
    return {
        "resourceType": "Observation",
        "id": rid,
        "meta": META,
        "status": "final",
        "category": t.channel_category[channel],
        "code": t.channel_code[channel],
        "subject": subject,
        "encounter": encounter,
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def build_panel(
    t: Templates,
    rid: str,
    panel: int,
    subject: dict[str, str],
    encounter: dict[str, str],
    when: str,
    members: Sequence[tuple[int, float | int]],
) -> dict[str, Any]:
    """A final panel Observation with one component per (channel, value) of ``members``."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "meta": META,
        "status": "final",
        "category": t.panel_category[panel],
        "code": t.panel_code[panel],
        "subject": subject,
        "encounter": encounter,
        "effectiveDateTime": when,
        "component": [
            {"code": t.channel_code[c], "valueQuantity": quantity(t, c, v)} for c, v in members
        ],
    }


def build_condition(
    t: Templates, rid: str, condition: int, subject: dict[str, str], onset: str
) -> dict[str, Any]:
    """An active, confirmed problem-list Condition (``condition`` indexes schema.conditions)."""
    return {
        "resourceType": "Condition",
        "id": rid,
        "meta": META,
        "clinicalStatus": CLINICAL_ACTIVE,
        "verificationStatus": VERIFICATION_CONFIRMED,
        "category": PROBLEM_LIST_ITEM,
        "code": t.condition_code[condition],
        "subject": subject,
        "onsetDateTime": onset,
    }
