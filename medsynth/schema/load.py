"""Load and validate dataset schema files.

Validation runs in two passes and reports every problem of both at once: the JSON Schema in
``schemas/dataset.schema.json`` (structure, types, enums) and the semantic rules no JSON Schema
can say (unique names, ``min < max``, panels naming real channels, FHIR gender codes...).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from medsynth._resources import read_shipped_text, shipped_dir
from medsynth.errors import Problem, SchemaError
from medsynth.schema.model import (
    Attribute,
    Category,
    Channel,
    ConditionCode,
    DatasetSchema,
    Limits,
    MeasurementGroup,
    Panel,
    TimeSpec,
)

FHIR_GENDERS = ("male", "female", "other", "unknown")


def schemas_dir() -> Path:
    """The folder holding medsynth's JSON Schemas and ready dataset schemas (``schemas/``).

    Raises:
        MissingDataError: the folder is missing from this installation.
    """
    return shipped_dir("schemas", "dataset.schema.json")


def shipped_schemas() -> dict[str, Path]:
    """Ready dataset schemas shipped with medsynth, by name."""
    return {
        p.name.removesuffix(".dataset.json"): p
        for p in sorted(schemas_dir().glob("*.dataset.json"))
    }


@cache
def load_json_schema(name: str) -> dict[str, Any]:
    """A JSON Schema from ``schemas/`` by file name (e.g. ``"dataset.schema.json"``)."""
    return json.loads(read_shipped_text(schemas_dir(), name))


def json_path(parts: Any) -> str:
    """Render a jsonschema error path as ``$.channels[3].min``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate_document(document: Any, schema_name: str) -> list[Problem]:
    """All JSON Schema problems of ``document`` against ``schemas/<schema_name>``, by path."""
    validator = jsonschema.Draft202012Validator(
        load_json_schema(schema_name), format_checker=jsonschema.FormatChecker()
    )
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [Problem(json_path(e.absolute_path), _short(e)) for e in errors]


def _short(error: jsonschema.ValidationError) -> str:
    if error.validator in ("oneOf", "anyOf") and error.context:
        return "; ".join(sorted({c.message for c in error.context}))
    return error.message


