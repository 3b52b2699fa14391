"""The ledger fails closed against someone who can edit files but does not hold the
installation's key: every one of these 13 kinds of damage is refused, never read as a smaller
or empty history, and nothing is appended to a damaged ledger."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from medsynth.core.canonical import canonical_json
from medsynth.errors import LedgerIntegrityError
from medsynth.privacy.installation import mac
from medsynth.privacy.ledger import Ledger
from tests.helpers import privacy_record

DATA = "a" * 64


def lines(book: Ledger) -> list[bytes]:
    return book.path.read_bytes().splitlines()


def write_lines(book: Ledger, rows: list[bytes]) -> None:
    book.path.write_bytes(b"".join(r + b"\n" for r in rows))


def rehash(rows: list[bytes], start: int) -> list[bytes]:
    """Re-hash the chain from line ``start`` on, as an attacker without the key can (each
    line's own seal, a MAC of its hash, cannot be recomputed and stays as it was)."""
    out = list(rows[:start])
    prev = hashlib.sha256(out[-1]).hexdigest() if out else "0" * 64
    for row in rows[start:]:
        obj = json.loads(row)
        obj["prev_hash"] = prev
        body = {k: v for k, v in obj.items() if k not in ("hash", "mac")}
        obj["hash"] = hashlib.sha256(canonical_json(body)).hexdigest()  # the old mac is kept
        row = canonical_json(obj)
        out.append(row)
        prev = hashlib.sha256(row).hexdigest()
    return out


def forge_head(book: Ledger, rows: list[bytes], *, key: bytes | None) -> None:
    """A head that matches ``rows``: unsealed (key None) or sealed with a guessed key."""
    head = json.loads(book.head_path.read_bytes())
    head["events"], head["last_hash"] = len(rows), hashlib.sha256(rows[-1]).hexdigest()
    if key is None:
        head = {"events": head["events"], "last_hash": head["last_hash"]}
    else:
        body = {k: v for k, v in head.items() if k != "mac"}
        head["mac"] = mac(key, canonical_json(body))
    book.head_path.write_bytes(canonical_json(head))


def edit_last_charge(book: Ledger, *, key: bytes | None) -> None:
    rows = lines(book)
    obj = json.loads(rows[-1])
    obj["payload"]["epsilon"] = 0.01
    rows[-1] = canonical_json(obj)
    rows = rehash(rows, len(rows) - 1)
    write_lines(book, rows)
    forge_head(book, rows, key=key)


def flip_byte(book: Ledger) -> None:
    data = bytearray(book.path.read_bytes())
    i = data.index(b'"label"')
    data[i + 2] ^= 0x01
    book.path.write_bytes(bytes(data))


def edit_epsilon(book: Ledger) -> None:
    rows = lines(book)
    rows[2] = rows[2].replace(b'"epsilon":2,', b'"epsilon":1,')
    write_lines(book, rows)


def drop(indices: list[int]) -> Callable[[Ledger], None]:
    def damage(book: Ledger) -> None:
        write_lines(book, [r for i, r in enumerate(lines(book)) if i not in indices])

    return damage


def swap(book: Ledger) -> None:
    rows = lines(book)
    rows[2], rows[3] = rows[3], rows[2]
    write_lines(book, rows)


def drop_last_two_and_head(book: Ledger) -> None:
    drop([len(lines(book)) - 1, len(lines(book)) - 2])(book)
    book.head_path.unlink()


def cut_mid_line(book: Ledger) -> None:
    data = book.path.read_bytes()
    book.path.write_bytes(data[: len(data) - 40])


def add_whitespace(book: Ledger) -> None:
    book.path.write_bytes(book.path.read_bytes().replace(b'"type":"charge"', b'"type": "charge"'))


def duplicate(book: Ledger) -> None:
    rows = lines(book)
    write_lines(book, [*rows[:3], rows[2], *rows[3:]])


# The 13 kinds of damage, the re-hashed edit tried with an unsealed and a guessed-key head.
CASES: dict[str, tuple[Callable[[Ledger], None], str]] = {
    "a flipped byte": (flip_byte, "not a JSON object|does not match its hash"),
    "an epsilon edited in a line": (edit_epsilon, "does not match its hash"),
    "last charge edited, re-hashed, head rewritten unsealed": (
        lambda b: edit_last_charge(b, key=None),
        "seal does not verify",
    ),
    "last charge edited, re-hashed, head sealed with a guessed key": (
        lambda b: edit_last_charge(b, key=b"\x00" * 32),
        "seal does not verify",
    ),
    "a middle line deleted": (drop([2]), "prev_hash"),
    "two lines swapped": (swap, "prev_hash"),
    "the last line deleted": (lambda b: drop([len(lines(b)) - 1])(b), "head file"),
    "the last two lines and the head deleted": (drop_last_two_and_head, "head file .* missing"),
    "the ledger deleted, head kept": (lambda b: b.path.unlink(), "deleted or moved"),
    "ledger and head deleted": (
        lambda b: (b.path.unlink(), b.head_path.unlink()),
        "no privacy ledger at",
    ),
    "a line cut mid-way": (cut_mid_line, "incomplete"),
    "whitespace changed": (add_whitespace, "canonical"),
    "a line duplicated": (duplicate, "prev_hash"),
    "the head alone deleted": (lambda b: b.head_path.unlink(), "head file .* missing"),
}


@pytest.fixture()
def book(tmp_path: Path) -> Ledger:
    book = Ledger.create(tmp_path / "ledger.jsonl")
    book.set_cap(DATA, 10.0, label="board")
    for eps in (2.0, 1.5, 3.0):
        book.charge(DATA, privacy_record(eps))
    return book


@pytest.mark.parametrize("case", sorted(CASES))
def test_damage_is_refused(book, case):
    damage, match = CASES[case]
    assert book.spent(DATA) == 6.5
    damage(book)
    for read in (book.verify, book.events, lambda: book.spent(DATA)):
        with pytest.raises(LedgerIntegrityError, match=match) as info:
            read()
        assert info.value.exit_code == 3
    before = book.path.read_bytes() if book.path.exists() else None
    with pytest.raises(LedgerIntegrityError):
        book.charge(DATA, privacy_record(0.1))
    after = book.path.read_bytes() if book.path.exists() else None
    assert after == before  # nothing appended to a damaged ledger


def test_the_head_is_sealed_with_the_installation_key(book, monkeypatch, tmp_path):
    head = json.loads(book.head_path.read_bytes())
    assert set(head) == {"format", "ledger_id", "events", "last_hash", "mac"}
    assert head["events"] == 5 and book.verify() == 5
    monkeypatch.setenv("MEDSYNTH_HOME", str(tmp_path / "another-installation"))
    with pytest.raises(LedgerIntegrityError, match="no installation key"):
        book.verify()


def test_a_head_of_another_ledger_is_refused(book, tmp_path):
    other = Ledger.create(tmp_path / "other.jsonl")
    for eps in (1.0, 1.0, 1.0, 1.0):
        other.set_cap(DATA, eps)
    assert other.verify() == book.verify()
    rows = lines(book)
    write_lines(other, rows)  # another ledger's lines under this ledger's sealed head
    with pytest.raises(LedgerIntegrityError, match="heads were swapped|records"):
        other.verify()


def test_a_run_stopped_between_its_line_and_its_head_is_read_whole(book):
    head = book.head_path.read_bytes()
    book.charge(DATA, privacy_record(0.5))
    book.head_path.write_bytes(head)  # the head as it was before the last append
    assert book.verify() == 6 and book.spent(DATA) == 7.0
    book.charge(DATA, privacy_record(0.25))  # the next append seals the head again
    assert json.loads(book.head_path.read_bytes())["events"] == 7


def test_a_line_appended_without_the_key_is_refused(book):
    rows = lines(book)
    forged = json.loads(rows[1])  # the cap line, raised to a generous cap
    forged["payload"]["epsilon"] = 1000.0
    rows = rehash([*rows, canonical_json(forged)], len(rows))
    write_lines(book, rows)
    with pytest.raises(LedgerIntegrityError, match="seal does not verify"):
        book.spent(DATA)
