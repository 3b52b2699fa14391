"""Canonical JSON bytes and SHA-256 hashes of bytes, files and folders."""

from __future__ import annotations

import hashlib
import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medsynth.errors import DataError, MedsynthError
from medsynth.report.canonical import (
    NotCanonicalError,
    canonical_json,
    hash_file,
    hash_tree,
    sha256_hex,
)


def test_exact_bytes_sorted_compact_utf8():
    doc = {
        "b": [1, 0.5, -0.0, 1e-05, 1e16, 2.5e-300, True, False, None, (3, 4)],
        "a": 'é\n"\\ \u2028',
        "c": {"z": 1, "y": {"x": []}},
        "A": {},
    }
    expected = (
        '{"A":{},"a":"é\\n\\"\\\\ \u2028","b":[1,0.5,-0.0,1e-05,1e+16,2.5e-300,'
        'true,false,null,[3,4]],"c":{"y":{"x":[]},"z":1}}'
    ).encode()
    assert canonical_json(doc) == expected


def test_key_order_and_insertion_order_do_not_matter():
    assert canonical_json({"a": 1, "b": {"d": 2, "c": 3}}) == canonical_json(
        {"b": {"c": 3, "d": 2}, "a": 1}
    )


def test_floats_use_the_shortest_round_trip_form():
    assert canonical_json([0.1, 1 / 3, 100.0, 123456789.0]) == (
        b"[0.1,0.3333333333333333,100.0,123456789.0]"
    )
    assert canonical_json(2**64) == b"18446744073709551616"  # ints stay exact


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
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_round_trip_is_exact_and_idempotent(value):
    data = canonical_json(value)
    back = json.loads(data.decode("utf-8"))
    assert back == value
    assert canonical_json(back) == data
    assert b"\n" not in data and b": " not in data


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
