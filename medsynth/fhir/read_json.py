"""Parse JSON within fixed bounds, so that no input can exhaust memory, time or the stack.

FHIR files are untrusted input. Bundles are parsed as a stream of events (``ijson`` over
``yajl``, in C) and each record is built from its events here, checking the limits below while
the events arrive, before anything large exists: a container opened deeper than
:data:`MAX_DEPTH` or a record that has taken more than :data:`MAX_RECORD_BYTES` of input stops the
building, the rest of that record is skipped without being kept, and the record becomes a
:class:`Refused` (one issue; the file goes on). A single string or number longer than
:data:`MAX_STRING_BYTES` cannot be skipped (the parser holds a token whole), so it ends the file
(:class:`JsonBroken`). Bulk lines are parsed by ``orjson`` after a byte-level depth check
(:func:`max_depth_of`): ``orjson`` has no depth limit of its own and overflows the C stack on
very deep input. Numbers are only ever converted by the C parsers (a 64-bit integer or a double)
or, in :class:`NonFiniteAsStrings`, from at most :data:`MAX_NUMBER_DIGITS` characters, so no
arbitrary-precision conversion happens. :func:`show` renders any parsed value as a short text
for issue details, without recursing deeper than a few levels.
"""

from __future__ import annotations

import io
import math
import re
import reprlib
from collections.abc import Iterator
from itertools import accumulate, chain
from typing import IO, Any, Protocol

import ijson

MAX_DEPTH = 100
"""Deepest nesting of arrays and objects read, counted from the top of the file or line (a
Bundle entry's resource starts at level 4; an Observation in it reaches about 8)."""

MAX_RECORD_BYTES = 16 * 2**20
"""Largest record read: a bulk line, a Bundle entry or a top-level value (16 MiB of JSON)."""

MAX_STRING_BYTES = 16 * 2**20
"""Longest single string or number token in a ``.json`` file (16 MiB)."""

MAX_NUMBER_DIGITS = 400
"""Longest number (in characters) the tolerant pass converts; longer ones are read as text."""

BAD_JSON = "bad JSON"
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels (record not read)"
TOO_LARGE = f"record larger than {MAX_RECORD_BYTES // 2**20} MiB (not read)"
TOO_LONG = f"string or number longer than {MAX_STRING_BYTES // 2**20} MiB (rest of file not read)"

CHUNK = 1 << 18
OVERSIZE = "record too large"
"""A pseudo-event: the record being built has taken more than MAX_RECORD_BYTES of input."""

_OPEN = ("start_map", "start_array")
_CLOSE = ("end_map", "end_array")


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class JsonBroken(Exception):  # noqa: N818 - control flow inside the reader, never raised to callers
    """The input stops being readable here: ``reason`` is :data:`BAD_JSON` (a parser message in
    ``detail``; worth a tolerant retry) or :data:`TOO_LONG` (final)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    @property
    def retry(self) -> bool:
        return self.reason == BAD_JSON


class Refused(Exception):  # noqa: N818 - control flow inside the reader, never raised to callers
    """A record over a limit, already skipped: ``partial`` is what was built before the limit
    (for naming the resource), ``field`` the path to the element at fault."""

    def __init__(self, reason: str, detail: str, partial: Any, field: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.partial = partial
        self.field = field


def short(exc: BaseException) -> str:
    """A parser's message on one line, at most 200 characters."""
    return " ".join(str(exc).split())[:200]


