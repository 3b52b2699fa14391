"""Find FHIR input files, fingerprint them, and stream their resources one at a time.

A source is a file (``.json`` / ``.json.gz`` holding a Bundle of any type, a single resource, or
several resources one after another; ``.ndjson`` / ``.ndjson.gz`` bulk data, one resource per
line) or a folder scanned recursively for those suffixes in sorted order. Bundles are streamed
entry by entry and bulk files line by line, so memory does not grow with file size, and every
record is parsed within the limits of :mod:`medsynth.fhir.read_json` (nesting depth, record size,
token length), so no input can exhaust memory or the stack. Every problem of a file (empty, bad
JSON, a record over a limit, unknown resourceType, a Bundle element that is not one, truncated
gzip) comes out as a :class:`FileProblem` in the stream at the place it happened, after
everything readable before it; nothing here raises on bad content. A byte-order mark is
skipped, a bulk-data manifest is recognised, and the bare ``NaN`` / ``Infinity`` some exporters
write, like numbers out of range, cost only their resource. Files are opened read-only.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from medsynth.core.canonical import canonical_json
from medsynth.core.hashing import hash_file, sha256_hex
from medsynth.errors import DataError
from medsynth.fhir.read_json import (
    BAD_JSON,
    CHUNK,
    MAX_DEPTH,
    MAX_NUMBER_DIGITS,
    MAX_RECORD_BYTES,
    MAX_STRING_BYTES,
    OVERSIZE,
    TOO_DEEP,
    TOO_LARGE,
    TOO_LONG,
    JsonBroken,
    JsonEvents,
    NonFiniteAsStrings,
    Readable,
    Refused,
    build,
    max_depth_of,
    may_be_too_deep,
    next_event,
    parse_tolerant,
    show,
    skip,
)
from medsynth.fhir.read_resources import (
    BAD_RESOURCE_TYPE,
    BUNDLE_ELEMENTS,
    ENTRY_NOT_ARRAY,
    ENTRY_OUTSIDE_BUNDLE,
    NO_RESOURCE_TYPE,
    NOT_OBJECT,
    RESOURCE_TYPES,
    UNKNOWN_BUNDLE_ELEMENT,
    UNKNOWN_ENTRY_ELEMENT,
    Entry,
    FileProblem,
    NotResource,
    check_resource,
    check_resource_entry,
    is_bulk_manifest,
    refused_problem,
)

__all__ = [  # the reasons of file problems, and the limits, are read from here too
    "BAD_GZIP",
    "BAD_JSON",
    "BAD_RESOURCE_TYPE",
    "BULK_MANIFEST",
    "EMPTY_FILE",
    "ENTRY_NOT_ARRAY",
    "ENTRY_OUTSIDE_BUNDLE",
    "MAX_DEPTH",
    "MAX_NUMBER_DIGITS",
    "MAX_RECORD_BYTES",
    "MAX_STRING_BYTES",
    "NOT_OBJECT",
    "NO_RESOURCE_TYPE",
    "RESOURCE_TYPES",
    "TOO_DEEP",
    "TOO_LARGE",
    "TOO_LONG",
    "UNKNOWN_BUNDLE_ELEMENT",
    "UNKNOWN_ENTRY_ELEMENT",
    "UNREADABLE",
    "Entry",
    "FileProblem",
    "InputFile",
    "NotResource",
    "check_resource",
    "file_sha256",
    "find_inputs",
    "fingerprint",
    "iter_file",
]

_NonFiniteAsStrings = NonFiniteAsStrings  # the name the stream's tests know it by

SUFFIXES = (".ndjson.gz", ".json.gz", ".ndjson", ".json")

EMPTY_FILE = "empty file"
BAD_GZIP = "truncated or corrupt gzip"
UNREADABLE = "file cannot be read"
BULK_MANIFEST = "(bulk data manifest)"

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class InputFile:
    """An input file: its path and its path relative to the source it was found in."""

    path: Path
    relative: str


def is_fhir_file(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def find_inputs(sources: Iterable[str | Path]) -> list[InputFile]:
    """Every FHIR file named by ``sources`` (files, or folders scanned recursively), once each.

    Raises:
        DataError: a source does not exist, or no FHIR file was found at all.
    """
    found: list[InputFile] = []
    seen: set[Path] = set()
    names: list[str] = []
    for source in sources:
        root = Path(source)
        names.append(str(root))
        if root.is_dir():
            paths = sorted(
                (p for p in root.rglob("*") if p.is_file() and is_fhir_file(p)),
                key=lambda p: p.relative_to(root).as_posix(),
            )
            pairs = [(p, p.relative_to(root).as_posix()) for p in paths]
        elif root.is_file():
            pairs = [(root, root.name)]
        else:
            raise DataError(f"FHIR source {str(root)!r} does not exist; give a file or folder")
        for path, rel in pairs:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.append(InputFile(path, rel))
    if not found:
        where = ", ".join(names) or "no sources"
        raise DataError(f"no FHIR files ({', '.join(SUFFIXES)}) found in {where}")
    return found


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes as stored (compressed files are hashed compressed)."""
    return hash_file(path)


