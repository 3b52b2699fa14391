"""What a FHIR ingest run returns: the cohort, and an account of everything it did not use.

:class:`IngestResult` holds the conformed :class:`~medsynth.cohort.Cohort`, the
:class:`~medsynth.cohort.ConformanceReport`, the :class:`ReadIssue` list (each resource or line
skipped, with file, place and reason) and :class:`IngestCounts` (resources read per type, what
was mapped, what lay outside the schema, skips by reason). :meth:`IngestResult.lines` renders the
human text the CLI prints: what was read, mapped, clipped, skipped and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from medsynth.cohort import Cohort, ConformanceReport

MAX_ISSUES_PER_REASON = 100
"""Issues listed per reason; the counts in :attr:`IngestCounts.skipped` are always complete."""


def frozen_counts(counts: Mapping[str, int]) -> Mapping[str, int]:
    """A read-only copy, largest count first, ties by key."""
    kept = ((k, int(v)) for k, v in counts.items() if v)
    return MappingProxyType(dict(sorted(kept, key=lambda kv: (-kv[1], kv[0]))))


def mapped_counts(counts: Mapping[str, int]) -> Mapping[str, int]:
    """The mapped tallies, read-only, in their natural order."""
    keys = ("patients", "observations", "events", "conditions")
    return MappingProxyType({k: int(counts.get(k, 0)) for k in keys})


@dataclass(frozen=True)
class ReadIssue:
    """A resource, line or file part that was skipped (or a field left missing), and why.

    Attributes:
        file: the input file, as found from the sources given.
        location: ``"line 17"`` (1-based, bulk ndjson), ``"entry 42"`` (0-based, Bundle
            entries, like ``Bundle.entry[42]``; ``"entry 3, entry 0"`` inside a nested Bundle),
            ``"bundle"`` (an element of the file's Bundle itself), ``"resource"`` (a file
            holding one resource), ``"value 2"`` (1-based, a file holding several values one
            after another), ``"whole file"``, or ``"after line 17"`` / ``"after entry 42"`` /
            ``"after resource"`` / ``"after value 2"`` where a file breaks off.
        resource_type: the resourceType, when it could be read.
        resource_id: the resource's ``id``, when it has one.
        field: the element at fault (``valueQuantity.value``,
            ``component[1].valueQuantity.code``, ``subject.reference``...), when there is one.
        reason: why, in a short fixed wording (the key of :attr:`IngestCounts.skipped`).
        detail: the offending value or the parser's message.
    """

    file: str
    location: str
    resource_type: str | None
    reason: str
    detail: str = ""
    resource_id: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        what = f" {self.resource_type}" if self.resource_type else ""
        what += f" {self.resource_id!r}" if self.resource_id else ""
        what += f" {self.field}:" if self.field else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.file}, {self.location}:{what} {self.reason}{detail}"


@dataclass(frozen=True)
class IngestCounts:
    """Tallies of an ingest run (read-only mappings, largest first).

    Attributes:
        files: input files read.
        read: resources read, by resourceType (Bundles included).
        mapped: ``patients``, ``observations`` and ``conditions`` mapped, and the ``events``
            those observations gave (a blood-pressure panel gives two), before conformance.
        ignored_types: resources of types the schema does not use, by resourceType.
        ignored_codes: Observations and Conditions coded outside the schema, by
            ``"<resourceType> <system>|<code>"``.
        skipped: issues by reason (complete, even where :attr:`IngestResult.issues` is capped).
        notes: decisions that changed no count above but are worth knowing (onsets set to 0...).
    """

    files: int = 0
    read: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    mapped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    ignored_types: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    ignored_codes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    skipped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    notes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "read": dict(self.read),
            "mapped": dict(self.mapped),
            "ignored_types": dict(self.ignored_types),
            "ignored_codes": dict(self.ignored_codes),
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
        }


@dataclass(frozen=True, eq=False)
class IngestResult:
    """The cohort read from FHIR, how it was conformed, and every issue met on the way."""

    cohort: Cohort
    conformance: ConformanceReport
    issues: tuple[ReadIssue, ...]
    counts: IngestCounts

    def lines(self, *, max_codes: int = 10, max_issues: int = 20) -> list[str]:
        """The human account of the run: read, mapped, ignored, skipped, clipped, kept."""
        c = self.counts
        out = [f"read {c.files} file(s), {sum(c.read.values())} resources: {_inline(c.read)}"]
        m = c.mapped
        out.append(
            f"mapped: {m.get('patients', 0)} patients, {m.get('observations', 0)} "
            f"observations -> {m.get('events', 0)} events, {m.get('conditions', 0)} "
            "conditions"
        )
        if c.ignored_types:
            out.append(f"ignored (types not in the schema): {_inline(c.ignored_types)}")
        if c.ignored_codes:
            top = list(c.ignored_codes.items())[:max_codes]
            more = len(c.ignored_codes) - len(top)
            out.append(
                f"ignored (codes not in the schema): {sum(c.ignored_codes.values())} "
                f"resources, {len(c.ignored_codes)} codes; most frequent:"
            )
            out += [f"{n:>8}  {code}" for code, n in top]
            if more:
                out.append(f"          ... and {more} more codes")
        if c.skipped:
            out.append(f"skipped: {sum(c.skipped.values())} issue(s)")
            out += [f"{n:>8}  {reason}" for reason, n in c.skipped.items()]
            out += [f"          {issue}" for issue in self.issues[:max_issues]]
            if len(self.issues) > max_issues:
                out.append(f"          ... {sum(c.skipped.values()) - max_issues} more issues")
        if c.notes:
            out.append("notes:")
            out += [f"{n:>8}  {note}" for note, n in c.notes.items()]
        if self.conformance.counts:
            out.append("conformed to the schema (clipped, dropped, truncated):")
            out += self.conformance.lines()
        s = self.cohort.summary()
        out.append(
            f"cohort: {s['patients']} patients, {s['events']} events, "
            f"{s['conditions']} conditions (source {self.cohort.source.fingerprint[:16]})"
        )
        return out

    def summary(self) -> str:
        """:meth:`lines` as one text."""
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        """Counts, conformance, issues and cohort sizes as plain JSON-ready data."""
        return {
            "counts": self.counts.to_dict(),
            "conformance": self.conformance.to_dict(),
            "issues": [vars(i).copy() for i in self.issues],
            "cohort": self.cohort.summary(),
            "source": self.cohort.source.to_dict(),
        }


def _inline(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
