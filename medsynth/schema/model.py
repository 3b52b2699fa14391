"""Frozen value objects for a parsed dataset schema.

These hold exactly what the JSON file says, in typed form, with a few derived look-ups
(channel by LOINC code, category by FHIR code) that readers, writers and encoders share.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

AttributeType = Literal["categorical", "numeric", "boolean", "date"]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
OMB_RACE_ETHNICITY = "urn:oid:2.16.840.1.113883.6.238"


@dataclass(frozen=True)
class Category:
    """One allowed value of a categorical attribute, optionally with its FHIR coding."""

    value: str
    code: str | None = None
    system: str | None = None
    display: str | None = None

    @property
    def label(self) -> str:
        return self.display or self.value


@dataclass(frozen=True)
class Attribute:
    """A static patient attribute and where it lives in FHIR."""

    name: str
    type: AttributeType
    fhir: str
    categories: tuple[Category, ...] = ()
    min: float | str | None = None
    max: float | str | None = None
    unit: str | None = None
    decimals: int | None = None
    description: str = ""
    # False: every patient has a value (generation never leaves it empty). True, the default
    # and the meaning of every schema written before the field: whether it is missing, and
    # how often, is learned from the data.
    may_be_missing: bool = True

    @property
    def values(self) -> tuple[str, ...]:
        """The category values, in schema order (empty for non-categorical attributes)."""
        return tuple(c.value for c in self.categories)

    def category_for_code(self, code: str) -> Category | None:
        """The category whose FHIR code, value or display (any case) equals ``code``."""
        for c in self.categories:
            if code in (c.code, c.value):
                return c
        folded = code.casefold()
        for c in self.categories:
            if folded in (c.value.casefold(), (c.display or "").casefold()):
                return c
        return None

    def date_bounds(self) -> tuple[dt.date, dt.date]:
        """Bounds of a date attribute as dates."""
        return dt.date.fromisoformat(str(self.min)), dt.date.fromisoformat(str(self.max))


@dataclass(frozen=True)
class ConditionCode:
    """A diagnosis the cohort may hold, in the schema's code system."""

    code: str
    display: str
    aliases: tuple[str, ...] = ()
    # True: an inclusion criterion of the cohort, so every patient has it (never generated
    # absent).
    inclusion: bool = False


@dataclass(frozen=True)
class Channel:
    """A time-series channel: one LOINC-coded quantity with UCUM unit and public bounds."""

    name: str
    code: str
    display: str
    unit: str
    min: float
    max: float
    category: Literal["vital-signs", "laboratory"]
    aliases: tuple[str, ...] = ()
    unit_aliases: tuple[str, ...] = ()
    normal: tuple[float, float] | None = None
    decimals: int | None = None
    description: str = ""
    # True: a visit may hold several values of this channel (e.g. vital signs taken twice).
    # False, the default: at most one value per visit.
    repeat_within_visit: bool = False
    # "linear" or "log": how its bins are spaced; None: chosen from the bounds (see
    # medsynth.encoding.vocabulary.channel_is_log).
    scale: Literal["linear", "log"] | None = None
    # Values that hold a share of their own (a detection limit, an assay's "not detected"
    # value): each gets a bin holding that value alone, generated exactly.
    point_masses: tuple[float, ...] = ()

    def accepts_unit(self, unit: str | None) -> bool:
        return unit is not None and (unit == self.unit or unit in self.unit_aliases)


@dataclass(frozen=True)
class Panel:
    """A panel observation whose components are channels (e.g. blood pressure)."""

    name: str
    code: str
    display: str
    category: Literal["vital-signs", "laboratory"]
    components: tuple[str, ...]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class MeasurementGroup:
    """Channels measured together: a visit that holds one of them holds all of them.

    ``channels`` are in the schema's channel order, which is also their order inside a visit.
    """

    name: str
    channels: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class TimeSpec:
    """How patient timelines are anchored, how long they are and where synthetic ones start."""

    anchor: Literal["first_event", "last_event", "fixed_date"]
    horizon_days: float
    output_start: dt.date
    anchor_date: dt.date | None = None
    output_spread_days: int = 0
    timezone: str = "+00:00"
    # True: a patient may have several visits on one day. False, the default (and what a
    # date-only export can hold): consecutive visits are at least one day apart.
    same_day_visits: bool = False

    @property
    def tzinfo(self) -> dt.timezone:
        if self.timezone == "Z":
            return dt.timezone.utc
        sign = 1 if self.timezone[0] == "+" else -1
        hours, minutes = (int(x) for x in self.timezone[1:].split(":"))
        return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


@dataclass(frozen=True)
class Limits:
    """Public per-patient limits; longer records are truncated deterministically.

    ``min_events_total`` binds generation only: no synthetic record ends with fewer events.
    """

    max_events_per_channel: int
    max_events_total: int
    max_conditions: int | None = None
    min_events_total: int = 0


@dataclass(frozen=True)
class DatasetSchema:
    """A validated dataset schema. Build it with :func:`medsynth.schema.load_schema`."""

    name: str
    time: TimeSpec
    limits: Limits
    attributes: tuple[Attribute, ...]
    condition_system: str
    conditions: tuple[ConditionCode, ...]
    channels: tuple[Channel, ...]
    panels: tuple[Panel, ...] = ()
    measurement_groups: tuple[MeasurementGroup, ...] = ()
    title: str = ""
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The schema document as loaded (a deep copy)."""
        return json.loads(json.dumps(self.raw))

    def canonical_json(self) -> bytes:
        """Sorted-key, compact UTF-8 JSON of the document: stable across runs and machines.

        The schema's hash is defined on medsynth 0.1's canonical form (not RFC 8785), so the
        schema hashes recorded in models, cohorts and manifests written then stay valid.
        """
        from medsynth.core.canonical import LEGACY, canonical_json

        return canonical_json(self.raw, form=LEGACY)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json()).hexdigest()

    # -- look-ups shared by readers, writers and encoders ---------------------------------
    @cached_property
    def attribute_by_name(self) -> dict[str, Attribute]:
        return {a.name: a for a in self.attributes}

    @cached_property
    def attribute_by_fhir(self) -> dict[str, Attribute]:
        return {a.fhir: a for a in self.attributes}

    @cached_property
    def channel_by_name(self) -> dict[str, Channel]:
        return {c.name: c for c in self.channels}

    @cached_property
    def channel_by_code(self) -> dict[str, Channel]:
        """Channels by LOINC code, aliases included."""
        out: dict[str, Channel] = {}
        for c in self.channels:
            for code in (c.code, *c.aliases):
                out[code] = c
        return out

    @cached_property
    def panel_by_code(self) -> dict[str, Panel]:
        out: dict[str, Panel] = {}
        for p in self.panels:
            for code in (p.code, *p.aliases):
                out[code] = p
        return out

    @cached_property
    def panel_of_channel(self) -> dict[str, Panel]:
        return {name: p for p in self.panels for name in p.components}

    @cached_property
    def group_of_channel(self) -> dict[str, MeasurementGroup]:
        """The measurement group of each grouped channel (ungrouped channels are absent)."""
        return {name: g for g in self.measurement_groups for name in g.channels}

    @cached_property
    def condition_by_code(self) -> dict[str, ConditionCode]:
        """Conditions by code, aliases included."""
        out: dict[str, ConditionCode] = {}
        for c in self.conditions:
            for code in (c.code, *c.aliases):
                out[code] = c
        return out

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    @property
    def condition_codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.conditions)