def fingerprint(digests: Iterable[tuple[str, str]]) -> str:
    """sha256 of the canonical JSON of the sorted (relative path, file sha256) pairs: where the
    files sit does not matter, their names and bytes do."""
    return sha256_hex(canonical_json([list(pair) for pair in sorted(digests)]))


# -- streaming -------------------------------------------------------------------------------------
class _ShortReads:
    """A gzip stream whose ``read(n)`` returns what one step decompresses (``read1``).

    A buffered ``read(n)`` on a truncated gzip file raises and loses the bytes it had already
    decompressed; with short reads, everything before the break reaches the JSON parser first.
    """

    def __init__(self, fh: gzip.GzipFile) -> None:
        self._fh = fh

    def read(self, size: int = -1) -> bytes:
        return self._fh.read1(size if size > 0 else CHUNK) if size else b""

    def __enter__(self) -> _ShortReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


def _open(path: Path) -> IO[bytes] | _ShortReads:
    """A file for reading past any UTF-8 byte-order mark; gzip files with short reads."""
    gz = path.name.lower().endswith(".gz")
    fh: IO[bytes] = gzip.GzipFile(path, "rb") if gz else path.open("rb")
    try:
        if fh.read(len(_BOM)) != _BOM:
            fh.seek(0)
    except BaseException:
        fh.close()
        raise
    return _ShortReads(fh) if gz else fh  # type: ignore[arg-type]


def _read_errors(path: Path) -> tuple[type[BaseException], ...]:
    return (EOFError, OSError, zlib.error) if path.name.lower().endswith(".gz") else (OSError,)


def iter_file(path: Path) -> Iterator[Entry | FileProblem | NotResource]:
    """Stream the resources of one file, with problems in place; never raises on content."""
    gz = path.name.lower().endswith(".gz")
    ndjson = path.name.lower().removesuffix(".gz").endswith(".ndjson")
    state = {"where": "start of file"}
    try:
        if _is_blank(path):
            yield FileProblem("whole file", EMPTY_FILE)
            return
        inner = _iter_ndjson(path, state) if ndjson else _iter_json(path, state)
        yield from inner
    except _read_errors(path) as exc:
        reason = BAD_GZIP if gz and not isinstance(exc, PermissionError) else UNREADABLE
        yield FileProblem(state["where"], reason, f"{type(exc).__name__}: {exc}")


def _is_blank(path: Path) -> bool:
    with _open(path) as fh:
        while chunk := fh.read(CHUNK):
            if chunk.strip():
                return False
    return True


# -- bulk ndjson -----------------------------------------------------------------------------------
def _lines(fh: IO[bytes] | _ShortReads) -> Iterator[bytes | int]:
    """The lines of a stream, read a chunk at a time; a line longer than MAX_RECORD_BYTES comes
    as its length, without being kept. A line cut off by a read error is lost."""
    parts: list[bytes] = []
    size = 0
    while chunk := fh.read(CHUNK):
        *complete, rest = chunk.split(b"\n")
        for piece in complete:
            size += len(piece)
            yield size if size > MAX_RECORD_BYTES else b"".join((*parts, piece))
            parts, size = [], 0
        size += len(rest)
        if size > MAX_RECORD_BYTES:
            parts = []
        else:
            parts.append(rest)
    if size:
        yield size if size > MAX_RECORD_BYTES else b"".join(parts)


def _iter_ndjson(path: Path, state: dict[str, str]) -> Iterator[Entry | FileProblem]:
    with _open(path) as fh:
        for number, raw in enumerate(_lines(fh), start=1):
            state["where"] = f"after line {number}"
            location = f"line {number}"
            if isinstance(raw, int):
                yield FileProblem(location, TOO_LARGE, f"{raw:,} bytes")
            elif raw.strip():
                yield from _line(raw, location)


def _line(raw: bytes, location: str) -> Iterator[Entry | FileProblem]:
    """One bulk line: orjson when its nesting is within MAX_DEPTH (orjson has no limit of its
    own), else, or when orjson refuses it, the bounded event parser."""
    obj: Any = _UNSET
    if not (may_be_too_deep(raw) and max_depth_of(raw) > MAX_DEPTH):
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    if obj is _UNSET:
        try:  # NaN, Infinity, numbers out of range: read as text, costing their resource only
            obj = parse_tolerant(raw)
        except JsonBroken as exc:
            yield FileProblem(location, exc.reason, exc.detail)
            return
        except Refused as exc:
            yield refused_problem(exc, location)
            return
    yield from check_resource(obj, location)


_UNSET = object()


# -- .json files -----------------------------------------------------------------------------------
def _stream(fh: IO[bytes] | _ShortReads, tolerant: bool) -> Readable:
    return NonFiniteAsStrings(fh) if tolerant else fh


