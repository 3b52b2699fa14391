"""Canonical JSON (RFC 8785, and the 0.1 form it replaced) and SHA-256 hashes of bytes, files and
folders."""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medsynth.core.canonical import (
    JCS,
    LEGACY,
    NotCanonicalError,
    canonical_form_of,
    canonical_json,
)
from medsynth.core.hashing import hash_file, hash_tree, sha256_hex, tree_digest
from medsynth.errors import DataError, MedsynthError


def test_exact_bytes_sorted_compact_utf8():
    doc = {
        "b": [1, 0.5, -0.0, 1e-05, 1e16, 2.5e-300, True, False, None, (3, 4)],
        "a": 'é\n"\\ \u2028',
        "c": {"z": 1, "y": {"x": []}},
        "A": {},
    }
    expected = (
        '{"A":{},"a":"é\\n\\"\\\\ \u2028","b":[1,0.5,0,0.00001,10000000000000000,2.5e-300,'
        'true,false,null,[3,4]],"c":{"y":{"x":[]},"z":1}}'
    ).encode()
    assert canonical_json(doc) == expected


def test_legacy_form_is_what_medsynth_0_1_wrote():
    doc = {"b": [1.0, 1e-05, -0.0, 1e16], "a": "é"}
    assert canonical_json(doc, form=LEGACY) == '{"a":"é","b":[1.0,1e-05,-0.0,1e+16]}'.encode()
    with pytest.raises(ValueError, match="unknown canonical form"):
        canonical_json(doc, form="pretty")


# RFC 8785, section 3.2.2 ("Sample input" and its canonical output) and section 3.2.3 (sorting).
RFC_INPUT = (
    '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
    ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
    ' "literals": [null, true, false]}'
)
RFC_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
)


def test_rfc_8785_sample_input_gives_its_sample_output():
    assert canonical_json(json.loads(RFC_INPUT)) == RFC_OUTPUT.encode("utf-8")


def test_rfc_8785_sorts_keys_by_utf16_code_units():
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    data = canonical_json({k: i for i, k in enumerate(keys)})
    order = list(json.loads(data))
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(
    ("bits", "text"),
    [  # RFC 8785, appendix B: IEEE 754 value (hex) -> its JSON spelling
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_rfc_8785_number_spelling(bits, text):
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert canonical_json(value) == text.encode()


def test_integers_beyond_two_to_the_53_are_refused_in_jcs_only():
    assert canonical_json(2**53 - 1) == b"9007199254740991"
    with pytest.raises(NotCanonicalError, match=r"^\$\.n: integer .* beyond 2\*\*53"):
        canonical_json({"n": 2**64})
    assert canonical_json(2**64, form=LEGACY) == b"18446744073709551616"


def test_canonical_form_of_tells_the_form_or_none():
    doc = {"delta": 1e-05, "n": 3}
    assert canonical_form_of(canonical_json(doc)) == JCS
    assert canonical_form_of(canonical_json(doc, form=LEGACY)) == LEGACY
    assert canonical_form_of(b'{"n": 3}') is None  # whitespace
    assert canonical_form_of(b"not json") is None
    assert canonical_form_of(canonical_json({"s": "x"}), forms=(LEGACY,)) == LEGACY  # same bytes


def test_key_order_and_insertion_order_do_not_matter():
    assert canonical_json({"a": 1, "b": {"d": 2, "c": 3}}) == canonical_json(
        {"b": {"c": 3, "d": 2}, "a": 1}
    )


def test_floats_use_the_shortest_round_trip_form():
    assert canonical_json([0.1, 1 / 3, 100.0, 123456789.0]) == (
        b"[0.1,0.3333333333333333,100,123456789]"
    )


def test_tree_digest_is_the_hash_of_the_canonical_mapping():
    files = {"weights.pt": "a" * 64, "config.json": "b" * 64}
    expected = sha256_hex(b'{"config.json":"' + b"b" * 64 + b'","weights.pt":"' + b"a" * 64 + b'"}')
    assert tree_digest(files) == expected


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [1.0, math.nan]}, "$.a[1]"),
        ({"x": {"y": math.inf}}, "$.x.y"),
        ([-math.inf], "$[0]"),
    ],
)
def test_non_finite_floats_are_refused_with_their_path(value, where):
    with pytest.raises(NotCanonicalError, match=rf"^{re.escape(where)}: ") as info:
        canonical_json(value)
    assert "not a JSON number" in str(info.value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({1: "a"}, "key 1 of type int is not a string"),
        ({"a": {1, 2}}, "$.a: value {1, 2} of type set is not JSON"),
        ({"a": b"x"}, "of type bytes is not JSON"),
        ({"s": "\ud800"}, "$.s: string '\\ud800' is not valid Unicode"),
    ],
)
def test_values_json_cannot_carry_are_refused(value, fragment):
    with pytest.raises(NotCanonicalError, match=re.escape(fragment)):
        canonical_json(value)


def test_error_belongs_to_both_hierarchies():
    assert issubclass(NotCanonicalError, MedsynthError)
    assert issubclass(NotCanonicalError, ValueError)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_round_trip_is_exact_and_idempotent(value):
    data = canonical_json(value)
    back = json.loads(data.decode("utf-8"), parse_int=float)  # JCS numbers are doubles
    assert back == value
    assert canonical_json(back) == data
    assert canonical_form_of(data, forms=(JCS,)) == JCS
    # no whitespace between tokens (strings may hold any): with every string emptied, none
    stripped = canonical_json(_strings_emptied(back))
    assert b" " not in stripped and b"\n" not in stripped


def _strings_emptied(value):
    """``value`` with every string emptied and every key replaced by its position."""
    if isinstance(value, str):
        return ""
    if isinstance(value, list):
        return [_strings_emptied(v) for v in value]
    if isinstance(value, dict):
        return {str(i): _strings_emptied(v) for i, v in enumerate(value.values())}
    return value


def test_sha256_hex_known_vector():
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_hash_file_reads_past_one_chunk(tmp_path):
    data = bytes(range(256)) * 4097 + b"end"  # a little over 1 MiB
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert hash_file(path) == hashlib.sha256(data).hexdigest()


def test_hash_tree_names_every_file_by_relative_posix_path(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "b.txt").write_bytes(b"b")
    (tmp_path / "sub" / "a.txt").write_bytes(b"a")
    (tmp_path / "sub" / "deeper" / "c").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    tree = hash_tree(tmp_path)
    assert tree == {
        "b.txt": sha256_hex(b"b"),
        "sub/a.txt": sha256_hex(b"a"),
        "sub/deeper/c": sha256_hex(b""),
    }
    assert list(tree) == sorted(tree)
    assert hash_tree(tmp_path, exclude=["b.txt"]) == {
        "sub/a.txt": sha256_hex(b"a"),
        "sub/deeper/c": sha256_hex(b""),
    }


def test_hash_tree_refuses_a_file(tmp_path):
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(DataError, match="is not a folder"):
        hash_tree(tmp_path / "f")
