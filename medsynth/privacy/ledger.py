"""The privacy budget ledger: an append-only, hash-chained record of every DP release.

One JSON Lines file holds, for every source dataset (keyed by its fingerprint,
``Cohort.source.fingerprint``), the caps set on it and every release charged to it. Each line is
one :class:`LedgerEvent` in canonical JSON (RFC 8785, :mod:`medsynth.core.canonical`) whose
``hash`` is the SHA-256 of its other fields and whose ``prev_hash`` is the SHA-256 of the
previous line's bytes (64 zeros for the first line). Lines carry ``format``
(:data:`EVENT_FORMAT`); lines without it were written by medsynth 0.1 in its earlier canonical
form and are checked in that form, so old ledgers keep verifying. A sidecar ``<ledger>.head``
file names the number of lines and the last line's hash, sealed with the installation's key
(:mod:`medsynth.privacy.ledger_head`), so a ledger cut back, re-hashed and re-headed, or
stripped of its head, is detected too. A ledger is created only on explicit request
(:meth:`Ledger.create`, ``medsynth budget init``); its first line (``init``) names it and the
default cap of every dataset charged to it. A missing ledger is refused, never read as empty.
Any edited byte, deleted, reordered or torn line raises
:class:`~medsynth.errors.LedgerIntegrityError`; the ledger is never repaired and reading never
modifies it. Appends take a file lock (``<ledger>.lock``) around read, verify and write, write
one complete line with ``O_APPEND`` and fsync it, so concurrent runs lose nothing.

Composition is basic: a dataset's spent epsilon is the sum of its charged epsilons and its spent
delta the sum of the deltas. This is a valid upper bound for any mix of mechanisms and
accountants, simple to check by hand, and conservative. A dataset without a cap of its own is
held to the ledger's default cap (:data:`DEFAULT_CAP` unless ``budget init`` set another).
"""

from __future__ import annotations

import hmac
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from medsynth.core.canonical import JCS, LEGACY, NotCanonicalError, canonical_json
from medsynth.core.hashing import sha256_hex
from medsynth.errors import BudgetError, LedgerIntegrityError, LedgerMissingError, MedsynthError
from medsynth.privacy.accounting import COMPOSITION, PrivacyRecord
from medsynth.privacy.identity import identity_keys, recognise
from medsynth.privacy.installation import create_installation_key, installation_key, mac
from medsynth.privacy.ledger_head import REPAIR, check_head, write_head

__all__ = [
    "DEFAULT_CAP",
    "EVENT_TYPES",
    "BudgetSummary",
    "Ledger",
    "LedgerEvent",
    "default_ledger_path",
]

EVENT_TYPES = ("init", "cap", "charge", "artifact", "dataset")
DEFAULT_CAP = 10.0  # total epsilon of a dataset that has no cap of its own
EVENT_FORMAT = "medsynth.ledger-event/2"  # RFC 8785 lines; 0.1 lines carry no format
GENESIS = "0" * 64
_FIELDS_V1 = frozenset({"id", "type", "dataset", "time", "payload", "prev_hash", "hash"})
_FIELDS = _FIELDS_V1 | {"format", "mac"}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REPAIR = REPAIR


def default_ledger_path() -> Path:
    """``$MEDSYNTH_LEDGER``, else ``$XDG_DATA_HOME/medsynth/ledger.jsonl``, else
    ``~/.local/share/medsynth/ledger.jsonl``."""
    env = os.environ.get("MEDSYNTH_LEDGER")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "medsynth" / "ledger.jsonl"


