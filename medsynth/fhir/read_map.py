"""Map single FHIR R4 resources, as parsed JSON, onto the records of a dataset schema.

These are pure functions: a Patient becomes a :class:`PatientRecord` (identity keys and the raw
values of the attributes the schema names), an Observation an :class:`ObservationRecord` (one
value per schema channel, blood-pressure components included), a Condition a
:class:`ConditionRecord`. A resource outside the schema's vocabulary comes back as
:class:`Ignored`; a resource the schema would use but that cannot be mapped raises :class:`Skip`
with a short, bounded reason (counted) and a detail (the offending value, shown cut short: any
JSON may stand where a value is expected). Nothing here resolves references or anchors time:
that needs every file read first (see :mod:`medsynth.fhir.read`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from medsynth.fhir.read_json import show
from medsynth.fhir.resources import SOURCE_ID_SYSTEM
from medsynth.schema import Attribute, Channel, DatasetSchema
from medsynth.schema.model import ICD10CM, LOINC, OMB_RACE_ETHNICITY, UCUM, Panel

# Reasons a resource (or a part of it) is skipped; each becomes a ReadIssue.
NO_CODE = "missing code"
ENTERED_IN_ERROR = "status entered-in-error"
CANCELLED = "status cancelled (not performed)"
REFUTED = "condition refuted"
NO_SUBJECT = "missing subject reference"
NO_TIME = "missing effective time"
BAD_TIME = "unparseable date/time"
NO_VALUE = "no valueQuantity"
NON_NUMERIC = "non-numeric or non-finite value"
COMPARATOR = "value is a bound (comparator), not a measurement"
PANEL_EMPTY = "panel without components in the schema"
NO_PATIENT_ID = "Patient without id"
BAD_TEXT = "text that is not valid Unicode (a lone surrogate)"
NOT_OBJECT = "not a JSON object"
BAD_BIRTHDATE = "unparseable birthDate (age left missing)"

_DATETIME = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


class Skip(Exception):  # noqa: N818 - control flow inside the reader, never raised to callers
    """A resource the schema would use cannot be mapped: ``reason`` is counted, ``field`` is
    the element at fault (``valueQuantity.value``), ``detail`` the offending value."""

    def __init__(self, reason: str, detail: str = "", field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.field = field


@dataclass(frozen=True, slots=True)
class Ignored:
    """A resource outside the schema's vocabulary, with the code that put it there."""

    code: str


@dataclass(frozen=True, slots=True)
class Problem:
    """A part of a resource that was skipped (a panel component) or left missing (a field).

    ``field`` is the element's path in the resource (``component[1].valueQuantity.code``).
    """

    field: str
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """A Patient's id, the reference keys it answers to, and raw values by FHIR home."""

    id: str
    keys: tuple[str, ...]
    fields: dict[str, Any]
    birth_date: dt.date | None
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class ObservationRecord:
    """An Observation's subject reference, time (POSIX seconds) and channel values."""

    subject: str
    time: float
    values: tuple[tuple[str, float], ...]
    problems: tuple[Problem, ...] = ()
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConditionRecord:
    """A Condition's subject reference, schema code and onset (POSIX seconds, or None)."""

    subject: str
    code: str
    onset: float | None


# -- dates and times -------------------------------------------------------------------------------
def parse_datetime(value: Any, tz: dt.tzinfo) -> float | None:
    """A FHIR date, dateTime or instant as POSIX seconds (UTC), or None when unparseable.

    Partial dates (``"2019"``, ``"2019-05"``) mean the start of the period; values without an
    offset (dates, or times written without one) are read in ``tz``, the schema's timezone.

    >>> parse_datetime("2019-05-02T10:00:00+02:00", dt.timezone.utc)
    1556784000.0
    """
    if not isinstance(value, str):
        return None
    m = _DATETIME.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day, hh, mm, ss, frac, offset = m.groups()
    try:
        zone = tz if offset is None else _offset(offset)
        when = dt.datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hh or 0),
            int(mm or 0),
            min(int(ss or 0), 59),
            tzinfo=zone,
        )
    except ValueError:
        return None
    return when.timestamp() + (float(frac) if frac else 0.0)


@lru_cache(maxsize=64)
def _offset(text: str) -> dt.tzinfo:
    """``Z`` or ``+hh:mm`` / ``-hh:mm`` as a fixed-offset timezone (ValueError if out of range)."""
    if text == "Z":
        return dt.timezone.utc
    minutes = int(text[1:3]) * 60 + int(text[4:6])
    return dt.timezone((-1 if text[0] == "-" else 1) * dt.timedelta(minutes=minutes))


