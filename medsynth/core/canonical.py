"""Canonical JSON: the one byte form of every record medsynth hashes or signs.

Records are written in the JSON Canonicalization Scheme (RFC 8785, "JCS"): object keys sorted by
their UTF-16 code units, no insignificant whitespace, strings escaped minimally, numbers in the
shortest form that round-trips an IEEE 754 double, spelled as ECMAScript does (``1e-05`` is
``0.00001``, ``1.0`` is ``1``, ``1e21`` is ``1e+21``). The encoding itself is the ``rfc8785``
package; this module adds the checks that give an error a JSON path and a fix.

medsynth 0.1 wrote its records in an earlier form (:data:`LEGACY`): keys sorted by code point,
no whitespace, numbers as Python's ``repr`` (``1e-05``, ``1.0``). Ledgers and signed reports
written then still verify: each record says which form it is in (a ``format`` field, see the
ledger and privacy record), and :func:`canonical_form_of` tells which form a byte string is in.
Both forms agree on strings, integers, booleans and null, so records without floats (signature
envelopes, ledger head files) are the same bytes in either.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import rfc8785

from medsynth.errors import DataError

__all__ = [
    "CANONICAL_FORMS",
    "JCS",
    "LEGACY",
    "NotCanonicalError",
    "canonical_form_of",
    "canonical_json",
]

JCS = "jcs"  # RFC 8785, written by medsynth >= 0.2
LEGACY = "legacy"  # sorted keys, compact, Python number spelling: medsynth 0.1
CANONICAL_FORMS = (JCS, LEGACY)
_MAX_SAFE_INT = 2**53 - 1  # RFC 8785 section 3.2.2.3: integers must be exact as doubles


class NotCanonicalError(DataError, ValueError):
    """A value has no canonical JSON form (NaN, infinity, a non-string key, a foreign type)."""


def _check(value: Any, where: str, form: str) -> None:
    """Raise :class:`NotCanonicalError` for the first value that ``form`` cannot carry."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NotCanonicalError(
                f"{where}: string {value!r} is not valid Unicode ({exc.reason}); "
                "remove the lone surrogate"
            ) from None
        return
    if isinstance(value, int):
        if form == JCS and abs(value) > _MAX_SAFE_INT:
            raise NotCanonicalError(
                f"{where}: integer {value} is beyond 2**53 - 1, which RFC 8785 JSON cannot carry "
                "exactly; write it as a string"
            )
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
            _check(item, f"{where}.{key}", form)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]", form)
        return
    raise NotCanonicalError(
        f"{where}: value {value!r} of type {type(value).__name__} is not JSON; convert it to "
        "int, float, str, bool, None, list or dict first (e.g. numpy scalars with .item())"
    )


def canonical_json(obj: Any, *, form: str = JCS) -> bytes:
    """Encode ``obj`` as canonical JSON bytes.

    Args:
        obj: nested dicts (string keys), lists, tuples, strings, ints, finite floats, booleans
            and ``None``.
        form: :data:`JCS` (RFC 8785, the default) or :data:`LEGACY` (medsynth 0.1's form, kept
            to check records written then).

    Returns:
        UTF-8 bytes; equal inputs give equal bytes on every machine.

    Raises:
        NotCanonicalError: naming the JSON path (``$.a.b[2]``) of a value JSON cannot carry.

    Example:
        >>> canonical_json({"b": [1.0, 1e-05], "a": "é"})
        b'{"a":"\\xc3\\xa9","b":[1,0.00001]}'
    """
    if form not in CANONICAL_FORMS:
        raise ValueError(f"unknown canonical form {form!r}; use one of {CANONICAL_FORMS}")
    _check(obj, "$", form)
    if form == LEGACY:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    try:
        return rfc8785.dumps(_plain(obj))
    except rfc8785.CanonicalizationError as exc:  # pragma: no cover - _check catches these first
        raise NotCanonicalError(f"$: {exc}") from None


def _plain(obj: Any) -> Any:
    """Tuples as lists and Mappings as dicts, which is all ``rfc8785`` accepts."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def canonical_form_of(data: bytes, forms: tuple[str, ...] = CANONICAL_FORMS) -> str | None:
    """The first of ``forms`` in which ``data`` is exactly the canonical encoding, else None.

    Bytes that are not JSON, or JSON that no form reproduces byte for byte (edited, re-indented),
    give None. JCS numbers are read as doubles (RFC 8785 has no integer type), LEGACY numbers as
    Python reads them.
    """
    for form in forms:
        try:
            text = data.decode("utf-8")
            doc = json.loads(text, parse_int=float) if form == JCS else json.loads(text)
            if canonical_json(doc, form=form) == data:
                return form
        except (UnicodeDecodeError, ValueError, RecursionError):
            continue
    return None
