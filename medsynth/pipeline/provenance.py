"""One provenance chain: the model hash, and who names it.

A model is named by one hash, :func:`medsynth.models.artifact.model_sha256` (weights and
configuration). Four records carry it, and :func:`check_chain` checks them against each other:

* the model's ``privacy.json`` (``model_sha256``, checked on every load, and its epsilon
  recomputed from its own parameters);
* the privacy ledger's artifact event that settles the training charge (``model_sha256``),
  whose charge must hold the same DP parameters as ``privacy.json``;
* a FHIR export's ``manifest.json`` (``extension.medsynth.extra.model_sha256``);
* an audit report's ``provenance.model.sha256``.

``medsynth report verify`` and ``medsynth budget verify`` both run it. Artifacts written by
medsynth 0.1 name no hash in ``privacy.json``; their ledger entry holds the older hash over every
file (:func:`medsynth.models.artifact.legacy_artifact_sha256`), which is checked instead.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsynth.audit.provenance import jsonable
from medsynth.core.hashing import hash_tree
from medsynth.errors import DataError, MedsynthError
from medsynth.models.artifact import (
    legacy_artifact_sha256,
    model_sha256,
    read_privacy_document,
)
from medsynth.privacy.accounting import DOCUMENT_FIELDS, PrivacyRecord
from medsynth.privacy.ledger import Ledger

__all__ = [
    "ChainCheck",
    "Link",
    "check_chain",
    "check_release_record",
    "ledger_events_of",
    "model_identity",
]

# Fields around the DP parameters: privacy.json's document fields and the ledger's label.
_NOT_PARAMETERS = DOCUMENT_FIELDS | {"label"}


def check_release_record(doc: Mapping[str, Any], where: Path) -> None:
    """Refuse a privacy record that is not a DP-SGD record or whose epsilon, recomputed from
    its own parameters, is above the epsilon it states (an edited record).

    Raises:
        DataError: naming ``where`` (the ``privacy.json``).
    """
    if doc.get("mechanism", "dp-sgd") != "dp-sgd":
        raise DataError(
            f"{where}: this model was trained without differential privacy (a benchmark "
            "ceiling) and is not releasable; train one with 'medsynth train --epsilon E'"
        )
    try:
        record = PrivacyRecord.from_dict(dict(doc), where=str(where))
        _verify_once(record)
    except MedsynthError as exc:
        raise DataError(f"{where}: the privacy record does not hold: {exc}") from None


@functools.lru_cache(maxsize=64)
def _verify_once(record: PrivacyRecord) -> None:
    """``record.verify()``, once per distinct record in a process (the accountant is the cost:
    loading a model and then generating from it checks the same record twice)."""
    record.verify()


def model_identity(model_dir: str | Path | None) -> dict[str, Any] | None:
    """The model as an audit report names it: its hash, each file's hash, its privacy record.

    ``sha256`` is the model hash (:func:`medsynth.models.artifact.model_sha256`), the same one
    the ledger and the FHIR manifest record.
    """
    if model_dir is None:
        return None
    folder = Path(model_dir)
    if not folder.is_dir():
        raise DataError(
            f"model artifact {folder} is not a folder; give the folder written by 'medsynth train'"
        )
    record = read_privacy_document(folder)
    check_release_record(record, folder / "privacy.json")
    return {
        "name": folder.name,
        "sha256": model_sha256(folder),
        "files": hash_tree(folder),
        "privacy_record": jsonable(record),
    }


def ledger_events_of(ledger: Ledger | str | Path, dataset: str) -> list[dict[str, Any]]:
    """The privacy-ledger events of ``dataset`` as plain dictionaries."""
    book = ledger if isinstance(ledger, Ledger) else Ledger(Path(ledger))
    return [jsonable(e.to_dict()) for e in book.events(dataset)]


@dataclass(frozen=True)
class Link:
    """One record of the chain: what it is, the hash it names, and whether it agrees."""

    what: str
    named: str | None
    ok: bool
    note: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        named = (self.named or "-")[:16]
        return f"{mark} {self.what}: {named}{' — ' + self.note if self.note else ''}"


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of :func:`check_chain`."""

    model_sha256: str | None
    links: tuple[Link, ...]

    @property
    def ok(self) -> bool:
        return bool(self.links) and all(link.ok for link in self.links)

    def lines(self) -> list[str]:
        head = f"model {self.model_sha256 or '(unknown)'}"
        return [head, *(f"  {link.line()}" for link in self.links)]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the {what}: {exc}") from None


