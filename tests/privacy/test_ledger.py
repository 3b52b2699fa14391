"""The budget ledger: caps, charges, hash chain, tamper and truncation detection, concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import pytest

from medsynth.core.canonical import canonical_json
from medsynth.errors import BudgetError, LedgerIntegrityError, LedgerMissingError, MedsynthError
from medsynth.privacy.ledger import DEFAULT_CAP, GENESIS, Ledger, default_ledger_path
from tests.helpers import privacy_record

DATA = "a" * 64
OTHER = "b" * 64


@pytest.fixture()
def book(tmp_path: Path) -> Ledger:
    return Ledger.create(tmp_path / "deep" / "er" / "ledger.jsonl")


def test_a_ledger_is_only_created_on_request(tmp_path):
    path = tmp_path / "deep" / "er" / "ledger.jsonl"
    for read in (Ledger(path).verify, Ledger(path).events, lambda: Ledger(path).spent(DATA)):
        with pytest.raises(LedgerMissingError, match="budget init") as info:
            read()
        assert info.value.exit_code == 3
    with pytest.raises(LedgerMissingError):
        Ledger(path).set_cap(DATA, 3.0)  # a mistyped path never opens a fresh budget
    assert not path.parent.exists()  # refusing wrote nothing
    book = Ledger.create(path)
    assert book.path.is_file() and book.verify() == 1
    assert [e.type for e in book.events()] == ["init"]
    assert (book.path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(MedsynthError, match="never started over"):
        Ledger.create(path)


def test_cap_charge_spent_and_summary(book):
    assert book.cap(DATA) == DEFAULT_CAP and book.summary(DATA).cap_is_default
    book.set_cap(DATA, 3.0, label="ethics board 2026-04")
    book.charge(DATA, privacy_record(1.0, 1e-5), label="run 1")
    book.charge(DATA, privacy_record(0.5, 1e-6))
    book.charge(OTHER, privacy_record(7.0))
    s = book.summary(DATA)
    assert (s.cap, s.spent_epsilon, s.charges, s.remaining) == (3.0, 1.5, 2, 1.5)
    assert s.spent_delta == pytest.approx(1.1e-5, rel=1e-12)
    assert book.spent(OTHER) == 7.0 and book.cap(OTHER) == DEFAULT_CAP  # the default cap
    assert book.datasets() == [DATA, OTHER]
    assert [e.type for e in book.events(DATA)] == ["cap", "charge", "charge"]
    assert book.events(DATA)[1].payload["label"] == "run 1"
    assert book.events(DATA)[1].payload["noise_multiplier"] == 2.0


def test_over_cap_refused_with_requested_spent_and_cap(book):
    book.set_cap(DATA, 2.0)
    book.charge(DATA, privacy_record(1.5))
    before = book.path.read_bytes()
    with pytest.raises(BudgetError) as info:
        book.charge(DATA, privacy_record(0.75))
    message = str(info.value)
    assert "requested epsilon 0.75" in message
    assert "spent 1.5" in message and "cap 2" in message and "0.5 left" in message
    assert info.value.exit_code == 3
    assert book.path.read_bytes() == before  # nothing written
    with pytest.raises(BudgetError):
        book.check(DATA, 0.75)
    book.check(DATA, 0.5)
    book.charge(DATA, privacy_record(0.5))  # exactly up to the cap is allowed
    assert book.spent(DATA) == 2.0


def test_floating_sums_up_to_the_cap_are_allowed(book):
    book.set_cap(DATA, 0.3)
    book.charge(DATA, privacy_record(0.1))
    book.charge(DATA, privacy_record(0.2))  # 0.1 + 0.2 = 0.30000000000000004
    with pytest.raises(BudgetError):
        book.charge(DATA, privacy_record(1e-3))


def test_latest_cap_is_in_force(book):
    book.set_cap(DATA, 1.0)
    book.charge(DATA, privacy_record(1.0))
    with pytest.raises(BudgetError):
        book.charge(DATA, privacy_record(0.5))
    book.set_cap(DATA, 2.0)
    book.charge(DATA, privacy_record(0.5))
    assert book.summary(DATA).remaining == 0.5


def test_bad_inputs_are_refused(book):
    with pytest.raises(MedsynthError, match="fingerprint"):
        book.charge("", privacy_record(1.0))
    before = book.path.read_bytes()
    with pytest.raises(MedsynthError, match="cap epsilon"):
        book.set_cap(DATA, 0)
    assert book.path.read_bytes() == before


def test_attach_artifact(book):
    charge = book.charge(DATA, privacy_record(1.0))
    event = book.attach_artifact(charge.id, "c" * 64)
    assert (event.type, event.dataset) == ("artifact", DATA)
    assert event.payload == {"charge_id": charge.id, "model_sha256": "c" * 64}
    with pytest.raises(MedsynthError, match="already has an artifact"):
        book.attach_artifact(charge.id, "d" * 64)
    with pytest.raises(MedsynthError, match="no charge with id"):
        book.attach_artifact("nope", "d" * 64)
    with pytest.raises(MedsynthError, match="SHA-256"):
        book.attach_artifact(charge.id, "xyz")
    assert book.spent(DATA) == 1.0


def test_lines_are_canonical_and_hash_chained(book):
    book.set_cap(DATA, 5.0)
    book.charge(DATA, privacy_record(1.0))
    lines = book.path.read_bytes().splitlines()
    prev = GENESIS
    for line in lines:
        obj = json.loads(line)
        assert canonical_json(obj) == line
        assert obj["prev_hash"] == prev
        body = {k: v for k, v in obj.items() if k not in ("hash", "mac")}
        assert obj["hash"] == hashlib.sha256(canonical_json(body)).hexdigest()
        assert len(obj["mac"]) == 64  # the line's seal: HMAC of its hash under the key
        assert obj["time"].endswith("+00:00")
        prev = hashlib.sha256(line).hexdigest()


def filled(book: Ledger) -> bytes:
    book.set_cap(DATA, 10.0)
    for eps in (1.0, 2.0, 1.5):
        book.charge(DATA, privacy_record(eps))
    return book.path.read_bytes()


def tamper_byte(data: bytes) -> bytes:
    i = data.index(b'"epsilon":2,')  # RFC 8785 writes 2.0 as 2
    return data[:i] + b'"epsilon":1,' + data[i + len(b'"epsilon":2,') :]


@pytest.mark.parametrize(
    ("name", "damage", "match"),
    [
        ("one byte", tamper_byte, "does not match its hash"),
        ("added space", lambda d: d.replace(b'"type":"cap"', b'"type": "cap"', 1), "canonical"),
        (
            "middle line deleted",
            lambda d: b"\n".join(d.split(b"\n")[:1] + d.split(b"\n")[2:]),
            "prev_hash",
        ),
        (
            "lines swapped",
            lambda d: b"\n".join([d.split(b"\n")[i] for i in (0, 1, 3, 2, 4, 5)]),
            "prev_hash",
        ),
        ("tail torn", lambda d: d[:-20], "incomplete"),
        ("last line cut cleanly", lambda d: b"\n".join(d.split(b"\n")[:-2]) + b"\n", "head file"),
        ("emptied", lambda d: b"", "head file"),
    ],
)
def test_damage_is_detected_never_repaired(book, name, damage, match):
    data = filled(book)
    damaged = damage(data)
    assert damaged != data
    book.path.write_bytes(damaged)
    for read in (book.verify, book.events, lambda: book.spent(DATA)):
        with pytest.raises(LedgerIntegrityError, match=match):
            read()
    with pytest.raises(LedgerIntegrityError) as info:
        book.charge(DATA, privacy_record(0.1))
    assert info.value.exit_code == 3
    assert book.path.read_bytes() == damaged  # neither repaired nor appended to


def test_deleted_ledger_is_detected_through_its_head_file(book):
    filled(book)
    book.path.unlink()
    with pytest.raises(LedgerIntegrityError, match="missing"):
        book.verify()


def test_ledger_without_its_head_file_is_refused(book):
    filled(book)
    book.head_path.unlink()
    with pytest.raises(LedgerIntegrityError, match="head file ledger.jsonl.head is missing"):
        book.verify()


def _charge_many(path: str, n: int, results) -> None:
    book = Ledger(Path(path))
    ok = 0
    for _ in range(n):
        try:
            book.charge(DATA, privacy_record(1.0))
            ok += 1
        except BudgetError:
            pass
    results.put(ok)


def test_concurrent_charges_lose_nothing_and_respect_the_cap(book):
    book.set_cap(DATA, 60.0)
    ctx = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    results = ctx.Queue()
    procs = [ctx.Process(target=_charge_many, args=(str(book.path), 25, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    accepted = sum(results.get(timeout=5) for _ in procs)
    assert accepted == 60
    assert book.verify() == 62  # init, cap, 60 charges
    assert book.spent(DATA) == 60.0
    assert len({e.id for e in book.events()}) == 62


def test_default_ledger_path(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSYNTH_LEDGER", str(tmp_path / "x.jsonl"))
    assert default_ledger_path() == tmp_path / "x.jsonl"
    monkeypatch.delenv("MEDSYNTH_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_ledger_path() == tmp_path / "data" / "medsynth" / "ledger.jsonl"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_ledger_path() == tmp_path / "home" / ".local/share/medsynth/ledger.jsonl"
    assert Ledger().path == default_ledger_path()