def _top_level_type(path: Path, tolerant: bool) -> tuple[str, Any]:
    """("array"|"scalar"|"object", resourceType or None), reading no further than needed."""
    with _open(path) as fh:
        it = iter(JsonEvents(_stream(fh, tolerant)))
        event, _ = next_event(it)
        if event == "start_array":
            return "array", None
        if event != "start_map":
            return "scalar", None
        for event, key in it:
            if event != "map_key":  # the end of the object
                break
            event, value = next_event(it)
            if key == "resourceType":
                return "object", {} if event in ("start_map", "start_array") else value
            skip(it, event)
    return "object", None


def _iter_json(path: Path, state: dict[str, str]) -> Iterator[Entry | FileProblem | NotResource]:
    try:
        try:
            kind, rtype = _top_level_type(path, tolerant=False)
        except JsonBroken as exc:
            if not exc.retry:
                raise
            kind, rtype = _top_level_type(path, tolerant=True)
    except JsonBroken as exc:
        yield FileProblem("whole file", exc.reason, exc.detail)
        return
    if kind != "object":
        yield FileProblem("whole file", NOT_OBJECT, kind)
        return
    done = 0
    for tolerant in (False, True):  # the fast parser first; the tolerant one if it fails
        seen = 0
        try:
            with _open(path) as fh:
                events = JsonEvents(_stream(fh, tolerant))
                for part in _json_values(events, rtype == "Bundle", state, last_pass=tolerant):
                    seen += 1
                    if seen > done:  # the tolerant pass goes on where the fast one stopped
                        done = seen
                        yield part
            return
        except JsonBroken as exc:
            if tolerant or not exc.retry:
                yield FileProblem(state["where"], exc.reason, exc.detail)
                return


Part = Entry | FileProblem | NotResource


def _json_values(
    events: JsonEvents, bundle: bool, state: dict[str, str], *, last_pass: bool
) -> Iterator[Part]:
    """Every top-level value of a ``.json`` file: a Bundle's entries streamed one by one, other
    values read whole, each as a record (``resource`` when alone, else ``value N``)."""
    it = iter(events)
    held: Any = None  # the first value, until it is known whether others follow
    number = 0
    try:
        for event, value in it:
            if event == OVERSIZE:
                continue
            number += 1
            if number == 1 and bundle:
                yield from _stream_bundle(events, it, state)
                continue
            if held is not None:
                yield from _value_parts(held, "value 1")
                held, state["where"] = None, "after value 1"
            events.record_start = events.fed
            try:
                record: Any = build(it, event, value, 1)
            except Refused as exc:
                record = exc
            events.record_start = None
            if number == 1:
                held, state["where"] = (record,), "after resource"
            else:
                yield from _value_parts((record,), f"value {number}")
                state["where"] = f"after value {number}"
    except Exception as exc:
        retried = isinstance(exc, JsonBroken) and exc.retry and not last_pass
        if held is not None and not retried:  # what was read before the break is kept
            yield from _value_parts(held, "resource")
        raise
    if held is not None:
        yield from _value_parts(held, "resource")


def _value_parts(held: tuple[Any], location: str) -> Iterator[Part]:
    (record,) = held
    if isinstance(record, Refused):
        yield refused_problem(record, location)
    elif is_bulk_manifest(record) and location == "resource":
        yield NotResource("whole file", BULK_MANIFEST)
    else:
        yield from check_resource(record, location)


def _stream_bundle(
    events: JsonEvents, it: Iterator[tuple[str, Any]], state: dict[str, str]
) -> Iterator[Part]:
    """A top-level Bundle (its ``start_map`` read): entries one at a time, other elements
    skipped without being kept, unknown ones (``entries``, an object ``entry``) as problems."""
    yield Entry("bundle", {"resourceType": "Bundle"})
    index = 0
    bundle_id = None
    for event, key in it:
        if event != "map_key":  # the end of the Bundle
            return
        event, value = next_event(it)
        if key == "entry" and event == "start_array":
            for event, value in it:
                if event == "end_array":
                    break
                events.record_start = events.fed
                try:
                    item = build(it, event, value, 3)
                except Refused as exc:
                    yield refused_problem(exc, f"entry {index}", entry=True)
                else:
                    yield from check_resource_entry(item, f"entry {index}")
                events.record_start = None
                state["where"] = f"after entry {index}"
                index += 1
            continue
        if key == "id" and event == "string":
            bundle_id = value
        items = skip(it, event)
        if key == "entry" and event != "null":
            detail = _event_kind(event, items, value)
            yield FileProblem("bundle", ENTRY_NOT_ARRAY, detail, "Bundle", bundle_id, "entry")
        elif key not in BUNDLE_ELEMENTS:
            detail = _event_kind(event, items, value)
            yield FileProblem(
                "bundle", UNKNOWN_BUNDLE_ELEMENT, detail, "Bundle", bundle_id, key[:80]
            )


def _event_kind(event: str, items: int, value: Any) -> str:
    if event == "start_array":
        return f"an array of {items} item(s)"
    if event == "start_map":
        return f"an object of {items} member(s)"
    return f"a {event}: {show(value)}"