def parse_date(value: Any) -> dt.date | None:
    """A FHIR date (partial dates mean the first day of the period), or None."""
    if not isinstance(value, str):
        return None
    m = _DATETIME.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day = m.group(1, 2, 3)
    try:
        return dt.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None


def age_years(birth: dt.date, at: dt.date) -> int:
    """Completed years of life at ``at`` (birthdays on 29 February count from 1 March)."""
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


# -- references ------------------------------------------------------------------------------------
def normalize_reference(ref: str) -> str:
    """The key a subject reference is looked up by: ``urn:uuid:X`` as is, else ``Patient/id``.

    Absolute URLs and versioned references (``.../Patient/7/_history/2``) reduce to
    ``Patient/7``; other references are returned unchanged (and will not resolve).
    """
    ref = ref.strip()
    if ref.startswith("urn:"):
        return ref
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return f"Patient/{parts[-1]}"
    return ref


def subject_of(res: dict[str, Any]) -> str:
    """The normalized subject reference of a resource; raises :class:`Skip` if missing."""
    subject = res.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str) or not ref.strip():
        raise Skip(NO_SUBJECT, field="subject.reference")
    return sys.intern(normalize_reference(ref))  # one copy per patient, not per record


# -- codes -----------------------------------------------------------------------------------------
def _codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    return [c for c in concept["coding"] if isinstance(c, dict) and isinstance(c.get("code"), str)]


