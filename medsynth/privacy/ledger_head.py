"""A ledger's head file: how many lines it holds and the last one's hash, sealed with the key.

``<ledger>.head`` is canonical JSON ``{"format", "ledger_id", "events", "last_hash", "mac"}``
where ``mac`` is the HMAC-SHA256 (:mod:`medsynth.privacy.installation`) of the other fields. It
is rewritten after every append. Reading a ledger checks it, and fails closed:

* a non-empty ledger without its head, or a head without its ledger, is refused;
* a head naming fewer or other lines than the file holds (lines cut, an old copy restored), or
  whose MAC does not verify (rewritten by someone without the key), is refused; the one
  exception is a head one line behind a last line that carries a valid seal of its own: a run
  stopped between appending that line and rewriting the head;
* a ledger written by medsynth 0.1 has a head without ``format`` or ``mac``; it is accepted
  only while every line is a 0.1 line, and the first append seals it.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from medsynth.core.canonical import canonical_json
from medsynth.core.hashing import sha256_hex
from medsynth.errors import LedgerIntegrityError
from medsynth.privacy.installation import installation_key, mac

__all__ = ["HEAD_FORMAT", "check_head", "write_head"]

HEAD_FORMAT = "medsynth.ledger-head/2"
REPAIR = (
    "medsynth never repairs a ledger: restore it (with its .head file) from a copy you trust, "
    "or start a new ledger with 'medsynth budget init' and carry the spent budget over by hand"
)


def _body(ledger_id: str, count: int, last_hash: str) -> dict[str, object]:
    return {"format": HEAD_FORMAT, "ledger_id": ledger_id, "events": count, "last_hash": last_hash}


def write_head(head_path: Path, *, ledger_id: str, count: int, last_hash: str) -> None:
    """Seal and write the head (atomically)."""
    from medsynth._io import atomic_write_bytes

    body = _body(ledger_id, count, last_hash)
    sealed = {**body, "mac": mac(installation_key(), canonical_json(body))}
    atomic_write_bytes(head_path, canonical_json(sealed))


def check_head(
    head_path: Path,
    lines: list[bytes],
    path: Path,
    *,
    ledger_id: str,
    sealed_lines: bool,
    lagging_ok: bool = False,
) -> None:
    """Raise :class:`LedgerIntegrityError` unless the head vouches for exactly ``lines``.

    Args:
        ledger_id: the id the ledger's ``init`` line names ("" for a 0.1 ledger).
        sealed_lines: whether any line was written by medsynth >= 0.2 (then a 0.1-style head is
            a downgrade and is refused).
        lagging_ok: the last line carries its own seal (a MAC under the key), so a head that
            records every line but that one is a run stopped between its two writes, not an
            attack: a line appended by someone without the key fails its own seal.
    """
    try:
        raw = head_path.read_bytes()
    except FileNotFoundError:
        if not lines:
            return
        raise LedgerIntegrityError(
            f"{path} holds {len(lines)} lines but its head file {head_path.name} is missing: "
            f"the head was deleted, possibly with the last lines; {REPAIR}"
        ) from None
    try:
        head = json.loads(raw)
        count, last = int(head["events"]), str(head["last_hash"])
    except (ValueError, KeyError, TypeError):
        raise LedgerIntegrityError(f"{head_path}: unreadable ledger head file; {REPAIR}") from None
    if "mac" in head or "format" in head:
        _check_seal(head, head_path, ledger_id)
    elif sealed_lines:
        raise LedgerIntegrityError(
            f"{head_path} is an unsealed head but {path} holds lines written with a sealed one: "
            f"the head was rewritten; {REPAIR}"
        )
    if count == len(lines) - 1 >= 1 and sha256_hex(lines[count - 1]) == last and lagging_ok:
        return  # a run stopped between appending its (sealed) line and rewriting the head
    if count != len(lines) or count < 1 or sha256_hex(lines[count - 1]) != last:
        raise LedgerIntegrityError(
            f"{path} holds {len(lines)} lines but its head file {head_path.name} records "
            f"{count} ending in hash {last[:16]}: lines were cut or added, or the ledger was "
            f"restored from an old copy; {REPAIR}"
        )


def _check_seal(head: dict, head_path: Path, ledger_id: str) -> None:
    try:
        body = _body(str(head["ledger_id"]), int(head["events"]), str(head["last_hash"]))
        stated = str(head["mac"])
    except (KeyError, TypeError, ValueError):
        raise LedgerIntegrityError(f"{head_path}: unreadable ledger head file; {REPAIR}") from None
    if head.get("format") != HEAD_FORMAT or set(head) != {*body, "mac"}:
        raise LedgerIntegrityError(f"{head_path}: not a {HEAD_FORMAT} head; {REPAIR}")
    if not hmac.compare_digest(mac(installation_key(), canonical_json(body)), stated):
        raise LedgerIntegrityError(
            f"{head_path}: its seal does not verify under this installation's key: the head was "
            f"rewritten by someone without the key (or belongs to another installation); {REPAIR}"
        )
    if body["ledger_id"] != ledger_id:
        raise LedgerIntegrityError(
            f"{head_path} belongs to ledger {body['ledger_id']!r}, not to this file's "
            f"{ledger_id!r}: heads were swapped; {REPAIR}"
        )