def read_json_document(source: str | Path, shipped: dict[str, Path], kind: str) -> tuple[Any, Path]:
    """Read a JSON document from a file path or the name of a shipped one.

    Args:
        source: a file path, or a name in ``shipped`` when no such file exists.
        shipped: the shipped documents by name.
        kind: what the document is, for messages (``"schema"``, ``"policy"``).

    Returns:
        The parsed document and the path it was read from.

    Raises:
        SchemaError: the file does not exist (naming the shipped ones) or is not valid JSON.
    """
    path = Path(source)
    if not path.exists() and str(source) in shipped:
        path = shipped[str(source)]
    if not path.is_file():
        names = ", ".join(shipped) or "none"
        raise SchemaError(
            str(source), [Problem("$", f"no such file or shipped {kind} (shipped: {names})")]
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaError(str(path), [Problem("$", f"not valid JSON: {exc}")]) from None
    return document, path


def load_schema(source: str | Path) -> DatasetSchema:
    """Load a dataset schema from a file path or the name of a shipped schema.

    Raises:
        SchemaError: listing every problem with its JSON path.
    """
    document, path = read_json_document(source, shipped_schemas(), "schema")
    return parse_schema(document, source=str(path))


def parse_schema(document: Any, *, source: str = "<schema>") -> DatasetSchema:
    """Validate a schema document (already parsed JSON) and build a :class:`DatasetSchema`."""
    problems = validate_document(document, "dataset.schema.json")
    if problems:
        raise SchemaError(source, problems)
    problems = list(_semantic_problems(document))
    if problems:
        raise SchemaError(source, problems)
    return _build(document)


def _duplicates(values: list[str]) -> list[str]:
    return [v for v, n in Counter(values).items() if n > 1]


def _semantic_problems(doc: dict[str, Any]) -> Iterator[Problem]:
    attrs, channels, panels = doc["attributes"], doc["channels"], doc.get("panels", [])
    names = [a["name"] for a in attrs] + [c["name"] for c in channels] + [p["name"] for p in panels]
    for name in _duplicates(names):
        yield Problem("$", f"name {name!r} is used more than once (attributes, channels, panels)")
    for fhir in _duplicates([a["fhir"] for a in attrs]):
        yield Problem("$.attributes", f"two attributes map to the same FHIR element {fhir!r}")
    for i, a in enumerate(attrs):
        where = f"$.attributes[{i}]"
        yield from _attribute_problems(a, where)
    codes = [c["code"] for c in channels] + [x for c in channels for x in c.get("aliases", [])]
    codes += [p["code"] for p in panels] + [x for p in panels for x in p.get("aliases", [])]
    for code in _duplicates(codes):
        yield Problem("$", f"LOINC code {code!r} names more than one channel or panel")
    for i, c in enumerate(channels):
        where = f"$.channels[{i}]"
        if not c["min"] < c["max"]:
            yield Problem(where, f"min {c['min']} must be below max {c['max']}")
        if c.get("scale") == "log" and not c["min"] > 0:
            yield Problem(where, f"scale 'log' needs min > 0, got {c['min']}")
        for j, v in enumerate(c.get("point_masses", [])):
            if not c["min"] <= v <= c["max"]:
                yield Problem(
                    f"{where}.point_masses[{j}]",
                    f"{v} lies outside the channel's bounds [{c['min']}, {c['max']}]",
                )
            elif "decimals" in c and round(v, c["decimals"]) != v:
                yield Problem(
                    f"{where}.point_masses[{j}]",
                    f"{v} has more decimals than the channel's {c['decimals']}",
                )
        if "normal" in c:
            lo, hi = c["normal"]
            if not c["min"] <= lo < hi <= c["max"]:
                yield Problem(
                    f"{where}.normal", f"[{lo}, {hi}] must be increasing and inside [min, max]"
                )
    in_panel: list[str] = []
    channel_names = {c["name"] for c in channels}
    for i, p in enumerate(panels):
        for j, comp in enumerate(p["components"]):
            if comp not in channel_names:
                yield Problem(f"$.panels[{i}].components[{j}]", f"{comp!r} is not a channel name")
            in_panel.append(comp)
    for comp in _duplicates(in_panel):
        yield Problem("$.panels", f"channel {comp!r} belongs to more than one panel")
    yield from _group_problems(doc)
    inclusion = [c["code"] for c in doc["conditions"]["codes"] if c.get("inclusion")]
    most = doc["limits"].get("max_conditions")
    if most is not None and len(inclusion) > most:
        yield Problem(
            "$.conditions.codes",
            f"{len(inclusion)} inclusion conditions ({', '.join(inclusion)}) but max_conditions "
            f"is {most}: every patient could not hold them all",
        )
    cond = doc["conditions"]["codes"]
    cond_codes = [c["code"] for c in cond] + [x for c in cond for x in c.get("aliases", [])]
    for code in _duplicates(cond_codes):
        yield Problem("$.conditions.codes", f"condition code {code!r} appears more than once")
    t = doc["time"]
    if t["anchor"] == "fixed_date" and "anchor_date" not in t:
        yield Problem("$.time", "anchor 'fixed_date' needs 'anchor_date'")
    lim = doc["limits"]
    if lim["max_events_total"] < lim["max_events_per_channel"] and len(channels) == 1:
        yield Problem(
            "$.limits", "max_events_total is below max_events_per_channel of the only channel"
        )
    if lim.get("min_events_total", 0) > lim["max_events_total"]:
        yield Problem(
            "$.limits.min_events_total",
            f"min_events_total ({lim['min_events_total']}) exceeds max_events_total "
            f"({lim['max_events_total']})",
        )
    reachable = lim["max_events_per_channel"] * len(channels)
    if lim.get("min_events_total", 0) > reachable:
        yield Problem(
            "$.limits.min_events_total",
            f"min_events_total ({lim['min_events_total']}) exceeds what the channels can hold "
            f"({len(channels)} x max_events_per_channel {lim['max_events_per_channel']})",
        )


def _group_problems(doc: dict[str, Any]) -> Iterator[Problem]:
    """Measurement groups name real channels, each at most once, listed consecutively."""
    groups = doc.get("measurement_groups", [])
    position = {c["name"]: i for i, c in enumerate(doc["channels"])}
    for name in _duplicates([g["name"] for g in groups]):
        yield Problem("$.measurement_groups", f"group name {name!r} is used more than once")
    owner: dict[str, int] = {}
    for i, g in enumerate(groups):
        where = f"$.measurement_groups[{i}]"
        for j, name in enumerate(g["channels"]):
            if name not in position:
                yield Problem(f"{where}.channels[{j}]", f"{name!r} is not a channel name")
            elif name in owner:
                yield Problem(
                    f"{where}.channels[{j}]",
                    f"channel {name!r} is already in measurement group "
                    f"{groups[owner[name]]['name']!r}; a channel belongs to one group at most",
                )
            else:
                owner[name] = i
        known = sorted(position[n] for n in g["channels"] if n in position)
        if known and known[-1] - known[0] + 1 != len(known):
            yield Problem(
                f"{where}.channels",
                "the group's channels must be consecutive in $.channels (a visit lists its "
                "channels in schema order and a group without interruption); move them together",
            )
        if len(g["channels"]) > doc["limits"]["max_events_total"]:
            yield Problem(
                f"{where}.channels",
                f"{len(g['channels'])} channels exceed limits.max_events_total "
                f"({doc['limits']['max_events_total']}), so no record could hold the group",
            )


def _attribute_problems(a: dict[str, Any], where: str) -> Iterator[Problem]:
    kind, home = a["type"], a["fhir"]
    expected = {
        "Patient.gender": ("categorical",),
        "Patient.birthDate": ("numeric", "date"),
        "us-core-race": ("categorical",),
        "us-core-ethnicity": ("categorical",),
        "Patient.address.state": ("categorical",),
        "Patient.address.zip3": ("categorical",),
        "Patient.deceased": ("boolean",),
    }[home]
    if kind not in expected:
        yield Problem(
            f"{where}.type", f"{home} holds a {' or '.join(expected)} attribute, not {kind}"
        )
    if kind == "categorical":
        values = [c if isinstance(c, str) else c["value"] for c in a.get("categories", [])]
        for v in _duplicates(values):
            yield Problem(f"{where}.categories", f"category {v!r} appears more than once")
        if home == "Patient.gender":
            for j, v in enumerate(values):
                if v not in FHIR_GENDERS:
                    yield Problem(
                        f"{where}.categories[{j}]",
                        f"{v!r} is not a FHIR administrative gender ({', '.join(FHIR_GENDERS)})",
                    )
        if home == "Patient.address.zip3":
            for j, v in enumerate(values):
                if not (len(v) == 3 and v.isdigit()):
                    yield Problem(
                        f"{where}.categories[{j}]", f"{v!r} is not a three-digit ZIP prefix"
                    )
    if kind == "numeric" and not a["min"] < a["max"]:
        yield Problem(where, f"min {a['min']} must be below max {a['max']}")
    if kind == "date":
        try:
            lo, hi = dt.date.fromisoformat(a["min"]), dt.date.fromisoformat(a["max"])
        except ValueError as exc:
            yield Problem(where, f"bad date bound: {exc}")
        else:
            if not lo < hi:
                yield Problem(where, f"min {a['min']} must be before max {a['max']}")


def _category(c: str | dict[str, Any]) -> Category:
    if isinstance(c, str):
        return Category(value=c)
    return Category(
        value=c["value"], code=c.get("code"), system=c.get("system"), display=c.get("display")
    )


def _build(doc: dict[str, Any]) -> DatasetSchema:
    t = doc["time"]
    time = TimeSpec(
        anchor=t["anchor"],
        horizon_days=float(t["horizon_days"]),
        output_start=dt.date.fromisoformat(t["output_start"]),
        anchor_date=dt.date.fromisoformat(t["anchor_date"]) if "anchor_date" in t else None,
        output_spread_days=int(t.get("output_spread_days", 0)),
        timezone=t.get("timezone", "+00:00"),
        same_day_visits=bool(t.get("same_day_visits", False)),
    )
    lim = doc["limits"]
    limits = Limits(
        lim["max_events_per_channel"],
        lim["max_events_total"],
        lim.get("max_conditions"),
        int(lim.get("min_events_total", 0)),
    )
    attributes = tuple(
        Attribute(
            name=a["name"],
            type=a["type"],
            fhir=a["fhir"],
            categories=tuple(_category(c) for c in a.get("categories", [])),
            min=a.get("min"),
            max=a.get("max"),
            unit=a.get("unit"),
            decimals=a.get("decimals"),
            description=a.get("description", ""),
            may_be_missing=bool(a.get("may_be_missing", True)),
        )
        for a in doc["attributes"]
    )
    conditions = tuple(
        ConditionCode(
            c["code"],
            c["display"],
            tuple(c.get("aliases", [])),
            inclusion=bool(c.get("inclusion", False)),
        )
        for c in doc["conditions"]["codes"]
    )
    channels = tuple(
        Channel(
            name=c["name"],
            code=c["code"],
            display=c["display"],
            unit=c["unit"],
            min=float(c["min"]),
            max=float(c["max"]),
            category=c["category"],
            aliases=tuple(c.get("aliases", [])),
            unit_aliases=tuple(c.get("unit_aliases", [])),
            normal=tuple(c["normal"]) if "normal" in c else None,  # type: ignore[arg-type]
            decimals=c.get("decimals"),
            description=c.get("description", ""),
            repeat_within_visit=bool(c.get("repeat_within_visit", False)),
            scale=c.get("scale"),
            point_masses=tuple(float(v) for v in c.get("point_masses", [])),
        )
        for c in doc["channels"]
    )
    panels = tuple(
        Panel(
            p["name"],
            p["code"],
            p["display"],
            p["category"],
            tuple(p["components"]),
            tuple(p.get("aliases", [])),
        )
        for p in doc.get("panels", [])
    )
    groups = tuple(
        MeasurementGroup(
            g["name"],
            tuple(sorted(g["channels"], key=[c.name for c in channels].index)),
            g.get("description", ""),
        )
        for g in doc.get("measurement_groups", [])
    )
    return DatasetSchema(
        name=doc["name"],
        time=time,
        limits=limits,
        attributes=attributes,
        condition_system=doc["conditions"]["system"],
        conditions=conditions,
        channels=channels,
        panels=panels,
        measurement_groups=groups,
        title=doc.get("title", ""),
        description=doc.get("description", ""),
        raw=json.loads(json.dumps(doc)),
    )