def _label(codings: list[dict[str, Any]]) -> str:
    first = codings[0]
    system = first.get("system", "")
    return f"{_clip(system if isinstance(system, str) else show(system))}|{_clip(first['code'])}"


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def _is_text(value: str) -> bool:
    """Whether ``value`` can be written as UTF-8 (JSON escapes can spell lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def normalize_condition_code(code: str, system: str) -> str:
    """ICD-10-CM codes written without their dot (``K743``) get it back (``K74.3``)."""
    code = code.strip()
    if system == ICD10CM:
        code = code.upper()
        if "." not in code and len(code) > 3:
            code = f"{code[:3]}.{code[3:]}"
    return code


# -- Patient ---------------------------------------------------------------------------------------
def map_patient(res: dict[str, Any], full_url: str | None, schema: DatasetSchema) -> PatientRecord:
    """The id, reference keys and raw attribute values of a Patient resource.

    Raises:
        Skip: the Patient has neither an id nor a ``urn:uuid`` fullUrl.
    """
    pid = res.get("id") if isinstance(res.get("id"), str) and res.get("id") else None
    if pid is None and isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
        pid = full_url.removeprefix("urn:uuid:")
    if pid is None:
        raise Skip(NO_PATIENT_ID, field="id")
    if not _is_text(pid):
        raise Skip(BAD_TEXT, show(pid), field="id" if res.get("id") == pid else "fullUrl")
    keys = [f"Patient/{pid}"]
    own = _source_id(res.get("identifier"))
    if own is not None:  # an export of a cohort carries the cohort's own id: keep it
        pid = own
    if isinstance(full_url, str) and full_url.strip():
        keys.append(normalize_reference(full_url))
    homes = set(schema.attribute_by_fhir)
    fields: dict[str, Any] = {}
    problems: list[Problem] = []
    if "Patient.gender" in homes:
        fields["Patient.gender"] = res.get("gender") if isinstance(res.get("gender"), str) else None
    birth = None
    if "Patient.birthDate" in homes and res.get("birthDate") is not None:
        birth = parse_date(res.get("birthDate"))
        if birth is None:
            problems.append(Problem("birthDate", BAD_BIRTHDATE, show(res.get("birthDate"))))
    for home in ("us-core-race", "us-core-ethnicity"):
        if home in homes:
            fields[home] = _omb_category(res.get("extension"), schema.attribute_by_fhir[home])
    address = _first_address(res)
    if "Patient.address.state" in homes:
        state = address.get("state")
        fields["Patient.address.state"] = state.strip() if isinstance(state, str) else None
    if "Patient.address.zip3" in homes:
        fields["Patient.address.zip3"] = _zip3(address.get("postalCode"))
    if "Patient.deceased" in homes:
        fields["Patient.deceased"] = _deceased(res)
    return PatientRecord(pid, tuple(dict.fromkeys(keys)), fields, birth, tuple(problems))


def _source_id(identifiers: Any) -> str | None:
    """The value of the identifier with :data:`SOURCE_ID_SYSTEM`, when there is a readable one."""
    if not isinstance(identifiers, list):
        return None
    for item in identifiers:
        if isinstance(item, dict) and item.get("system") == SOURCE_ID_SYSTEM:
            value = item.get("value")
            if isinstance(value, str) and value.strip() and _is_text(value):
                return value
    return None


def _omb_category(extensions: Any, attr: Attribute) -> str | None:
    """The first OMB category of a US Core race/ethnicity extension, else its text.

    A code that is none of the attribute's categories falls back to its display when that
    names one (some exports put ethnicity code 2135-2 with display "Other" in race); else the
    code is returned as is, and conformance counts it as an unknown category.
    """
    for ext in extensions if isinstance(extensions, list) else []:
        url = ext.get("url") if isinstance(ext, dict) else None
        if not (isinstance(url, str) and url.endswith(attr.fhir)):
            continue
        nested = ext.get("extension")
        subs = [s for s in nested if isinstance(s, dict)] if isinstance(nested, list) else []
        for sub in subs:
            coding = sub.get("valueCoding")
            if (
                sub.get("url") == "ombCategory"
                and isinstance(coding, dict)
                and coding.get("system", OMB_RACE_ETHNICITY) == OMB_RACE_ETHNICITY
                and isinstance(coding.get("code"), str)
            ):
                code, display = coding["code"], coding.get("display")
                if (
                    attr.category_for_code(code) is None
                    and isinstance(display, str)
                    and attr.category_for_code(display) is not None
                ):
                    return display
                return code
        for sub in subs:
            if sub.get("url") == "text" and isinstance(sub.get("valueString"), str):
                return sub["valueString"]
    return None


def _first_address(res: dict[str, Any]) -> dict[str, Any]:
    addresses = res.get("address")
    if isinstance(addresses, list) and addresses and isinstance(addresses[0], dict):
        return addresses[0]
    return {}


def _zip3(postal: Any) -> str | None:
    if isinstance(postal, str) and len(postal.strip()) >= 3 and postal.strip()[:3].isdigit():
        return postal.strip()[:3]
    return None


def _deceased(res: dict[str, Any]) -> bool:
    """True if deceasedBoolean is true or a deceasedDateTime is given; absent means alive."""
    if isinstance(res.get("deceasedBoolean"), bool):
        return res["deceasedBoolean"]
    return res.get("deceasedDateTime") is not None


# -- Observation -----------------------------------------------------------------------------------
def observation_time(res: dict[str, Any], tz: dt.tzinfo) -> float:
    """effectiveDateTime, effectiveInstant, effectivePeriod.start or issued, as POSIX seconds."""
    period = res.get("effectivePeriod")
    candidates = (
        ("effectiveDateTime", res.get("effectiveDateTime")),
        ("effectiveInstant", res.get("effectiveInstant")),
        ("effectivePeriod.start", period.get("start") if isinstance(period, dict) else None),
        ("issued", res.get("issued")),
    )
    name, text = next(((n, c) for n, c in candidates if c is not None), ("effective[x]", None))
    if text is None:
        raise Skip(NO_TIME, field=name)
    when = parse_datetime(text, tz)
    if when is None:
        raise Skip(BAD_TIME, show(text), field=name)
    return when


def quantity_value(q: Any, channel: Channel) -> float:
    """The numeric value of a valueQuantity in ``channel``'s unit; raises :class:`Skip`."""
    if not isinstance(q, dict):
        raise Skip(NO_VALUE, f"for channel {channel.name}", field="valueQuantity")
    v = q.get("value")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
        detail = f"{show(v)} for channel {channel.name}"
        raise Skip(NON_NUMERIC, detail, field="valueQuantity.value")
    comparator = q.get("comparator")
    if comparator is not None:
        short = isinstance(comparator, str) and len(comparator) <= 2
        shown = comparator if short else show(comparator)
        raise Skip(
            COMPARATOR, f"{shown}{v} for channel {channel.name}", field="valueQuantity.comparator"
        )
    code = q.get("code")
    ucum = q.get("system") == UCUM and isinstance(code, str)
    unit = code if ucum else q.get("unit")
    if not channel.accepts_unit(unit if isinstance(unit, str) else None):
        expected = " or ".join((channel.unit, *channel.unit_aliases))
        shown = _clip(unit, 40) if isinstance(unit, str) and unit else "no unit"
        raise Skip(
            f"unit mismatch: {shown} for channel {channel.name} expects {expected}",
            f"value {v!r}",
            field="valueQuantity.code" if ucum else "valueQuantity.unit",
        )
    return float(v)


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond the range of a double
        return False


