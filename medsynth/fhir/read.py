"""Read FHIR R4 exports (Bundles, bulk ndjson, folders of them) into a Cohort.

:func:`read_fhir` streams every resource of every input file once, maps Patients, Observations
and Conditions through the dataset schema (:mod:`medsynth.fhir.read_map`), and keeps only the
compact records it mapped, so memory grows with the cohort, not with the files. Subject
references are resolved after everything is read (entries may precede their Patient; bulk
exports put each type in its own file), then each patient's time zero is fixed by the schema's
anchor, event times become days since time zero, ages are taken at time zero, and the tables go
through :meth:`Cohort.conform`. Nothing is dropped silently: resources outside the schema are
counted, and anything the schema would use but cannot be mapped becomes a :class:`ReadIssue`.

Example:
    >>> result = read_fhir(["export/"], load_schema("general-adult"))  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from medsynth.cohort import PATIENT_ID, SECONDS_PER_DAY, Cohort, Source
from medsynth.fhir.read_json import show
from medsynth.fhir.read_map import (
    ConditionRecord,
    Ignored,
    ObservationRecord,
    PatientRecord,
    Skip,
    age_years,
    map_condition,
    map_observation,
    map_patient,
)
from medsynth.fhir.read_resources import Entry, FileProblem, NotResource
from medsynth.fhir.read_result import (
    MAX_ISSUES_PER_REASON,
    IngestCounts,
    IngestResult,
    ReadIssue,
    frozen_counts,
    mapped_counts,
)
from medsynth.fhir.read_sources import (
    UNREADABLE,
    InputFile,
    file_sha256,
    find_inputs,
    fingerprint,
    iter_file,
)
from medsynth.schema import DatasetSchema

__all__ = ["IngestCounts", "IngestResult", "ReadIssue", "read_fhir"]

UNRESOLVED_SUBJECT = "subject not found among the Patients read"
DUPLICATE_PATIENT = "duplicate Patient id (first kept)"
DUPLICATE_RESOURCE = "duplicate resource id (first kept)"
NOTE_NO_ONSET = "condition without onset date: taken as present at time zero"
NOTE_EARLY_ONSET = "condition onset before time zero: set to 0 (present at baseline)"
NOTE_NO_TIME_ZERO = "patient without mapped observations or dated conditions: age left missing"
NOTE_NO_BIRTHDATE = "patient without birthDate: age left missing"
NOTE_BEFORE_BIRTH = "time zero before birthDate: negative age (clipped by conformance)"
NOTE_ZERO_OUT_OF_RANGE = "time zero outside the calendar (years 1 to 9999): age left missing"


def read_fhir(
    sources: str | Path | Iterable[str | Path],
    schema: DatasetSchema,
    *,
    strict: bool = False,
    progress: bool = False,
) -> IngestResult:
    """Read FHIR R4 files and folders into a cohort conformed to ``schema``.

    Args:
        sources: ``.json`` / ``.json.gz`` files (a Bundle of any type, one resource, or
            several one after another),
            ``.ndjson`` / ``.ndjson.gz`` bulk files, or folders scanned recursively for them
            (one path, or several).
        schema: the dataset schema that decides what is read and how.
        strict: make :meth:`Cohort.conform` raise on out-of-bounds values instead of clipping.
        progress: show a progress bar over the files on stderr.

    Returns:
        The cohort (its source fingerprint identifies the input files' names and bytes), the
        conformance report, the issues met and the counts of what was read and used.

    Raises:
        DataError: a source does not exist or holds no FHIR file; in strict mode, a value
            outside the schema's bounds.
    """
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    files = find_inputs(sources)
    reader = _Reader(schema)
    digests: list[tuple[str, str]] = []
    for index, item in enumerate(
        tqdm(files, desc="reading FHIR", unit="file", disable=not progress)
    ):
        reader.file_names.append(str(item.path))
        try:
            digests.append((item.relative, file_sha256(item.path)))
        except OSError as exc:
            reader.issue(index, "whole file", None, UNREADABLE, f"{type(exc).__name__}: {exc}")
            continue
        for part in iter_file(item.path):
            reader.take(index, part)
    patients, events, conditions = reader.assemble()
    source = Source(
        fingerprint=fingerprint(digests), kind="fhir", description=_describe(files, sources)
    )
    cohort, report = Cohort.conform(
        schema, patients, events, conditions, strict=strict, source=source
    )
    counts = IngestCounts(
        files=len(files),
        read=frozen_counts(reader.read),
        mapped=mapped_counts(reader.mapped),
        ignored_types=frozen_counts(reader.ignored_types),
        ignored_codes=frozen_counts(reader.ignored_codes),
        skipped=frozen_counts(reader.skipped),
        notes=frozen_counts(reader.notes),
    )
    return IngestResult(cohort, report, tuple(reader.issues), counts)


def _describe(files: list[InputFile], sources: Iterable[str | Path]) -> str:
    names = sorted({Path(s).name or str(s) for s in sources})
    return f"FHIR R4: {len(files)} file(s) from {', '.join(names)}"


@dataclass(frozen=True, slots=True)
class _Where:
    """Where a resource was read: file number, place in the file, and its id."""

    file_index: int
    location: str
    rid: str | None
    full_url: str | None = None


def _resource_id(res: dict[str, Any]) -> str | None:
    rid = res.get("id")
    return rid if isinstance(rid, str) and rid else None


class _Reader:
    """Accumulates mapped records, tallies and issues over a stream of file parts."""

    def __init__(self, schema: DatasetSchema) -> None:
        self.schema = schema
        self.file_names: list[str] = []
        self.read: Counter[str] = Counter()
        self.mapped: Counter[str] = Counter()
        self.ignored_types: Counter[str] = Counter()
        self.ignored_codes: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()
        self.issues: list[ReadIssue] = []
        self.patients: dict[str, PatientRecord] = {}
        self.keys: dict[str, str] = {}
        self.seen: dict[str, set[str]] = {"Observation": set(), "Condition": set()}
        self.observations: list[tuple[ObservationRecord, _Where]] = []
        self.conditions: list[tuple[ConditionRecord, _Where]] = []

    def issue(
        self,
        file_index: int,
        location: str,
        rtype: str | None,
        reason: str,
        detail: str = "",
        *,
        rid: str | None = None,
        field: str | None = None,
    ) -> None:
        self.skipped[reason] += 1
        if self.skipped[reason] <= MAX_ISSUES_PER_REASON:
            self.issues.append(
                ReadIssue(
                    self.file_names[file_index],
                    location,
                    rtype,
                    reason,
                    detail,
                    resource_id=rid if rid is None or len(rid) <= 200 else f"{rid[:200]}...",
                    field=field,
                )
            )

    def take(self, file_index: int, part: Entry | FileProblem | NotResource) -> None:
        """Map one resource (or record one problem) from file number ``file_index``."""
        if isinstance(part, NotResource):
            self.ignored_types[part.kind] += 1
            return
        if isinstance(part, FileProblem):
            self.issue(
                file_index,
                part.location,
                part.resource_type,
                part.reason,
                part.detail,
                rid=part.resource_id,
                field=part.field,
            )
            return
        res = part.resource
        if res is None:
            self.ignored_types["(Bundle entry without resource)"] += 1
            return
        rtype = res["resourceType"]
        self.read[rtype] += 1
        where = _Where(file_index, part.location, _resource_id(res), part.full_url)
        try:
            if rtype == "Patient":
                self._patient(map_patient(res, part.full_url, self.schema), where)
            elif rtype == "Observation":
                self._observation(map_observation(res, self.schema), where)
            elif rtype == "Condition":
                self._condition(map_condition(res, self.schema), where)
            elif rtype != "Bundle":
                self.ignored_types[rtype] += 1
        except Skip as skip:
            self._issue_at(where, rtype, skip.reason, skip.detail, skip.field)

    def _issue_at(
        self, where: _Where, rtype: str, reason: str, detail: str = "", field: str | None = None
    ) -> None:
        self.issue(
            where.file_index, where.location, rtype, reason, detail, rid=where.rid, field=field
        )

    def _patient(self, rec: PatientRecord, where: _Where) -> None:
        for p in rec.problems:
            self._issue_at(where, "Patient", p.reason, p.detail, p.field)
        for key in rec.keys:
            self.keys.setdefault(key, rec.id)
        if rec.id in self.patients:
            self._issue_at(where, "Patient", DUPLICATE_PATIENT, show(rec.id), "id")
            return
        self.patients[rec.id] = rec

    def _observation(self, rec: ObservationRecord | Ignored, where: _Where) -> None:
        if isinstance(rec, Ignored):
            self.ignored_codes[f"Observation {rec.code}"] += 1
            return
        for code in rec.ignored:
            self.ignored_codes[f"Observation component {code}"] += 1
        if self._duplicate("Observation", where):
            return
        for p in rec.problems:
            self._issue_at(where, "Observation", p.reason, p.detail, p.field)
        if rec.values:
            self.observations.append((rec, where))

    def _condition(self, rec: ConditionRecord | Ignored, where: _Where) -> None:
        if isinstance(rec, Ignored):
            self.ignored_codes[f"Condition {rec.code}"] += 1
            return
        if not self._duplicate("Condition", where):
            self.conditions.append((rec, where))

    def _duplicate(self, rtype: str, where: _Where) -> bool:
        """Whether a resource of this type and id (or fullUrl) was mapped before (an issue)."""
        name = where.rid or where.full_url
        if name is None:
            return False
        if name in self.seen[rtype]:
            self._issue_at(where, rtype, DUPLICATE_RESOURCE, show(name), "id")
            return True
        self.seen[rtype].add(name)
        return False

    # -- after everything is read ----------------------------------------------------------------
    def _resolve(self, records: list[Any], rtype: str) -> list[tuple[str, Any]]:
        out = []
        for rec, where in records:
            pid = self.keys.get(rec.subject)
            if pid is None:
                self._issue_at(
                    where, rtype, UNRESOLVED_SUBJECT, show(rec.subject), "subject.reference"
                )
            else:
                out.append((pid, rec))
        return out

    def assemble(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Resolve subjects, anchor each patient's time zero, and build the three tables."""
        observations = self._resolve(self.observations, "Observation")
        conditions = self._resolve(self.conditions, "Condition")
        zero = time_zeros(self.schema, self.patients, observations, conditions)
        ev_rows: list[tuple[str, float, str, float]] = []
        for pid, rec in observations:
            t = (rec.time - zero[pid]) / SECONDS_PER_DAY
            ev_rows += [(pid, t, channel, value) for channel, value in rec.values]
        cond_rows: list[tuple[str, str, float]] = []
        for pid, rec in conditions:
            if rec.onset is None or zero.get(pid) is None:
                self.notes[NOTE_NO_ONSET] += 1
                cond_rows.append((pid, rec.code, math.nan))
                continue
            onset = (rec.onset - zero[pid]) / SECONDS_PER_DAY
            self.notes[NOTE_EARLY_ONSET] += int(onset < 0)
            cond_rows.append((pid, rec.code, onset))
        self.mapped.update(
            patients=len(self.patients),
            observations=len(observations),
            events=len(ev_rows),
            conditions=len(cond_rows),
        )
        events = pd.DataFrame(ev_rows, columns=["patient_id", "time", "channel", "value"])
        conds = pd.DataFrame(cond_rows, columns=["patient_id", "code", "onset"])
        return self._patient_table(zero), events, conds

    def _patient_table(self, zero: dict[str, float | None]) -> pd.DataFrame:
        tz = self.schema.time.tzinfo
        rows = []
        for pid, rec in sorted(self.patients.items()):
            row: dict[str, Any] = {PATIENT_ID: pid}
            for attr in self.schema.attributes:
                if attr.fhir != "Patient.birthDate":
                    row[attr.name] = rec.fields.get(attr.fhir)
                elif attr.type == "date":
                    row[attr.name] = rec.birth_date.isoformat() if rec.birth_date else None
                elif rec.birth_date is None:
                    self.notes[NOTE_NO_BIRTHDATE] += 1
                    row[attr.name] = None
                elif zero.get(pid) is None:
                    self.notes[NOTE_NO_TIME_ZERO] += 1
                    row[attr.name] = None
                elif (at := _local_date(zero[pid], tz)) is None:  # type: ignore[arg-type]
                    self.notes[NOTE_ZERO_OUT_OF_RANGE] += 1
                    row[attr.name] = None
                else:
                    row[attr.name] = float(age_years(rec.birth_date, at))
                    self.notes[NOTE_BEFORE_BIRTH] += int(at < rec.birth_date)
            rows.append(row)
        columns = [PATIENT_ID, *self.schema.attribute_names]
        return pd.DataFrame(rows, columns=columns, dtype="object")


def _local_date(timestamp: float, tz: dt.tzinfo) -> dt.date | None:
    """The date of a POSIX time in ``tz``; None outside years 1 to 9999 (a time zero taken
    ``horizon_days`` before an observation dated in year 1, say)."""
    try:
        return dt.datetime.fromtimestamp(timestamp, tz).date()
    except (ValueError, OverflowError, OSError):
        return None


def time_zeros(
    schema: DatasetSchema,
    patients: dict[str, PatientRecord],
    observations: list[tuple[str, ObservationRecord]],
    conditions: list[tuple[str, ConditionRecord]],
) -> dict[str, float | None]:
    """Each patient's time zero (POSIX seconds) under the schema's anchor, or None if unknown.

    ``first_event``: the first mapped observation (the first dated condition if none);
    ``last_event``: the last observation (or condition) minus the horizon; ``fixed_date``:
    ``anchor_date`` at 00:00 in the schema's timezone.
    """
    spec = schema.time
    if spec.anchor == "fixed_date":
        assert spec.anchor_date is not None  # the schema loader guarantees it
        start = dt.datetime.combine(spec.anchor_date, dt.time(), tzinfo=spec.tzinfo).timestamp()
        return dict.fromkeys(patients, start)
    obs_span: dict[str, list[float]] = {}
    for pid, rec in observations:
        span = obs_span.setdefault(pid, [rec.time, rec.time])
        span[0], span[1] = min(span[0], rec.time), max(span[1], rec.time)
    cond_span: dict[str, list[float]] = {}
    for pid, rec in conditions:
        if rec.onset is not None:
            span = cond_span.setdefault(pid, [rec.onset, rec.onset])
            span[0], span[1] = min(span[0], rec.onset), max(span[1], rec.onset)
    out: dict[str, float | None] = {}
    for pid in patients:
        span = obs_span.get(pid) or cond_span.get(pid)
        if span is None:
            out[pid] = None
        elif spec.anchor == "first_event":
            out[pid] = span[0]
        else:
            out[pid] = span[1] - spec.horizon_days * SECONDS_PER_DAY
    return out
