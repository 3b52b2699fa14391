"""FHIR ingest on hostile input: each way it used to crash or lose data, and the parsing limits.

Every case is a small export with one bad record between good ones: the bad record must come
out as a counted issue naming file, place and field, and the good ones must be read.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from medsynth.cli import cli
from medsynth.cohort import Cohort
from medsynth.errors import DataError
from medsynth.fhir.read import NOTE_ZERO_OUT_OF_RANGE, read_fhir
from medsynth.fhir.read_json import (
    CHUNK,
    MAX_DEPTH,
    MAX_RECORD_BYTES,
    MAX_STRING_BYTES,
    JsonEvents,
    NonFiniteAsStrings,
    Refused,
    build,
    max_depth_of,
    show,
)
from medsynth.fhir.read_map import BAD_TEXT, NO_CODE, NON_NUMERIC, NOT_OBJECT, Skip, map_patient
from medsynth.fhir.read_resources import (
    ENTRY_NOT_ARRAY,
    ENTRY_OUTSIDE_BUNDLE,
    UNKNOWN_BUNDLE_ELEMENT,
    UNKNOWN_ENTRY_ELEMENT,
)
from medsynth.fhir.read_sources import BAD_JSON, TOO_DEEP, TOO_LARGE, TOO_LONG, iter_file

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
P1 = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-01-01"}
ROOT = Path(__file__).resolve().parents[2]


def _obs(value, *, rid=None, day=1, code="2339-0", unit="mg/dL"):
    res = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": f"2020-01-{day:02d}T00:00:00Z",
        "valueQuantity": {"value": value, "system": UCUM, "code": unit},
    }
    return {"id": rid, **res} if rid else res


def _raw(res: dict, placeholder: str, token: bytes) -> bytes:
    """``res`` as JSON with the string ``placeholder`` replaced by raw text (not JSON-able)."""
    return json.dumps(res).encode().replace(json.dumps(placeholder).encode(), token)


def _ndjson(path: Path, *lines) -> Path:
    text = [x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines]
    path.write_bytes(b"\n".join(text))
    return path


def _bundle_text(*entries) -> bytes:
    """A collection Bundle whose entries are given as dicts or as raw JSON text."""
    items = [e if isinstance(e, bytes) else json.dumps({"resource": e}).encode() for e in entries]
    head = b'{"resourceType": "Bundle", "type": "collection", "entry": ['
    return head + b", ".join(items) + b"]}"


def _entry(raw_resource: bytes) -> bytes:
    return b'{"resource": ' + raw_resource + b"}"


def _issues(result) -> list[tuple[str, str | None, str | None, str]]:
    return [(i.location, i.resource_id, i.field, i.reason) for i in result.issues]


def _values(result) -> list[float]:
    return result.cohort.events["value"].tolist()


def _saves(result, tmp_path: Path) -> None:
    """The cohort can be written (Parquet goes through Arrow, which needs valid UTF-8)."""
    result.cohort.save(tmp_path / "cohort_out", overwrite=True)


# -- crashes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "token",
    [b"9" * 400, b"9" * 5000, b"1e400", b"-" + b"9" * 320],
    ids=["400-digits", "5000-digits", "exponent", "negative"],
)
def test_a_number_out_of_range_costs_only_its_resource(tiny_schema, tmp_path, token):
    """Was an OverflowError (huge integer) or a ValueError (past 4,300 digits) in bulk files."""
    bad = _raw(_obs("V", rid="big"), "V", token)
    bulk = _ndjson(tmp_path / "o.ndjson", P1, _obs(90), bad, _obs(91, day=2))
    bundle = tmp_path / "b.json"
    bundle.write_bytes(_bundle_text(P1, _obs(90), _entry(bad), _obs(91, day=2)))
    for path, where in ((bulk, "line 3"), (bundle, "entry 2")):
        result = read_fhir([path], tiny_schema)
        assert _issues(result) == [(where, "big", "valueQuantity.value", NON_NUMERIC)], path
        assert result.issues[0].detail.endswith(" for channel glucose")
        assert len(result.issues[0].detail) < 120  # shown cut short
        assert _values(result) == [90.0, 91.0]


def test_an_integer_beyond_64_bits_reads_alike_in_bundles_and_bulk_files(tiny_schema, tmp_path):
    big = _raw(_obs("V", rid="big"), "V", b"123456789012345678901234")  # yajl refuses, orjson not
    bulk = _ndjson(tmp_path / "o.ndjson", P1, big)
    bundle = tmp_path / "b.json"
    bundle.write_bytes(_bundle_text(P1, _entry(big)))
    for path in (bulk, bundle):
        result = read_fhir([path], tiny_schema)
        assert result.issues == ()
        assert result.conformance.counts == ((("clipped to bounds", "glucose"), 1),)
        assert _values(result) == [600.0]  # read as 1.2e23, clipped to the channel's maximum


def test_deep_nesting_in_a_bulk_line_is_an_issue(tiny_schema, tmp_path):
    """Was a RecursionError in the fallback parser (deep and NaN), or when showing the value."""
    deep_nan = _raw(_obs("V", rid="a"), "V", b"[" * 5000 + b"NaN" + b"]" * 5000)
    deep = _raw(_obs("V", rid="b"), "V", b"[" * 3000 + b"]" * 3000)
    near = _raw(_obs("V", rid="c"), "V", b"[" * (MAX_DEPTH - 3) + b"]" * (MAX_DEPTH - 3))
    path = _ndjson(tmp_path / "o.ndjson", P1, deep_nan, deep, near, _obs(90))
    result = read_fhir([path], tiny_schema)
    assert _issues(result) == [
        ("line 2", "a", "valueQuantity.value[0][0][0][0][0][0]...", TOO_DEEP),
        ("line 3", "b", "valueQuantity.value[0][0][0][0][0][0]...", TOO_DEEP),
        ("line 4", "c", "valueQuantity.value", NON_NUMERIC),  # 100 levels: read
    ]
    assert result.issues[0].resource_type == "Observation"
    assert result.issues[2].detail.startswith("[[[[")
    assert _values(result) == [90.0]


def test_deep_value_in_a_bundle_entry_is_an_issue(tiny_schema, tmp_path):
    """Was a RecursionError formatting the value for the issue."""
    deep = _raw(_obs("V", rid="d"), "V", b"[" * 3000 + b"]" * 3000)
    path = tmp_path / "b.json"
    path.write_bytes(_bundle_text(P1, _entry(deep), _obs(90)))
    result = read_fhir([path], tiny_schema)
    assert _issues(result) == [("entry 1", "d", "valueQuantity.value[0][0][0][0][0]...", TOO_DEEP)]
    assert result.issues[0].resource_type == "Observation"
    assert result.issues[0].detail == f"level {MAX_DEPTH + 1} reached"
    assert _values(result) == [90.0]


def test_bundles_nested_500_deep_are_one_issue(tiny_schema, tmp_path):
    """Was a RecursionError walking the nested Bundles."""
    head = b'{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": '
    nested = head * 500 + json.dumps({**P1, "id": "deep"}).encode() + b"}]}" * 500
    path = tmp_path / "b.json"
    path.write_bytes(_bundle_text(P1, _entry(nested), _obs(90)))
    result = read_fhir([path], tiny_schema)
    assert [(i.location, i.resource_type, i.reason) for i in result.issues] == [
        ("entry 1", "Bundle", TOO_DEEP)
    ]
    assert result.issues[0].field.startswith("entry[0].resource.entry[0].resource")
    assert result.cohort.patient_ids == ["p1"] and _values(result) == [90.0]
    # Bundles nested within the limit are read, in order, however they are written
    shallow = head * 20 + json.dumps({**P1, "id": "p2"}).encode() + b"}]}" * 20
    ok = tmp_path / "ok.json"
    ok.write_bytes(_bundle_text(P1, _entry(shallow), _obs(90)))
    again = read_fhir([ok], tiny_schema)
    assert again.issues == () and again.cohort.patient_ids == ["p1", "p2"]
    assert again.counts.read["Bundle"] == 21
    places = [p.location for p in iter_file(ok) if getattr(p, "resource", None)]
    assert places[:4] == ["bundle", "entry 0", "entry 1", "entry 1, entry 0"]
    assert places[-1] == "entry 2"


def test_bulk_line_too_deep_for_orjson_does_not_kill_the_process(tmp_path):
    """orjson has no depth limit and overflows the C stack near a million levels (SIGSEGV)."""
    deep = _raw(_obs("V", rid="x"), "V", b"[" * 1_000_000 + b"]" * 1_000_000)
    path = _ndjson(tmp_path / "o.ndjson", P1, deep, _obs(90))
    code = f"""
        from medsynth.fhir.read_sources import iter_file
        from pathlib import Path
        print([(p.location, getattr(p, "reason", None)) for p in iter_file(Path({str(path)!r}))])
    """
    out = _python(code)
    assert out.returncode == 0, out.stderr[-500:]
    assert f"('line 2', {TOO_DEEP!r})" in out.stdout


def _python(code: str, *, memory_gib: int | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter on this tree, under an address-space limit if given."""
    prelude = ""
    if memory_gib:
        limit = memory_gib * 2**30
        prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_a_bundle_entry_nested_100000_deep_reads_in_bounded_memory(tmp_path):
    """A 233 KB Bundle with one entry nested 100,000 deep grew to 21 GB (ijson's prefixes).

    Run in a child process under a 4 GiB address-space limit, so that a regression fails
    (MemoryError) instead of exhausting the machine; the child reports its tracemalloc peak.
    """
    deep = _raw(_obs("V", rid="deep"), "V", b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    path = tmp_path / "b.json"
    path.write_bytes(_bundle_text(P1, _entry(deep), _obs(90)))
    assert 200_000 < path.stat().st_size < 1_000_000
    code = f"""
        import json, tracemalloc
        from medsynth.fhir.read import read_fhir
        from medsynth.schema import parse_schema
        from tests.helpers import minimal_doc
        schema = parse_schema(minimal_doc())
        tracemalloc.start()
        result = read_fhir([{str(path)!r}], schema)
        peak = tracemalloc.get_traced_memory()[1]
        issues = [(i.location, i.resource_id, i.reason) for i in result.issues]
        values = result.cohort.events["value"].tolist()
        print(json.dumps({{"peak": peak, "issues": issues, "values": values}}))
    """
    out = _python(code, memory_gib=4)
    assert out.returncode == 0, out.stderr[-500:]
    report = json.loads(out.stdout)
    assert report["issues"] == [["entry 1", "deep", TOO_DEEP]]
    assert report["values"] == [90.0]
    assert report["peak"] < 32 * 2**20, report["peak"]


def test_ids_that_are_not_valid_unicode(general_schema, tiny_schema, tmp_path):
    """Was a pyarrow UnicodeEncodeError: the fallback parser let a lone surrogate through."""
    cesu = json.dumps({**P1, "id": "pX"}).encode().replace(b"pX", b"p\xed\xa0\x80")
    escaped = json.dumps({**P1, "id": "q\ud800"}).encode()  # \ud800: valid JSON, no character
    path = _ndjson(tmp_path / "o.ndjson", cesu, escaped, P1, _obs(90))
    result = read_fhir([path], tiny_schema)
    assert [(i.location, i.reason) for i in result.issues] == [("line 1", BAD_JSON)]
    assert "utf-8" in result.issues[0].detail
    assert result.cohort.patient_ids == ["p1", "q?"]  # the C parser reads a lone \ud800 as '?'
    _saves(result, tmp_path)
    # the mapper refuses such an id from any parser, and conformance from any table
    with pytest.raises(Skip) as skip:
        map_patient({**P1, "id": "q\ud800"}, None, general_schema)
    assert (skip.value.reason, skip.value.field) == (BAD_TEXT, "id")
    table = pd.DataFrame({"patient_id": ["a", "b\ud800"]}, dtype="object")
    with pytest.raises(DataError, match=r"patients table, row 1, column 'patient_id'"):
        Cohort.conform(tiny_schema, table)


def test_an_observation_in_year_2_has_no_calendar_time_zero(general_schema, tmp_path):
    """Was a ValueError ('year -3 is out of range') computing the age at time zero."""
    early = {**_obs(90), "effectiveDateTime": "0002-01-01"}
    path = _ndjson(tmp_path / "o.ndjson", P1, early)
    result = read_fhir([path], general_schema)  # time zero: the last event minus five years
    assert result.counts.notes[NOTE_ZERO_OUT_OF_RANGE] == 1
    assert pd.isna(result.cohort.patients["age"].iloc[0])


def test_a_full_url_that_is_not_a_string(tiny_schema, tmp_path):
    """Was a TypeError: an object fullUrl of an Observation without id went into a set."""
    path = tmp_path / "b.json"
    entry = json.dumps({"fullUrl": {"x": 1}, "resource": _obs(90)}).encode()
    path.write_bytes(_bundle_text(P1, entry, _obs(91, day=2)))
    result = read_fhir([path], tiny_schema)
    assert result.issues == () and _values(result) == [90.0, 91.0]


# -- sizes -------------------------------------------------------------------------------------
def test_records_over_the_size_limit_are_issues_and_the_file_goes_on(tiny_schema, tmp_path):
    # a Bundle entry's size is measured to within a read chunk: exceed the limit by more
    filler = b"[" + b",".join([b'"0123456789"'] * (MAX_RECORD_BYTES // 13 + 100_000)) + b"]"
    big = _raw(_obs("V", rid="big"), "V", filler)
    assert len(big) > MAX_RECORD_BYTES + 2 * CHUNK
    bulk = _ndjson(tmp_path / "o.ndjson", P1, big, _obs(90))
    bundle = tmp_path / "b.json"
    bundle.write_bytes(_bundle_text(P1, _entry(big), _obs(90)))
    assert _issues(read_fhir([bulk], tiny_schema)) == [("line 2", None, None, TOO_LARGE)]
    result = read_fhir([bundle], tiny_schema)
    assert _issues(result) == [("entry 1", "big", None, TOO_LARGE)]
    assert result.issues[0].resource_type == "Observation" and _values(result) == [90.0]


def test_a_string_over_the_token_limit_ends_the_file_with_an_issue(tiny_schema, tmp_path):
    long = _raw(_obs("V", rid="long"), "V", b'"' + b"x" * (MAX_STRING_BYTES + 2**20) + b'"')
    bundle = tmp_path / "b.json"
    bundle.write_bytes(_bundle_text(P1, _obs(90), _entry(long), _obs(91, day=2)))
    result = read_fhir([bundle], tiny_schema)
    assert _issues(result) == [("after entry 1", None, None, TOO_LONG)]
    assert _values(result) == [90.0]


# -- losses that were silent -------------------------------------------------------------------
def test_a_panel_component_with_an_unreadable_code_is_an_issue(general_schema, tmp_path):
    def component(code, value):
        return {"code": code, "valueQuantity": {"value": value, "system": UCUM, "code": "mm[Hg]"}}

    systolic = component({"coding": [{"system": LOINC, "code": "8480-6"}]}, 120)
    panel = {
        **_obs(None, rid="bp", code="85354-9"),
        "component": [
            systolic,
            component({"coding": [{"system": LOINC, "code": 8462}]}, 80),  # a number, not a code
            component(None, 81),
            "diastolic 82",
        ],
    }
    path = _ndjson(tmp_path / "o.ndjson", P1, panel)
    result = read_fhir([path], general_schema)
    assert _issues(result) == [
        ("line 2", "bp", "component[1].code", NO_CODE),
        ("line 2", "bp", "component[2].code", NO_CODE),
        ("line 2", "bp", "component[3]", NOT_OBJECT),
    ]
    assert "8462" in result.issues[0].detail
    assert result.counts.mapped["events"] == 1  # systolic: the group is then left incomplete


def test_bundle_entries_that_are_not_an_array_or_misspelled(tiny_schema, tmp_path):
    as_object = tmp_path / "object.json"
    as_object.write_text(
        json.dumps({"resourceType": "Bundle", "id": "b", "entry": {"resource": P1}})
    )
    misspelled = tmp_path / "entries.json"
    misspelled.write_text(
        json.dumps({"resourceType": "Bundle", "entries": [{"resource": P1}] * 20, "total": 20})
    )
    result = read_fhir([as_object], tiny_schema)
    assert _issues(result) == [("bundle", "b", "entry", ENTRY_NOT_ARRAY)]
    assert result.issues[0].detail == "an object of 1 member(s)"
    result = read_fhir([misspelled], tiny_schema)
    assert _issues(result) == [("bundle", None, "entries", UNKNOWN_BUNDLE_ELEMENT)]
    assert result.issues[0].detail == "an array of 20 item(s)"
    # the same inside a nested Bundle, and a misspelled entry element
    nested = {"resourceType": "Bundle", "id": "n", "entries": [{"resource": P1}], "entry": {}}
    path = tmp_path / "nested.json"
    path.write_bytes(_bundle_text(nested, json.dumps({"resorce": P1}).encode(), P1))
    result = read_fhir([path], tiny_schema)
    assert _issues(result) == [
        ("entry 0", "n", "entries", UNKNOWN_BUNDLE_ELEMENT),
        ("entry 0", "n", "entry", ENTRY_NOT_ARRAY),
        ("entry 1", None, "resorce", UNKNOWN_ENTRY_ELEMENT),
    ]
    assert result.cohort.patient_ids == ["p1"]


def test_a_json_file_holding_several_resources_is_read_fully(tiny_schema, tmp_path):
    """An ndjson file saved as .json was read to its first value: 19 of 20 Patients lost."""
    patients = [{**P1, "id": f"p{i:02d}"} for i in range(20)]
    path = _ndjson(tmp_path / "patients.json", *patients)
    result = read_fhir([path], tiny_schema)
    assert result.issues == () and result.counts.read["Patient"] == 20
    assert result.cohort.n_patients == 20
    locations = [p.location for p in iter_file(path)]
    assert locations == [f"value {i}" for i in range(1, 21)]
    # a Bundle followed by resources; one value alone is "resource"; trailing junk is an issue
    mixed = tmp_path / "mixed.json"
    mixed.write_bytes(_bundle_text(P1) + b"\n" + json.dumps(_obs(90)).encode())
    assert [p.location for p in iter_file(mixed)] == ["bundle", "entry 0", "value 2"]
    nan = tmp_path / "nan.json"  # the tolerant pass reads on from where the fast one stopped
    nan.write_bytes(json.dumps(P1).encode() + b"\n" + _raw(_obs("V", rid="n"), "V", b"NaN"))
    result = read_fhir([nan], tiny_schema)
    assert _issues(result) == [("value 2", "n", "valueQuantity.value", NON_NUMERIC)]
    assert [p.location for p in iter_file(nan)] == ["value 1", "value 2"]
    junk = tmp_path / "junk.json"
    junk.write_bytes(json.dumps(P1).encode() + b" }")
    parts = list(iter_file(junk))
    assert [(p.location, getattr(p, "reason", None)) for p in parts] == [
        ("resource", None),
        ("after resource", BAD_JSON),
    ]


def test_an_entry_array_on_a_resource_that_is_not_a_bundle_is_counted(tiny_schema, tmp_path):
    entries = [{"resource": {**P1, "id": f"q{i}"}} for i in range(20)]
    alone = tmp_path / "patient.json"
    alone.write_text(json.dumps({**P1, "entry": entries}))
    result = read_fhir([alone], tiny_schema)
    assert _issues(result) == [("resource", "p1", "entry", ENTRY_OUTSIDE_BUNDLE)]
    assert result.issues[0].detail == "an array of 20 item(s)"
    assert result.cohort.patient_ids == ["p1"]  # the Patient itself is read
    lst = {"resourceType": "List", "status": "current", "mode": "working", "entry": []}
    bulk = _ndjson(tmp_path / "o.ndjson", {**P1, "entry": []}, lst)
    assert _issues(read_fhir([bulk], tiny_schema)) == [
        ("line 1", "p1", "entry", ENTRY_OUTSIDE_BUNDLE)  # List.entry is List's own
    ]


# -- the command line ------------------------------------------------------------------------------
def test_the_cli_counts_every_bad_record_and_exits_zero(tmp_path):
    src = tmp_path / "export"
    src.mkdir()
    deep = _raw(_obs("V", rid="deep"), "V", b"[" * 5000 + b"]" * 5000)
    big = _raw(_obs("V", rid="big"), "V", b"9" * 5000)
    _ndjson(src / "a.ndjson", P1, deep, big, _obs(90))
    (src / "b.json").write_bytes(_bundle_text(_entry(deep), _obs(91, day=2)))
    (src / "c.json").write_text(json.dumps({"resourceType": "Bundle", "entry": {}}))
    (src / "d.json.gz").write_bytes(gzip.compress(json.dumps(P1).encode() * 3, mtime=0))
    out = tmp_path / "cohort"
    result = CliRunner().invoke(
        cli, ["ingest", str(src), "--schema", "general-adult", "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert f"       2  {TOO_DEEP}" in result.output
    assert f"       1  {NON_NUMERIC}" in result.output
    assert f"       1  {ENTRY_NOT_ARRAY}" in result.output
    assert "b.json, entry 0: Observation 'deep' valueQuantity.value[0]" in result.output
    assert (out / "cohort.json").exists()


def test_the_cli_refuses_an_export_without_fhir_files_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("no FHIR here")
    result = CliRunner().invoke(
        cli, ["ingest", str(tmp_path), "--schema", "general-adult", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: no FHIR files")


# -- the bounded parser itself -----------------------------------------------------------------
class _Chunks:
    """A byte stream that returns at most ``size`` bytes per read."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.at = data, size, 0

    def read(self, n: int = -1) -> bytes:
        end = self.at + (min(n, self.size) if n > 0 else self.size)
        out, self.at = self.data[self.at : end], min(end, len(self.data))
        return out


def test_numbers_out_of_range_become_text_across_any_chunk_border():
    long = b"7" * 450  # over MAX_NUMBER_DIGITS: text without being converted
    doc = (
        b'{"a": [1e400, -1e999, 12345678901234567890123, 9223372036854775807, 0.5e-400, '
        b"1.25e300, -7, " + long + b'], "s": "1e400 \\" 99999999999999999999", "n": NaN}'
    )
    expected = {
        "a": ["1e400", "-1e999", 1.2345678901234568e22, 9223372036854775807, 0.0, 1.25e300, -7],
        "s": '1e400 " 99999999999999999999',
        "n": "NaN",
    }
    expected["a"].append(long.decode())
    for size in [*range(1, 40), 97, 449, 450, 451, len(doc)]:
        stream = NonFiniteAsStrings(_Chunks(doc, size))
        out = b"".join(iter(lambda s=stream: s.read(7), b""))
        assert json.loads(out) == expected, size


def _reference_depth(raw: bytes) -> int:
    depth = best = 0
    in_string = escaped = False
    for c in raw.decode("latin-1"):
        if in_string:
            in_string, escaped = (escaped or c != '"'), (not escaped and c == "\\")
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            best = max(best, depth)
        elif c in "]}":
            depth -= 1
    return best


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": [[{"b": "[[[[\\"]]"}]]]}',
        b'["\\\\", [["{{{"]], {}]',
        b'{"a": "unterminated [[[[',
        b'{"a": "ends in a backslash \\',
        b"[" * 300 + b"]" * 300,
        b'"' + b'\\"' * 1000,
    ],
)
def test_max_depth_of_skips_brackets_in_strings(raw):
    assert max_depth_of(raw) == _reference_depth(raw)


def test_a_refused_record_is_skipped_and_the_stream_goes_on():
    deep = b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5)
    text = b'[{"resourceType": "X", "id": "a", "v": ' + deep + b'}, {"id": "b"}]'
    it = iter(JsonEvents(_Chunks(text, 5)))
    assert next(it) == ("start_array", None)
    event, value = next(it)
    with pytest.raises(Refused) as refused:
        build(it, event, value, 2)
    assert refused.value.reason == TOO_DEEP
    assert (refused.value.partial["resourceType"], refused.value.partial["id"]) == ("X", "a")
    assert refused.value.field.startswith("v[0][0]")
    event, value = next(it)
    assert build(it, event, value, 2) == {"id": "b"}
    assert list(it) == [("end_array", None)]


def test_show_cuts_any_value_short():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert show(deep) == "[[[[...]]]]"
    assert len(show("x" * 10**6)) < 100 and len(show(list(range(10**5)))) < 100
    assert show(10**5000).startswith("<int")