@dataclass(frozen=True)
class LedgerEvent:
    """One line of the ledger.

    Attributes:
        id: random 32-hex identifier.
        type: ``cap`` (payload ``epsilon``, ``label``), ``charge`` (the privacy record's fields
            plus ``label``) or ``artifact`` (``charge_id`` and ``model_sha256``, the model hash
            of :func:`medsynth.models.artifact.model_sha256`; 0.1 lines hold
            ``artifact_sha256``, a hash over every file of the artifact folder, instead).
        dataset: the dataset fingerprint.
        time: UTC time of the append, ISO 8601.
        payload: the event's data (see ``type``).
        prev_hash: SHA-256 of the previous line's bytes (64 zeros for the first line).
        hash: SHA-256 of the canonical JSON of all other fields.
        format: :data:`EVENT_FORMAT`, or None on a line written by medsynth 0.1.
    """

    id: str
    type: str
    dataset: str
    time: str
    payload: dict[str, Any] = field(hash=False)
    prev_hash: str
    hash: str
    format: str | None = None
    mac: str | None = None

    @property
    def model_sha256(self) -> str | None:
        """The model hash an artifact event records (None on 0.1 lines and other events)."""
        return self.payload.get("model_sha256") if self.type == "artifact" else None

    @property
    def epsilon(self) -> float:
        """The epsilon of a cap or charge event (0 for init and artifact events)."""
        return float(self.payload["epsilon"]) if self.type in ("cap", "charge") else 0.0

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "id": self.id,
            "type": self.type,
            "dataset": self.dataset,
            "time": self.time,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }
        if self.format is not None:
            doc["format"] = self.format
        if self.mac is not None:
            doc["mac"] = self.mac
        return doc


@dataclass(frozen=True)
class BudgetSummary:
    """Where one dataset stands: its cap, what was spent, what is left."""

    dataset: str
    cap: float | None
    spent_epsilon: float
    spent_delta: float
    charges: int
    cap_is_default: bool = False

    @property
    def remaining(self) -> float | None:
        """Epsilon left under the cap (never negative), or None when uncapped."""
        return None if self.cap is None else max(0.0, self.cap - self.spent_epsilon)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "cap": self.cap,
            "cap_is_default": self.cap_is_default,
            "spent_epsilon": self.spent_epsilon,
            "spent_delta": self.spent_delta,
            "charges": self.charges,
            "remaining": self.remaining,
            "composition": COMPOSITION,
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


_sha = sha256_hex


def _check_dataset(dataset: Any) -> str:
    if not isinstance(dataset, str) or not dataset.strip():
        raise MedsynthError(
            f"dataset fingerprint {dataset!r} is empty; a cohort's fingerprint is "
            "Cohort.source.fingerprint (ingest or load the cohort to get one)"
        )
    return dataset


def _check_epsilon(epsilon: Any, what: str) -> float:
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, (int, float))
        or not (0 < epsilon < float("inf"))
    ):
        raise MedsynthError(f"{what} must be a finite number > 0, got {epsilon!r}")
    return float(epsilon)