class JsonEvents:
    """The parse events of a JSON byte stream, fed to ``yajl`` a chunk at a time.

    Iterating yields ``(event, value)`` pairs (``ijson.basic_parse``); every event the parser
    produced before an error is yielded before the error is raised as :class:`JsonBroken`. Set
    :attr:`record_start` to :attr:`fed` when a record starts (``None`` when it ends): once a
    record has taken more than :data:`MAX_RECORD_BYTES`, an :data:`OVERSIZE` pseudo-event comes
    before the next events (sizes are measured to within one chunk, 256 KiB).
    """

    def __init__(self, fh: Readable, *, multiple_values: bool = True) -> None:
        self._fh = fh
        self._multiple = multiple_values
        self.fed = 0
        self.record_start: int | None = None

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return chain.from_iterable(self._batches())  # iterated in C, event by event

    def _batches(self) -> Iterator[list[tuple[str, Any]]]:
        sink = ijson.sendable_list()
        coro = ijson.basic_parse_coro(sink, use_float=True, multiple_values=self._multiple)
        stalled = 0
        while True:
            del sink[:]  # the previous batch has been consumed
            chunk = self._fh.read(CHUNK)
            failure = None
            try:
                if chunk:
                    coro.send(chunk)
                else:
                    coro.close()
            except (ijson.JSONError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
                failure = exc
            before, self.fed = self.fed, self.fed + len(chunk)
            if sink:
                stalled = 0
                start = self.record_start
                if start is not None and before - start > MAX_RECORD_BYTES:
                    self.record_start = None
                    yield [(OVERSIZE, None)]
                yield sink
            else:
                stalled += len(chunk)
                if stalled > MAX_STRING_BYTES:
                    raise JsonBroken(TOO_LONG, f"no value completed in {stalled:,} bytes")
            if failure is not None:
                raise JsonBroken(BAD_JSON, short(failure))
            if not chunk:
                return


def next_event(it: Iterator[tuple[str, Any]]) -> tuple[str, Any]:
    """The next event; the text ending here is bad JSON (the parser says so first)."""
    for item in it:
        return item
    raise JsonBroken(BAD_JSON, "the text ends inside a value")


def skip_open(it: Iterator[tuple[str, Any]], open_containers: int) -> int:
    """Consume events until ``open_containers`` open arrays/objects are closed, keeping nothing.

    Returns the number of items (array elements or object members) at the outermost level.
    """
    depth, items = open_containers, 0
    for event, _ in it:
        if event in _OPEN:
            items += depth == 1
            depth += 1
        elif event in _CLOSE:
            depth -= 1
            if depth == 0:
                return items
        elif depth == 1 and event != "map_key" and event != OVERSIZE:
            items += 1
    raise JsonBroken(BAD_JSON, "the text ends inside a value")


def skip(it: Iterator[tuple[str, Any]], event: str) -> int:
    """Consume the value that starts with ``event``; its number of items (0 for a scalar)."""
    return skip_open(it, 1) if event in _OPEN else 0


def build(it: Iterator[tuple[str, Any]], event: str, value: Any, depth: int) -> Any:
    """The value that starts with ``(event, value)`` at nesting level ``depth`` (1 = top).

    Raises:
        Refused: the value nests deeper than :data:`MAX_DEPTH` or an :data:`OVERSIZE` event
            came; its remaining events are consumed first, so the stream can go on.
    """
    if event not in _OPEN:
        return value
    root: Any = {} if event == "start_map" else []
    if depth > MAX_DEPTH:
        skip_open(it, 1)
        raise Refused(TOO_DEEP, f"starts at level {depth}", None, None)
    room = MAX_DEPTH - depth  # containers that may still open inside root
    stack: list[Any] = []  # the open containers above cur
    cur, key, in_map = root, None, event == "start_map"
    for event, value in it:
        if event == "map_key":
            key = value
        elif event == "string" or event == "number":
            if in_map:
                cur[key] = value
            else:
                cur.append(value)
        elif event == "start_map" or event == "start_array":
            new: Any = {} if event == "start_map" else []
            if in_map:
                cur[key] = new
            else:
                cur.append(new)
            stack.append(cur)
            cur, in_map = new, event == "start_map"
            if len(stack) > room:
                field = _path([*stack, cur])
                skip_open(it, len(stack) + 1)
                raise Refused(TOO_DEEP, f"level {depth + len(stack)} reached", root, field)
        elif event == "end_map" or event == "end_array":
            if not stack:
                return root
            cur = stack.pop()
            in_map = type(cur) is dict
        elif event == OVERSIZE:
            skip_open(it, len(stack) + 1)
            raise Refused(TOO_LARGE, f"more than {MAX_RECORD_BYTES:,} bytes", root, None)
        elif in_map:  # boolean, null
            cur[key] = value
        else:
            cur.append(value)
    raise JsonBroken(BAD_JSON, "the text ends inside a value")


def _path(chain: list[Any]) -> str:
    """``resource.valueQuantity.value[0][0]...``: where the last of ``chain`` (containers, each
    the newest child of the one before) sits in the first, first levels only."""
    parts = []
    for parent, child in zip(chain[:8], chain[1:9], strict=False):
        if type(parent) is dict:
            name = next((str(k) for k in reversed(parent) if parent[k] is child), "?")
            parts.append(("." if parts else "") + (name if len(name) <= 40 else name[:40] + "..."))
        else:
            parts.append(f"[{len(parent) - 1}]")
    return "".join(parts) + ("..." if len(chain) > 9 else "")


def parse_tolerant(raw: bytes) -> Any:
    """One JSON value from ``raw``, bare NaN / Infinity and out-of-range numbers read as text.

    Raises:
        JsonBroken: not one JSON value.
        Refused: nested deeper than :data:`MAX_DEPTH`.
    """
    events = JsonEvents(NonFiniteAsStrings(io.BytesIO(raw)), multiple_values=False)
    it = iter(events)
    event, value = next_event(it)
    obj = build(it, event, value, 1)
    for _ in it:  # the end of the input; trailing content raises
        pass
    return obj


# -- bulk lines: depth before orjson -----------------------------------------------------------
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def may_be_too_deep(raw: bytes) -> bool:
    """Cheap test: at most MAX_DEPTH opening brackets means no deeper nesting (False)."""
    return raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


def max_depth_of(raw: bytes) -> int:
    """The deepest nesting of ``raw``'s arrays and objects, brackets in strings aside.

    Never below the depth a parser reaches on ``raw`` (one that meets an unterminated string
    stops there), in time linear in ``len(raw)``.
    """
    skeleton = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, skeleton)), default=0)


