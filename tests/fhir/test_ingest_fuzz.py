"""Mutation fuzzing of FHIR ingest: whatever a valid export is turned into, ingest accounts for it.

A small valid export (the transaction Bundle fixture, or the bulk fixtures as one ndjson file)
is mutated: elements replaced by JSON of another type, by nesting far past the limit, by numbers
no parser can hold, by strings that are not UTF-8 or not Unicode, keys duplicated, then bytes
flipped or the text cut, maybe gzipped. Ingest must either return a cohort that accounts for
every record (each line or entry read or named in an issue, the counts matching what was
streamed, the cohort writable) or raise a :class:`MedsynthError`, never anything else.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsynth.errors import MedsynthError
from medsynth.fhir.read import read_fhir
from medsynth.fhir.read_json import MAX_DEPTH
from medsynth.fhir.read_resources import Entry, FileProblem, NotResource
from medsynth.fhir.read_sources import iter_file

FIXTURES = Path(__file__).parent / "fixtures"
_BUNDLE = json.loads((FIXTURES / "transaction_bundle.json").read_text())
_LINES = [
    json.loads(line)
    for name in ("Patient", "Observation", "Condition", "Encounter")
    for line in (FIXTURES / "bulk" / f"{name}.ndjson").read_text().splitlines()
    if line.strip()
]


class _Raw:
    """Text put into the JSON as it is (nesting, numbers and strings json.dumps cannot write)."""

    def __init__(self, text: bytes) -> None:
        self.text = text


class _Pairs:
    """An object written with its pairs as given, duplicated keys included."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def _dump(value: Any) -> bytes:
    if isinstance(value, _Raw):
        return value.text
    if isinstance(value, (dict, _Pairs)):
        pairs = value.pairs if isinstance(value, _Pairs) else value.items()
        return b"{" + b", ".join(json.dumps(k).encode() + b": " + _dump(v) for k, v in pairs) + b"}"
    if isinstance(value, list):
        return b"[" + b", ".join(_dump(v) for v in value) + b"]"
    return json.dumps(value).encode()


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if type(obj) is list else ()
    for key, value in items:
        out += _paths(value, (*prefix, key))
    return out


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)
_DEPTHS = [MAX_DEPTH - 4, MAX_DEPTH + 1, 3000, 30_000]
_NUMBERS = [b"9" * 19, b"9" * 25, b"9" * 401, b"9" * 5000, b"1e400", b"-1e999", b"NaN", b"Infinity"]
_STRINGS = [b'"a\xff"', b'"\xed\xa0\x80"', b'"\\ud800"', b'"\\udc00x"', b'"\xc3"', b'"\x00"']


@st.composite
def _replacement(draw) -> Any:
    kind = draw(st.sampled_from(["json", "deep", "number", "string"]))
    if kind == "json":
        return draw(_JSON)
    if kind == "deep":
        depth = draw(st.sampled_from(_DEPTHS))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a": ', b"}")]))
        return _Raw(opener * depth + b"1" + closer * depth)
    if kind == "number":
        return _Raw(draw(st.sampled_from(_NUMBERS)))
    return _Raw(draw(st.sampled_from(_STRINGS)))


def _mutate(draw, value: Any) -> Any:
    """``value`` with one to three elements replaced, or one of its objects given a key twice."""
    value = copy.deepcopy(value)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(value) if p]
        if not paths:
            break
        *parent, key = draw(st.sampled_from(paths))
        target = value
        for step in parent:
            target = target[step]
        if draw(st.integers(0, 4)) == 0 and isinstance(target, dict):
            pairs = [*target.items(), (key, draw(_replacement()))]
            if not parent:
                return _Pairs(pairs)
            holder = value
            for step in parent[:-1]:
                holder = holder[step]
            holder[parent[-1]] = _Pairs(pairs)
            break
        target[key] = draw(_replacement())
    return value


@st.composite
def _export(draw) -> tuple[str, bytes]:
    """A file name and its bytes: the export, mutated."""
    layout = draw(st.sampled_from(["bundle", "ndjson"]))
    if layout == "bundle":
        text = _dump(_mutate(draw, _BUNDLE))
        name = "export.json"
    else:
        lines = list(_LINES)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(lines) - 1))
            lines[i] = _mutate(draw, lines[i])
        text = b"\n".join(_dump(line) for line in lines) + b"\n"
        name = draw(st.sampled_from(["export.ndjson", "ndjson_saved_as.json"]))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, max(len(text) - 1, 0)))
        edit = draw(st.sampled_from(["flip", "cut", "drop", "repeat"]))
        if edit == "flip" and text:
            text = text[:at] + bytes([text[at] ^ draw(st.integers(1, 255))]) + text[at + 1 :]
        elif edit == "cut":
            text = text[:at]
        elif edit == "drop":
            text = text[:at] + text[at + draw(st.integers(1, 50)) :]
        else:
            text = text[:at] + text[at : at + draw(st.integers(1, 50))] * 2 + text[at:]
    if draw(st.booleans()):
        packed = gzip.compress(text, mtime=0)
        if draw(st.booleans()):
            packed = packed[: draw(st.integers(0, len(packed)))]
        return name + ".gz", packed
    return name, text


def _check_parts(path: Path, data: bytes) -> list[Any]:
    """Stream the file; every part is well formed and every record has its place."""
    parts = list(iter_file(path))
    for part in parts:
        assert isinstance(part, (Entry, FileProblem, NotResource)), part
        if isinstance(part, FileProblem):
            assert len(part.reason) < 120 and len(part.detail) <= 400, part
            assert part.field is None or len(part.field) < 200, part
    if path.suffix == ".gz":
        return parts
    top = [p.location for p in parts if not p.location.startswith(("after", "whole", "start"))]
    if path.suffix == ".ndjson":  # every non-blank line is read or named, up to a break
        text = data.removeprefix(b"\xef\xbb\xbf")
        lines = {f"line {i}" for i, line in enumerate(text.split(b"\n"), 1) if line.strip()}
        assert {loc.split(",")[0] for loc in top} == lines
    entries = [int(loc.split()[1]) for loc in top if loc.startswith("entry ") and "," not in loc]
    assert sorted(set(entries)) == list(range(len(set(entries))))  # no entry skipped unnamed
    located = [p.location for p in parts if isinstance(p, Entry) and p.resource is not None]
    assert len(located) == len(set(located))  # nothing read twice (the tolerant pass goes on)
    return parts


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(export=_export())
def test_mutated_exports_are_accounted_for_or_refused(general_schema, tmp_path_factory, export):
    name, data = export
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / name
    path.write_bytes(data)
    try:
        result = read_fhir([path], general_schema)
    except MedsynthError:
        return
    parts = _check_parts(path, data)
    counts = result.counts
    resources = [p for p in parts if isinstance(p, Entry) and p.resource is not None]
    problems = [p for p in parts if isinstance(p, FileProblem)]
    assert sum(counts.read.values()) == len(resources)
    assert sum(counts.skipped.values()) >= len(problems)
    assert counts.ignored_types.get("(bulk data manifest)", 0) == sum(
        isinstance(p, NotResource) for p in parts
    )
    assert "\n" in result.summary()
    json.dumps(result.to_dict())
    result.cohort.save(folder / "cohort")
    assert path.read_bytes() == data  # the input is never modified