class Ledger:
    """The budget ledger stored at ``path`` (default: :func:`default_ledger_path`).

    Every reading method verifies the whole chain first and raises
    :class:`~medsynth.errors.LedgerIntegrityError` on any inconsistency. Writing methods create
    the file (and its folders) on first use.

    Example:
        >>> book = Ledger(tmp_path / "ledger.jsonl")  # doctest: +SKIP
        >>> book.set_cap(cohort.source.fingerprint, 3.0)  # doctest: +SKIP
        >>> book.charge(cohort.source.fingerprint, record)  # before training  # doctest: +SKIP
    """

    lock_timeout_s: float = 120.0

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_ledger_path()

    @classmethod
    def create(
        cls, path: str | Path | None = None, *, default_cap: float = DEFAULT_CAP, label: str = ""
    ) -> Ledger:
        """Start a new ledger at ``path`` (and this installation's key, if there is none yet).

        Raises:
            MedsynthError: a ledger (or its head) already exists there.
        """
        book = cls(path)
        cap = _check_epsilon(default_cap, "default cap")
        if book.path.exists() or book.head_path.exists():
            raise MedsynthError(
                f"{book.path} already exists (or its head {book.head_path.name} does); a ledger "
                "is never started over: use it, or choose a new path"
            )
        create_installation_key()
        payload = {"ledger_id": uuid.uuid4().hex, "default_cap": cap, "label": str(label)}
        book._append("init", payload, lambda events: "", create=True)
        return book

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    @property
    def head_path(self) -> Path:
        return self.path.with_name(self.path.name + ".head")

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    # -- reading -------------------------------------------------------------------------------
    def verify(self) -> int:
        """Check the whole ledger; return its number of events."""
        return len(self._load())

    def events(self, dataset: str | None = None) -> list[LedgerEvent]:
        """All events in order, or those of one dataset."""
        events = self._load()
        return events if dataset is None else [e for e in events if e.dataset == dataset]

    def datasets(self) -> list[str]:
        """Fingerprints of every dataset the ledger names, in order of first appearance."""
        return list(dict.fromkeys(e.dataset for e in self._load() if e.type != "init"))

    def cap(self, dataset: str) -> float | None:
        """The dataset's epsilon cap (the latest one set), or None when uncapped."""
        return _summary(self._load(), dataset).cap

    def spent(self, dataset: str) -> float:
        """Sum of the epsilons charged to the dataset (basic composition)."""
        return _summary(self._load(), dataset).spent_epsilon

    def summary(self, dataset: str) -> BudgetSummary:
        """Cap, spent epsilon and delta, and number of charges of one dataset."""
        return _summary(self._load(), dataset)

    def summaries(self) -> list[BudgetSummary]:
        """One :class:`BudgetSummary` per dataset named in the ledger."""
        events = self._load()
        names = dict.fromkeys(e.dataset for e in events if e.type != "init")
        return [_summary(events, d) for d in names]

    def check(self, dataset: str, epsilon: float) -> None:
        """Raise :class:`~medsynth.errors.BudgetError` if ``epsilon`` more would pass the cap."""
        _check_budget(self._load(), _check_dataset(dataset), _check_epsilon(epsilon, "epsilon"))

    # -- writing -------------------------------------------------------------------------------
    def set_cap(self, dataset: str, epsilon: float, *, label: str = "") -> LedgerEvent:
        """Set (or change) the dataset's total epsilon cap; the latest cap is the one in force."""
        payload = {"epsilon": _check_epsilon(epsilon, "cap epsilon"), "label": str(label)}
        dataset = _check_dataset(dataset)
        return self._append("cap", payload, lambda events: dataset)

    def charge(
        self,
        dataset: str,
        record: PrivacyRecord,
        *,
        label: str = "",
        patients: Iterable[str] | None = None,
    ) -> LedgerEvent:
        """Charge a release to the dataset before it is run, refusing it if over the cap.

        The budget check and the append happen under one file lock, so two concurrent runs
        cannot both fit into the same remaining budget.

        Args:
            patients: the source ids of the cohort's patients. When given, they are turned into
                identity keys (:func:`medsynth.privacy.identity.identity_keys`; no raw id is
                written), a cohort that is mostly another dataset's patients is refused unless
                charged to that dataset, and patients new to this dataset are registered to it
                (a ``dataset`` event).

        Raises:
            BudgetError: the charge would take the spent epsilon above the cap, or the patients
                belong to another dataset (nothing written).
        """
        if not isinstance(record, PrivacyRecord):
            raise MedsynthError(f"charge needs a PrivacyRecord, got {type(record).__name__}")
        dataset = _check_dataset(dataset)
        payload = {**record.to_dict(), "label": str(label)}
        ids = list(patients) if patients is not None else None

        def prepare(events: list[LedgerEvent]) -> list[tuple[str, str, dict[str, Any]]]:
            out: list[tuple[str, str, dict[str, Any]]] = []
            if ids is not None:
                keys = identity_keys(ids)
                registered = _registered(events)
                _check_identity(keys, dataset, registered)
                new = sorted(set(keys) - registered.get(dataset, set()))
                if new:
                    out.append(("dataset", dataset, {"keys": new, "patients": len(keys)}))
            _check_budget(events, dataset, record.epsilon)
            return [*out, ("charge", dataset, payload)]

        return self._append_events(prepare)[-1]

    def identities(self) -> dict[str, set[str]]:
        """The identity keys registered to each dataset (union of its ``dataset`` events)."""
        return _registered(self._load())

    def attach_artifact(self, charge_id: str, model_sha256: str) -> LedgerEvent:
        """Record the hash of the model a charge produced (once per charge).

        ``model_sha256`` is :func:`medsynth.models.artifact.model_sha256` of the artifact, the
        same hash its ``privacy.json``, its FHIR exports and its audit reports name.
        """
        if not isinstance(model_sha256, str) or not _HEX64.fullmatch(model_sha256):
            raise MedsynthError(
                f"model hash {model_sha256!r} is not 64 lowercase hex digits (a SHA-256)"
            )

        def prepare(events: list[LedgerEvent]) -> str:
            charges = {e.id: e for e in events if e.type == "charge"}
            if charge_id not in charges:
                raise MedsynthError(
                    f"no charge with id {charge_id!r} in {self.path}; attach "
                    "the artifact to the id that charge() returned"
                )
            if any(e.type == "artifact" and e.payload["charge_id"] == charge_id for e in events):
                raise MedsynthError(f"charge {charge_id!r} already has an artifact attached")
            return charges[charge_id].dataset

        payload = {"charge_id": charge_id, "model_sha256": model_sha256}
        return self._append("artifact", payload, prepare)

    # -- file handling -------------------------------------------------------------------------
    def _load(self) -> list[LedgerEvent]:
        if not self.path.exists():
            self._check_missing()
        with self._locked():
            return self._read()[0]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = FileLock(str(self.lock_path), timeout=self.lock_timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise MedsynthError(
                f"{self.path} is locked by another medsynth run (lock file {self.lock_path}) for "
                f"more than {self.lock_timeout_s:g} s; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _check_missing(self) -> None:
        if self.head_path.exists():
            raise LedgerIntegrityError(
                f"{self.path} is missing but {self.head_path} records events: the ledger was "
                f"deleted or moved; {_REPAIR}"
            )
        raise LedgerMissingError(
            f"no privacy ledger at {self.path}: a ledger is never started implicitly (a mistyped "
            f"path must not open a fresh budget). Give the path of the existing ledger, or start "
            f"one with 'medsynth budget init --ledger {self.path}'"
        )

    def _read(self) -> tuple[list[LedgerEvent], str, int]:
        """Parse and verify the file: (events, hash of the last line, number of lines)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            self._check_missing()
            raise  # pragma: no cover - _check_missing always raises
        except OSError as exc:
            raise MedsynthError(f"cannot read the ledger {self.path}: {exc}") from None
        events, lines = _parse(data, self.path)
        check_head(
            self.head_path,
            lines,
            self.path,
            ledger_id=_ledger_id(events),
            sealed_lines=any(e.format is not None for e in events),
            lagging_ok=bool(events) and events[-1].mac is not None,
        )
        return events, (_sha(lines[-1]) if lines else GENESIS), len(lines)

    def _append(
        self,
        type_: str,
        payload: dict[str, Any],
        prepare: Callable[[list[LedgerEvent]], str],
        *,
        create: bool = False,
    ) -> LedgerEvent:
        """Under the lock: read and verify, let ``prepare`` check and name the dataset, append."""

        def one(events: list[LedgerEvent]) -> list[tuple[str, str, dict[str, Any]]]:
            return [(type_, prepare(events), payload)]

        return self._append_events(one, create=create)[-1]

    def _append_events(
        self,
        prepare: Callable[[list[LedgerEvent]], list[tuple[str, str, dict[str, Any]]]],
        *,
        create: bool = False,
    ) -> list[LedgerEvent]:
        """Under one lock: read and verify, let ``prepare`` check and list the (type, dataset,
        payload) of the events to add, and append them in order, each line followed by its head
        (so a stop between any two writes leaves the head at most one sealed line behind)."""
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            self._check_missing()
        with self._locked():
            events, prev, count = ([], GENESIS, 0) if create else self._read()
            added: list[LedgerEvent] = []
            key = installation_key()
            for type_, dataset, payload in prepare(events):
                body = {
                    "format": EVENT_FORMAT,
                    "id": uuid.uuid4().hex,
                    "type": type_,
                    "dataset": dataset,
                    "time": _now(),
                    "payload": payload,
                    "prev_hash": prev,
                }
                body["hash"] = _sha(canonical_json(body))
                body["mac"] = mac(key, body["hash"].encode("ascii"))
                line = canonical_json(body)
                _append_line(self.path, line, created=count == 0)
                count, prev = count + 1, _sha(line)
                added.append(LedgerEvent(**body))
                ledger_id = _ledger_id(events or added)
                write_head(self.head_path, ledger_id=ledger_id, count=count, last_hash=prev)
        return added


# -- pure helpers ------------------------------------------------------------------------------
def _registered(events: list[LedgerEvent]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for e in events:
        if e.type == "dataset":
            out.setdefault(e.dataset, set()).update(e.payload["keys"])
    return out


def _check_identity(keys: list[str], dataset: str, registered: dict[str, set[str]]) -> None:
    """Refuse a cohort that is mostly the patients of a dataset registered under another name."""
    others = {name: k for name, k in registered.items() if name != dataset}
    for overlap in recognise(keys, others):
        if overlap.same:
            raise BudgetError(
                f"privacy budget refused for dataset {dataset}: {overlap.shared} of its "
                f"{overlap.cohort_patients} patients are patients of dataset {overlap.dataset} "
                f"({overlap.dataset_patients} patients registered), which has its own budget; "
                f"the same patients under another name, file or format are the same dataset. "
                f"Nothing was run. Charge this run to it (--dataset {overlap.dataset})"
            )


def _ledger_id(events: list[LedgerEvent]) -> str:
    """The id the ledger's ``init`` line names ("" for a ledger written by medsynth 0.1)."""
    if events and events[0].type == "init":
        return str(events[0].payload["ledger_id"])
    return ""


def _default_cap(events: list[LedgerEvent]) -> float:
    if events and events[0].type == "init":
        return float(events[0].payload["default_cap"])
    return DEFAULT_CAP


def _summary(events: list[LedgerEvent], dataset: str) -> BudgetSummary:
    cap: float | None = None
    spent, spent_delta, charges = 0.0, 0.0, 0
    for e in events:
        if e.dataset != dataset:
            continue
        if e.type == "cap":
            cap = float(e.payload["epsilon"])
        elif e.type == "charge":
            spent += float(e.payload["epsilon"])
            spent_delta += float(e.payload["delta"])
            charges += 1
    if cap is None:
        return BudgetSummary(dataset, _default_cap(events), spent, spent_delta, charges, True)
    return BudgetSummary(dataset, cap, spent, spent_delta, charges)


def _check_budget(events: list[LedgerEvent], dataset: str, epsilon: float) -> None:
    s = _summary(events, dataset)
    if s.cap is None or s.spent_epsilon + epsilon <= s.cap * (1 + 1e-12):
        return
    left = s.remaining or 0.0
    which = "the ledger's default cap" if s.cap_is_default else "its cap"
    raise BudgetError(
        f"privacy budget refused for dataset {dataset}: requested epsilon {epsilon:.6g}, "
        f"already spent {s.spent_epsilon:.6g} of {which} {s.cap:.6g} ({left:.6g} left); "
        f"nothing was run. Ask for epsilon <= {left:.6g}, or, if the data owner agrees, raise "
        f"the cap with `medsynth budget cap {dataset} --epsilon E`"
    )


def _parse(data: bytes, path: Path) -> tuple[list[LedgerEvent], list[bytes]]:
    if not data:
        return [], []
    if not data.endswith(b"\n"):
        raise LedgerIntegrityError(
            f"{path}: the last line is incomplete (no line end after byte {len(data)}): the "
            f"ledger was truncated or a write was cut off; {_REPAIR}"
        )
    lines = data[:-1].split(b"\n")
    events: list[LedgerEvent] = []
    charges: set[str] = set()
    prev = GENESIS
    for number, line in enumerate(lines, start=1):
        event = _parse_line(line, f"{path}, line {number}")
        if event.format is None and events and events[-1].format is not None:
            raise LedgerIntegrityError(
                f"{path}, line {number}: an unsealed 0.1-style line after sealed ones; {_REPAIR}"
            )
        if event.prev_hash != prev:
            raise LedgerIntegrityError(
                f"{path}, line {number}: prev_hash does not match the line before it: a line "
                f"was deleted, inserted or reordered; {_REPAIR}"
            )
        if event.type == "init" and number != 1:
            raise LedgerIntegrityError(
                f"{path}, line {number}: an init event can only be the first line; {_REPAIR}"
            )
        if event.type == "artifact" and event.payload.get("charge_id") not in charges:
            raise LedgerIntegrityError(
                f"{path}, line {number}: artifact event names no earlier charge; {_REPAIR}"
            )
        if event.type == "charge":
            charges.add(event.id)
        events.append(event)
        prev = _sha(line)
    return events, lines


def _jcs_int(text: str) -> int | float:
    """An RFC 8785 integer literal: an int when exact, else the double it denotes."""
    value = int(text)
    return value if abs(value) <= 2**53 - 1 else float(value)


def _parse_line(line: bytes, where: str) -> LedgerEvent:
    def bad(why: str) -> LedgerIntegrityError:
        return LedgerIntegrityError(f"{where}: {why}; {_REPAIR}")

    try:
        obj = json.loads(line.decode("utf-8"))
    except ValueError:
        raise bad("not a JSON object (edited or torn)") from None
    if not isinstance(obj, dict) or set(obj) not in (_FIELDS, _FIELDS_V1):
        raise bad(f"expected exactly the fields {sorted(_FIELDS)}")
    if "format" in obj and obj["format"] != EVENT_FORMAT:
        raise bad(f"format {obj['format']!r} is not {EVENT_FORMAT!r}")
    form = JCS if "format" in obj else LEGACY
    if form == JCS:  # RFC 8785 numbers are doubles: read them so before re-encoding
        obj = json.loads(line.decode("utf-8"), parse_int=_jcs_int)
    try:
        canonical = canonical_json(obj, form=form)
    except NotCanonicalError as exc:
        raise bad(f"holds a value JSON cannot carry ({exc})") from None
    if canonical != line:
        raise bad("not in canonical form (edited)")
    body = {k: v for k, v in obj.items() if k not in ("hash", "mac")}
    if _sha(canonical_json(body, form=form)) != obj["hash"]:
        raise bad("content does not match its hash (edited)")
    if form == JCS and not (
        isinstance(obj["mac"], str)
        and hmac.compare_digest(
            mac(installation_key(), str(obj["hash"]).encode("ascii")), obj["mac"]
        )
    ):
        raise bad("its seal does not verify under this installation's key (forged or foreign)")
    if obj["type"] not in EVENT_TYPES or not isinstance(obj["payload"], dict):
        raise bad(f"unknown event type {obj['type']!r} or payload not an object")
    if not all(isinstance(obj[k], str) for k in ("id", "dataset", "time", "prev_hash")):
        raise bad("id, dataset, time and prev_hash must be strings")
    _check_payload(obj["type"], obj["payload"], bad)
    return LedgerEvent(**obj)


def _check_payload(type_: str, payload: dict[str, Any], bad) -> None:
    def number(key: str, high: float) -> bool:
        v = payload.get(key)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < high

    if type_ == "dataset" and not (
        isinstance(payload.get("keys"), list) and all(isinstance(k, str) for k in payload["keys"])
    ):
        raise bad("dataset event without a list of identity keys")
    if type_ == "init" and not (
        isinstance(payload.get("ledger_id"), str) and number("default_cap", float("inf"))
    ):
        raise bad("init event without ledger_id and a positive default_cap")
    if type_ in ("cap", "charge") and not number("epsilon", float("inf")):
        raise bad(f"{type_} event without a positive epsilon")
    if type_ == "charge" and not number("delta", 1.0):
        raise bad("charge event without a delta in (0, 1)")
    if type_ == "artifact" and not (
        isinstance(payload.get("charge_id"), str)
        and isinstance(payload.get("model_sha256", payload.get("artifact_sha256")), str)
    ):
        raise bad("artifact event without charge_id and model_sha256")


def _append_line(path: Path, line: bytes, *, created: bool) -> None:
    data = line + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if os.write(fd, data) != len(data):
            raise MedsynthError(
                f"{path}: short write (disk full?); the last line is torn and "
                "the ledger will be refused until restored"
            )
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
