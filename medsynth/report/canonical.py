"""Canonical JSON and SHA-256 hashing: the bytes that reports are written and signed as.

A report is only verifiable if the same content always gives the same bytes. :func:`canonical_json`
fixes one encoding: keys sorted, UTF-8 without ``\\u`` escapes for non-ASCII text, no whitespace
between tokens, floats in Python's shortest round-trip form (``0.1``, ``1e-05``), integers exact,
and nothing JSON cannot carry (NaN, infinities, non-string keys, other objects) refused with the
JSON path of the offending value. :func:`sha256_hex`, :func:`hash_file` and :func:`hash_tree`
hash bytes, one file and a folder of files the way reports and signatures name them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medsynth.errors import DataError

__all__ = ["NotCanonicalError", "canonical_json", "hash_file", "hash_tree", "sha256_hex"]

_CHUNK = 1 << 20


class NotCanonicalError(DataError, ValueError):
    """A value has no canonical JSON form (NaN, infinity, a non-string key, a foreign type)."""


def _check(value: Any, where: str) -> None:
    """Raise :class:`NotCanonicalError` for the first value JSON cannot carry exactly."""
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise NotCanonicalError(
                    f"{where}: string {value!r} is not valid Unicode ({exc.reason}); "
                    "remove the lone surrogate"
                ) from None
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotCanonicalError(
                f"{where}: {value!r} is not a JSON number; report a missing figure as null "
                "and an unbounded one as a string or a finite bound"
            )
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonicalError(
                    f"{where}: key {key!r} of type {type(key).__name__} is not a string; "
                    "canonical JSON needs string keys (convert with str())"
                )
            _check(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    raise NotCanonicalError(
        f"{where}: value {value!r} of type {type(value).__name__} is not JSON; convert it to "
        "int, float, str, bool, None, list or dict first (e.g. numpy scalars with .item())"
    )


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as canonical JSON bytes.

    Args:
        obj: nested dicts (string keys), lists, tuples, strings, ints, finite floats, booleans
            and ``None``.

    Returns:
        UTF-8 bytes with sorted keys and no insignificant whitespace; equal inputs give equal
        bytes on every machine.

    Raises:
        NotCanonicalError: naming the JSON path (``$.a.b[2]``) of a value JSON cannot carry.

    Example:
        >>> canonical_json({"b": [1, 0.5], "a": "é"})
        b'{"a":"\\xc3\\xa9","b":[1,0.5]}'
    """
    _check(obj, "$")
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def digest_file(path: str | Path) -> tuple[str, int]:
    """SHA-256 hex digest and size in bytes of one file, read in chunks (the same read)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def hash_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes as 64 lowercase hex digits."""
    return digest_file(path)[0]


def tree_files(root: str | Path, *, exclude: Iterable[str] = ()) -> list[str]:
    """Every file under ``root`` as sorted POSIX paths relative to it, minus ``exclude``.

    Raises:
        DataError: when ``root`` is not a folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"{base} is not a folder; give the folder whose files to hash")
    skip = set(exclude)
    names = (p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
    return sorted(n for n in names if n not in skip)


def hash_tree(root: str | Path, *, exclude: Iterable[str] = ()) -> dict[str, str]:
    """SHA-256 of every file under ``root``, keyed by sorted relative POSIX path.

    Args:
        root: the folder to hash (sub-folders included).
        exclude: relative POSIX paths to leave out (e.g. a signature over the rest).

    Example:
        >>> hash_tree("model")  # doctest: +SKIP
        {'config.json': '5f…', 'privacy.json': '9a…', 'weights.pt': 'c1…'}
    """
    base = Path(root)
    return {name: hash_file(base / name) for name in tree_files(base, exclude=exclude)}