def _schema_target(concept: Any, schema: DatasetSchema) -> Channel | Panel | str | None:
    """The channel or panel a LOINC-coded concept maps to; else the first code's label."""
    codings = _codings(concept)
    if not codings:
        return None
    for c in codings:
        if c.get("system") == LOINC:
            target = schema.channel_by_code.get(c["code"]) or schema.panel_by_code.get(c["code"])
            if target is not None:
                return target
    return _label(codings)


def map_observation(res: dict[str, Any], schema: DatasetSchema) -> ObservationRecord | Ignored:
    """An Observation's channel values, or :class:`Ignored` when its code is not in the schema.

    Raises:
        Skip: the code is missing, the status is entered-in-error, or the subject, time or
            (for a single channel) the value cannot be used.
    """
    target = _schema_target(res.get("code"), schema)
    if target is None:
        raise Skip(NO_CODE, field="code.coding")
    if isinstance(target, str):
        return Ignored(target)
    if res.get("status") == "entered-in-error":
        raise Skip(ENTERED_IN_ERROR, field="status")
    if res.get("status") == "cancelled":
        raise Skip(CANCELLED, field="status")
    subject = subject_of(res)
    when = observation_time(res, _offset(schema.time.timezone))
    if isinstance(target, Channel):
        return ObservationRecord(
            subject, when, ((target.name, quantity_value(res.get("valueQuantity"), target)),)
        )
    values: list[tuple[str, float]] = []
    problems: list[Problem] = []
    ignored: list[str] = []
    components = res.get("component") if isinstance(res.get("component"), list) else []
    for i, comp in enumerate(components):
        if not isinstance(comp, dict):
            problems.append(Problem(f"component[{i}]", NOT_OBJECT, show(comp)))
            continue
        found = _schema_target(comp.get("code"), schema)
        if found is None:  # whatever it measured, it cannot be told: an issue, not a silent loss
            detail = show(comp["code"]) if "code" in comp else ""
            problems.append(Problem(f"component[{i}].code", NO_CODE, detail))
        elif isinstance(found, str):
            ignored.append(found)
        elif isinstance(found, Channel):
            try:
                values.append((found.name, quantity_value(comp.get("valueQuantity"), found)))
            except Skip as skip:
                problems.append(Problem(f"component[{i}].{skip.field}", skip.reason, skip.detail))
        else:  # a panel's code on a component: no channel to put it in
            ignored.append(f"{LOINC}|{found.code}")
    if not values and not problems:
        raise Skip(PANEL_EMPTY, f"panel {target.name}", field="component")
    return ObservationRecord(subject, when, tuple(values), tuple(problems), tuple(ignored))


# -- Condition -------------------------------------------------------------------------------------
def map_condition(res: dict[str, Any], schema: DatasetSchema) -> ConditionRecord | Ignored:
    """A Condition's schema code and onset, or :class:`Ignored` when its code is not in the schema.

    The onset is onsetDateTime, onsetPeriod.start or recordedDate; None when none is given.

    Raises:
        Skip: no code, entered-in-error or refuted, no subject, or an unparseable onset.
    """
    codings = _codings(res.get("code"))
    if not codings:
        raise Skip(NO_CODE, field="code.coding")
    system = schema.condition_system
    known = schema.condition_by_code
    code = next(
        (
            n
            for c in codings
            if c.get("system") == system
            and (n := normalize_condition_code(c["code"], system)) in known
        ),
        None,
    )
    if code is None:
        return Ignored(_label(codings))
    status = {c["code"] for c in _codings(res.get("verificationStatus"))}
    if "entered-in-error" in status:
        raise Skip(ENTERED_IN_ERROR, field="verificationStatus")
    if "refuted" in status:
        raise Skip(REFUTED, field="verificationStatus")
    subject = subject_of(res)
    period = res.get("onsetPeriod")
    candidates = (
        ("onsetDateTime", res.get("onsetDateTime")),
        ("onsetPeriod.start", period.get("start") if isinstance(period, dict) else None),
        ("recordedDate", res.get("recordedDate")),
    )
    name, text = next(((n, c) for n, c in candidates if c is not None), ("onset[x]", None))
    onset = None if text is None else parse_datetime(text, _offset(schema.time.timezone))
    if text is not None and onset is None:
        raise Skip(BAD_TIME, repr(text), field=name)
    return ConditionRecord(subject, code, onset)