def _model_link(model: Path) -> tuple[Link, str, Mapping[str, Any] | None]:
    actual = model_sha256(model)
    try:
        doc = read_privacy_document(model)
    except DataError as exc:
        return Link(f"privacy.json of {model}", None, False, str(exc)), actual, None
    if doc.get("format") is None:
        return (
            Link(f"privacy.json of {model}", None, True, "written by medsynth 0.1: names no hash"),
            actual,
            doc,
        )
    if doc.get("mechanism") == "none":
        return (
            Link(f"privacy.json of {model}", actual, False, "trained without privacy"),
            actual,
            doc,
        )
    try:
        record = PrivacyRecord.from_dict(dict(doc), where=str(model / "privacy.json"))
        again = record.verify()
    except MedsynthError as exc:
        return Link(f"privacy.json of {model}", actual, False, str(exc)), actual, doc
    note = f"epsilon {record.epsilon:.6g} recomputed as {again:.6g} ({record.accountant})"
    return Link(f"privacy.json of {model}", actual, True, note), actual, doc


def _ledger_link(
    book: Ledger, ref: str, model: Path | None, record: Mapping[str, Any] | None
) -> Link:
    legacy = record is not None and record.get("format") is None
    want = legacy_artifact_sha256(model) if legacy and model is not None else ref
    events = book.events()
    settled = [
        e
        for e in events
        if e.type == "artifact"
        and want in (e.payload.get("model_sha256"), e.payload.get("artifact_sha256"))
    ]
    what = f"ledger {book.path}"
    if len(settled) != 1:
        why = "no artifact event names this model" if not settled else "several events name it"
        return Link(what, None, False, why)
    charge_id = settled[0].payload.get("charge_id")
    charge = next(e for e in events if e.type == "charge" and e.id == charge_id)
    if record is not None and record.get("format") is not None:
        stated = {k: v for k, v in record.items() if k not in _NOT_PARAMETERS}
        charged = {k: v for k, v in charge.payload.items() if k not in _NOT_PARAMETERS}
        if stated != charged:
            diff = sorted(k for k in set(stated) | set(charged) if stated.get(k) != charged.get(k))
            return Link(what, ref, False, f"charge {charge.id} differs in {', '.join(diff)}")
    note = f"charge {charge.id[:12]} of dataset {charge.dataset[:12]}, epsilon {charge.epsilon:.6g}"
    return Link(what, ref if not legacy else want, True, note)


def _manifest_link(export: Path, ref: str | None) -> tuple[Link, str | None]:
    doc = _read_json(export / "manifest.json", "FHIR export manifest")
    try:
        named = doc["extension"]["medsynth"]["extra"].get("model_sha256")
    except (KeyError, TypeError, AttributeError):
        named = None
    what = f"FHIR export {export}"
    if named is None:
        return Link(what, None, False, "the manifest names no model"), ref
    ok = ref is None or named == ref
    return Link(what, named, ok, "" if ok else "names another model"), ref or named


def _report_link(report: Path, ref: str | None) -> tuple[Link, str | None]:
    doc = _read_json(report / "report.json", "audit report")
    model = (doc.get("provenance") or {}).get("model") if isinstance(doc, dict) else None
    what = f"audit report {report}"
    if not model:
        return Link(what, None, False, "the report names no model"), ref
    named = model.get("sha256")
    if doc.get("format") == "medsynth.audit-report/1":
        return Link(what, named, True, "written by medsynth 0.1: hash of every file"), ref
    ok = ref is None or named == ref
    return Link(what, named, ok, "" if ok else "names another model"), ref or named


def check_chain(
    *,
    model: str | Path | None = None,
    ledger: Ledger | str | Path | None = None,
    export: str | Path | None = None,
    report: str | Path | None = None,
) -> ChainCheck:
    """Check that the given records all name the same model, and that its privacy record holds.

    The reference hash is the model folder's own (recomputed) when ``model`` is given, else the
    first hash named by the report or the export. Give at least two of the four, or a model.

    Example:
        >>> check_chain(model="model/", ledger="ledger.jsonl", export="fhir/").ok  # doctest: +SKIP
        True
    """
    links: list[Link] = []
    ref: str | None = None
    record: Mapping[str, Any] | None = None
    model_path = Path(model) if model is not None else None
    if model_path is not None:
        link, ref, record = _model_link(model_path)
        links.append(link)
    if report is not None:
        link, ref = _report_link(Path(report), ref)
        links.append(link)
    if export is not None:
        link, ref = _manifest_link(Path(export), ref)
        links.append(link)
    if ledger is not None:
        book = ledger if isinstance(ledger, Ledger) else Ledger(Path(ledger))
        if ref is None:
            links.append(Link(f"ledger {book.path}", None, False, "no model hash to look up"))
        else:
            links.append(_ledger_link(book, ref, model_path, record))
    return ChainCheck(ref, tuple(links))
