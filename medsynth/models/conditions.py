"""Conditions for conditional sampling, resolved against a vocabulary.

A condition fixes part of the prefix: ``{"sex": "female", "age": (40, 60), "diabetes": True}``.
Keys are attribute names, or a condition's code, alias or display (any case; a single word such
as ``"diabetes"`` matches the one condition whose display holds it as a whole word). Values:

* categorical attribute: one category value (or its code/display) or a collection of them;
* boolean attribute: ``True``/``False`` (or ``"true"``/``"false"``);
* numeric attribute: a number or an inclusive ``(low, high)`` range;
* date attribute: an ISO date or an inclusive ``(first, last)`` range of ISO dates;
* condition: ``True`` (present, any onset) or ``False`` (absent).

The sampler fills conditioned slots first and draws the rest from the model given them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsynth.encoding.vocabulary import Vocabulary
from medsynth.errors import DataError
from medsynth.schema import Attribute

__all__ = ["ConditionPlan", "parse_condition_text", "resolve_conditions"]

_TRUE = {"true", "yes", "1", "present"}
_FALSE = {"false", "no", "0", "absent"}


@dataclass(frozen=True, eq=False)
class ConditionPlan:
    """Allowed local token indices per fixed slot, and numeric ranges to decode within."""

    allowed: dict[int, np.ndarray] = field(default_factory=dict)  # slot id -> local indices
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def slots(self) -> tuple[int, ...]:
        return tuple(sorted(self.allowed))


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().casefold()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise DataError(f"condition {where}: {value!r} is not true or false")


def _find_condition(vocab: Vocabulary, key: str) -> str | None:
    schema = vocab.schema
    if key in schema.condition_by_code:
        return schema.condition_by_code[key].code
    folded = key.casefold()
    for c in schema.conditions:
        if c.display.casefold() == folded:
            return c.code
    word = re.compile(rf"\b{re.escape(folded)}\b")
    hits = [c.code for c in schema.conditions if word.search(c.display.casefold())]
    return hits[0] if len(hits) == 1 else None


def _range(value: Any, where: str, parse) -> tuple[float, float]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = parse(value[0]), parse(value[1])
    else:
        lo = hi = parse(value)
    if lo > hi:
        raise DataError(f"condition {where}: range {value!r} has low > high")
    return lo, hi


def _days(value: Any) -> float:
    return float((dt.date.fromisoformat(str(value)) - dt.date(1970, 1, 1)).days)


def _attribute_plan(vocab: Vocabulary, attr: Attribute, value: Any) -> tuple[np.ndarray, Any]:
    where = repr(attr.name)
    if attr.type == "categorical":
        values = [value] if isinstance(value, str) else list(value)
        local = []
        for v in values:
            cat = attr.category_for_code(str(v))
            if cat is None:
                raise DataError(
                    f"condition {where}: {v!r} is not a category; valid: {', '.join(attr.values)}"
                )
            local.append(1 + attr.values.index(cat.value))
        return np.array(sorted(set(local))), None
    if attr.type == "boolean":
        return np.array([2 if _as_bool(value, where) else 1]), None
    parse = _days if attr.type == "date" else float
    lo, hi = _range(value, where, parse)
    edges = vocab.attribute_edges[attr.name]
    if hi < edges[0] or lo > edges[-1]:
        raise DataError(
            f"condition {where}: {value!r} lies outside the schema bounds [{attr.min}, {attr.max}]"
        )
    lo, hi = max(lo, edges[0]), min(hi, edges[-1])
    n = len(edges) - 1
    last = np.arange(n) == n - 1
    overlap = (edges[:-1] <= hi) & ((edges[1:] > lo) | (last & (edges[1:] >= lo)))
    if attr.decimals is not None or attr.type == "date":
        step = 1.0 if attr.type == "date" else 10.0 ** (-attr.decimals)
        if np.floor(hi / step + 1e-9) < np.ceil(lo / step - 1e-9):
            raise DataError(
                f"condition {where}: no value with {attr.decimals} decimals in {value!r}"
            )
    return 1 + np.flatnonzero(overlap), (lo, hi)


def resolve_conditions(vocab: Vocabulary, conditions: Mapping[str, Any] | None) -> ConditionPlan:
    """Check ``conditions`` against the vocabulary's schema and turn them into a plan.

    Raises:
        DataError: an unknown key or a value the attribute cannot take (all problems listed).
    """
    plan = ConditionPlan()
    problems: list[str] = []
    slot_of = {s.name: i for i, s in enumerate(vocab.slots, start=1) if s.kind != "event"}
    for key, value in (conditions or {}).items():
        try:
            attr = vocab.schema.attribute_by_name.get(key)
            if attr is not None:
                local, rng = _attribute_plan(vocab, attr, value)
                plan.allowed[slot_of[attr.name]] = local
                if rng is not None:
                    plan.ranges[attr.name] = rng
                continue
            code = _find_condition(vocab, str(key))
            if code is None:
                names = ", ".join(vocab.schema.attribute_names)
                raise DataError(
                    f"condition key {key!r} is neither an attribute ({names}) nor a unique "
                    "condition code or display of the schema"
                )
            slot = vocab.slots[slot_of[code] - 1]
            present = _as_bool(value, repr(key))
            plan.allowed[slot_of[code]] = np.arange(1, slot.size) if present else np.array([0])
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        raise DataError("; ".join(problems))
    return plan


def parse_condition_text(text: str) -> tuple[str, Any]:
    """``"sex=female"``, ``"age=40-60"``, ``"race=white,asian"``, ``"diabetes=true"``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise DataError(f"condition {text!r} is not of the form attribute=value")
    key, value = key.strip(), value.strip()
    if "," in value:
        return key, [v.strip() for v in value.split(",")]
    number = r"-?\d+(?:\.\d+)?"
    match = re.fullmatch(rf"({number})\s*(?:-|\.\.)\s*({number})", value)
    if match:
        return key, (float(match.group(1)), float(match.group(2)))
    date_range = re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", value)
    if date_range:
        return key, (date_range.group(1), date_range.group(2))
    if re.fullmatch(number, value):
        return key, float(value)
    return key, value
