"""Check FHIR R4 resources and whole output folders: structure, bindings, dates, references.

:func:`validate_resource` checks one resource (a Bundle with its entries included) three ways:
against the ``fhir.resources.R4B`` pydantic model (structure, cardinality, primitive formats);
against ``schemas/fhir-bindings.schema.json`` (the required bindings that library does not
check: administrative gender, status codes, Bundle type, request method...; a ``dateTime``
with a time must carry a time zone); and for real calendar dates (no 30 February). With
``synthetic=True`` it also demands medsynth's synthetic ``meta.tag``.
:func:`validate_output` checks every file of a bulk ndjson folder or of a folder of Bundles,
that every reference resolves (inside its Bundle, or across the ndjson set) and that the
counts and hashes of ``manifest.json`` match the files. Both are for tests, the CLI and users
who want proof; the writer itself never calls them (see ``docs/performance.md``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError as PydanticValidationError

from medsynth.errors import DataError
from medsynth.fhir.resources import SYNTHETIC_TAG
from medsynth.schema import load_json_schema

__all__ = ["ValidationSummary", "validate_output", "validate_resource"]

BINDINGS_SCHEMA = "fhir-bindings.schema.json"
MAX_KEPT_ERRORS = 1000
_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2}).*)?)?)?")
_URN_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _real_date(value: object) -> bool:
    """True unless ``value`` is a date-like string naming a day or time that does not exist."""
    if not isinstance(value, str):
        return True
    m = _DATE.fullmatch(value)
    if m is None:
        return True  # the pattern of the bindings schema reports the shape
    year, month, day, hh, mm, ss = m.groups()
    try:
        dt.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return False
    return hh is None or (int(hh) < 24 and int(mm) < 60 and int(ss) <= 60)


@cache
def _bindings_validator() -> jsonschema.protocols.Validator:
    schema = load_json_schema(BINDINGS_SCHEMA)
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("fhir-date")(_real_date)
    checker.checks("fhir-date-time")(_real_date)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=checker)


def _json_path(parts: Iterator[Any] | Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def validate_resource(resource: Any, *, synthetic: bool = False) -> list[str]:
    """Every problem of one FHIR R4 resource, as ``"<element path>: <message>"``; [] if valid.

    Args:
        resource: the resource as parsed JSON (a dict with ``resourceType``).
        synthetic: also require medsynth's synthetic ``meta.tag`` (on a Bundle: on the Bundle
            and on every entry's resource).

    Example:
        >>> validate_resource({"resourceType": "Patient", "gender": "woman"})
        ["gender: 'woman' is not one of ['male', 'female', 'other', 'unknown']"]
    """
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return ["(resource): not a JSON object with a resourceType"]
    rtype = resource["resourceType"]
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError):
        return [f"resourceType: {rtype!r} is not an R4 resource type"]
    problems: list[str] = []
    try:
        model.model_validate(resource)
    except PydanticValidationError as exc:
        problems += [
            f"{_json_path(e['loc']) or rtype}: {e['msg']} (R4B model)" for e in exc.errors()
        ]
    except (TypeError, ValueError) as exc:  # raised by some fhir.resources validators
        problems.append(f"{rtype}: {exc} (R4B model)")
    for err in sorted(_bindings_validator().iter_errors(resource), key=lambda e: list(e.path)):
        what = err.message
        if err.validator == "format":
            what = "not a real calendar date or time"
        elif err.validator == "contains":
            system = err.validator_value.get("properties", {}).get("system", {}).get("const")
            what = f"no coding of the required system {system}"
        problems.append(f"{_json_path(err.absolute_path) or rtype}: {what}")
    if synthetic:
        problems += _tag_problems(resource)
    return problems


def _tag_problems(resource: dict[str, Any]) -> list[str]:
    out = []
    tags = (resource.get("meta") or {}).get("tag") or []
    if not any(
        isinstance(t, dict)
        and t.get("system") == SYNTHETIC_TAG["system"]
        and t.get("code") == SYNTHETIC_TAG["code"]
        for t in tags
    ):
        out.append(f"meta.tag: no synthetic tag {SYNTHETIC_TAG['system']}|{SYNTHETIC_TAG['code']}")
    if resource.get("resourceType") == "Bundle":
        for i, entry in enumerate(resource.get("entry") or []):
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict):
                out += [f"entry[{i}].resource.{p}" for p in _tag_problems(inner)]
    return out


def references(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(element path, reference)`` of ``Reference.reference`` values in ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else key
            if key == "reference" and isinstance(value, str):
                yield where, value
            else:
                yield from references(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from references(value, f"{path}[{i}]")


@dataclass(frozen=True)
class ValidationSummary:
    """What :func:`validate_output` found: counts, and the problems (the first 1000 kept).

    Each error reads ``"<file>:<line or entry>: <Type>/<id>: <element>: <message>"``.
    """

    path: Path
    files: int
    counts: dict[str, int]
    n_errors: int
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.n_errors == 0

    @property
    def total(self) -> int:
        """Resources checked (Bundles not counted)."""
        return sum(n for t, n in self.counts.items() if t != "Bundle")


class _Collector:
    """Problems and counts gathered file by file; references resolved at the end."""

    def __init__(self, synthetic: bool) -> None:
        self.synthetic = synthetic
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.n_errors = 0
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (where, "Type/id") across the ndjson set

    def error(self, message: str) -> None:
        self.n_errors += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(message)

    def resource(self, res: Any, where: str) -> None:
        rtype = res.get("resourceType") if isinstance(res, dict) else None
        label = f"{where}: {rtype}/{res.get('id')}" if rtype else where
        for p in validate_resource(res, synthetic=self.synthetic):
            self.error(f"{label}: {p}")
        if isinstance(rtype, str):
            self.counts[rtype] += 1

    def ndjson(self, path: Path) -> None:
        with path.open("rb") as fh:
            for n, line in enumerate(fh, 1):
                where = f"{path.name}:{n}"
                try:
                    res = json.loads(line)
                except ValueError as exc:
                    self.error(f"{where}: not JSON: {exc}")
                    continue
                self.resource(res, where)
                if not isinstance(res, dict):
                    continue
                key = f"{res.get('resourceType')}/{res.get('id')}"
                if key in self.ids:
                    self.error(f"{where}: {key}: id used twice in the ndjson set")
                self.ids.add(key)
                self.refs += [(f"{where}: {key}: {p}", r) for p, r in references(res)]

    def bundle(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_bytes())
        except ValueError as exc:
            self.error(f"{path.name}: not JSON: {exc}")
            return
        self.resource(doc, path.name)
        entries = doc.get("entry") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            return
        targets: set[str] = set()
        for i, entry in enumerate(entries):
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                continue
            self.counts[str(res.get("resourceType"))] += 1
            full = entry.get("fullUrl")
            if not (isinstance(full, str) and _URN_UUID.fullmatch(full)):
                self.error(f"{path.name}: entry[{i}].fullUrl: {full!r} is not a urn:uuid")
            elif full in targets:
                self.error(f"{path.name}: entry[{i}].fullUrl: {full} appears twice")
            targets.update((str(full), f"{res.get('resourceType')}/{res.get('id')}"))
        for i, entry in enumerate(entries):
            res = entry.get("resource") if isinstance(entry, dict) else None
            for where, ref in references(res):
                if ref not in targets:
                    self.error(
                        f"{path.name}: entry[{i}].resource.{where}: {ref} does not "
                        "resolve inside the Bundle"
                    )

    def resolve_ndjson_refs(self) -> None:
        for where, ref in self.refs:
            if ref not in self.ids:
                self.error(f"{where}: {ref} does not resolve in the ndjson set")
        self.refs = []


def validate_output(folder: str | Path, *, synthetic: bool = True) -> ValidationSummary:
    """Validate a FHIR output folder: every ``*.ndjson`` and ``*.json`` resource file in it.

    Bundles are checked entry by entry, and each Bundle's references must resolve inside it;
    ndjson resources must have ids unique per type and references that resolve across the
    set. A ``manifest.json`` (Bulk Data shape) must list every file with its count (and
    sha256, when it carries medsynth's extension).

    Raises:
        DataError: ``folder`` is not a folder or holds no resource file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give the folder write_fhir wrote")
    ndjson = sorted(root.glob("*.ndjson"))
    bundles = sorted(p for p in root.glob("*.json") if p.name != "manifest.json")
    if not ndjson and not bundles:
        raise DataError(f"{root} holds no *.ndjson or Bundle *.json file to validate")
    col = _Collector(synthetic)
    for path in ndjson:
        col.ndjson(path)
    col.resolve_ndjson_refs()
    for path in bundles:
        col.bundle(path)
    if (root / "manifest.json").exists():
        _check_manifest(root, ndjson + bundles, col)
    return ValidationSummary(
        root, len(ndjson) + len(bundles), dict(col.counts), col.n_errors, tuple(col.errors)
    )


def _check_manifest(root: Path, files: list[Path], col: _Collector) -> None:
    try:
        doc = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        listed = {o["url"]: int(o["count"]) for o in doc["output"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        col.error(f"manifest.json: not a Bulk Data manifest: {exc}")
        return
    sha = ((doc.get("extension") or {}).get("medsynth") or {}).get("sha256") or {}
    for path in files:
        if path.name not in listed:
            col.error(f"manifest.json: {path.name} is not listed in output")
            continue
        data = path.read_bytes()
        count = (
            data.count(b"\n")
            if path.suffix == ".ndjson"
            else len(json.loads(data).get("entry") or [])
        )
        if count != listed[path.name]:
            col.error(
                f"manifest.json: {path.name} has {count} resources, the manifest says "
                f"{listed[path.name]}"
            )
        if path.name in sha and hashlib.sha256(data).hexdigest() != sha[path.name]:
            col.error(f"manifest.json: sha256 of {path.name} does not match")
    for name in sorted(set(listed) - {p.name for p in files}):
        col.error(f"manifest.json: lists {name}, which is missing")