# -- the tolerant stream -------------------------------------------------------------------------
class NonFiniteAsStrings:
    """A stream that turns what the C parsers refuse in numbers into strings, so one such value
    costs its resource, not the rest of the file.

    The bare ``NaN``, ``Infinity`` and ``-Infinity`` some exporters write (not JSON) become
    strings; so does a number beyond the range of a double, or one written with more than
    :data:`MAX_NUMBER_DIGITS` characters. An integer beyond 64 bits (which ``yajl`` refuses)
    becomes the nearest double, as ``orjson`` reads it. String contents (escapes included) pass
    unchanged, and a token or escape cut by a chunk border waits for the next chunk.
    """

    _OUTSIDE = re.compile(
        rb'"|-?Infinity|NaN|(?<![\w.+-])-?\d(?:[\d.eE+-]{15,}|[\d.]*[eE][+-]?\d{3,}[\d.eE+-]*)'
    )
    _STRING_END = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
    _CUT_TOKEN = re.compile(
        rb"(?:-|-?I(?:n(?:f(?:i(?:n(?:i(?:t)?)?)?)?)?)?|N(?:a)?|(?<![\w.+-])-?\d[\d.eE+-]*)\Z"
    )
    _NUMBER_REST = re.compile(rb"[\d.eE+-]*")

    def __init__(self, fh: Readable | IO[bytes]) -> None:
        self._fh = fh
        self._in_string = False
        self._in_number = False  # inside a number being written as a string
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        while True:
            chunk = self._fh.read(size if size > 0 else CHUNK)
            if not chunk:
                rest, self._pending = self._pending, b""
                return self._rewrite(rest, final=True) if rest else b""
            if out := self._rewrite(self._pending + chunk):
                return out

    def _rewrite(self, data: bytes, final: bool = False) -> bytes:
        out: list[bytes] = []
        i, n = 0, len(data)
        self._pending = b""
        while i < n:
            if self._in_number:
                end = self._NUMBER_REST.match(data, i).end()  # type: ignore[union-attr]
                out.append(data[i:end])
                if end < n or final:
                    out.append(b'"')
                    self._in_number = False
                i = end
                continue
            if self._in_string:
                m = self._STRING_END.match(data, i)
                if m is None:
                    tail = data[i:]
                    cut = 0 if final else (len(tail) - len(tail.rstrip(b"\\"))) % 2
                    out.append(tail[: len(tail) - cut])
                    self._pending = tail[len(tail) - cut :]
                    break
                out.append(data[i : m.end()])
                i, self._in_string = m.end(), False
                continue
            m = self._OUTSIDE.search(data, i)
            if m is None:
                cut = None if final else self._CUT_TOKEN.search(data, i)
                end = cut.start() if cut else n
                out.append(data[i:end])
                self._pending = data[end:]
                break
            token = m.group()
            out.append(data[i : m.start()])
            if token == b'"':
                out.append(token)
                self._in_string = True
            elif token in (b"NaN", b"Infinity", b"-Infinity"):
                out += [b'"', token, b'"']
            elif m.end() < n or final:
                out.append(_number(token))
            elif len(token) <= MAX_NUMBER_DIGITS:  # may go on in the next chunk
                self._pending = data[m.start() :]
                break
            else:
                out += [b'"', token]
                self._in_number = True
            i = m.end()
        return b"".join(out)


def _number(token: bytes) -> bytes:
    """A complete number token as the C parsers can read it (maybe as a string)."""
    if len(token) > MAX_NUMBER_DIGITS:
        return b'"' + token + b'"'
    try:
        number = float(token)
    except ValueError:  # not a number after all: left for the parser to refuse
        return token
    if not math.isfinite(number):
        return b'"' + token + b'"'
    if any(c in token for c in b".eE") or -(2**63) <= int(token) < 2**63:
        return token
    return repr(number).encode()


# -- details ---------------------------------------------------------------------------------------
_SHOW = reprlib.Repr()
_SHOW.maxlevel = 3
_SHOW.maxstring = 80
_SHOW.maxother = 80
_SHOW.maxlong = 40
_SHOW.maxlist = _SHOW.maxdict = _SHOW.maxtuple = _SHOW.maxset = 4


def show(value: Any) -> str:
    """``repr(value)`` cut short: a few levels, items and characters of any parsed JSON."""
    try:
        return _SHOW.repr(value)
    except ValueError:  # an integer past Python's digit limit for conversion to text
        return f"<{type(value).__name__} too large to show>"
