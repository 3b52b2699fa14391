"""Keys, signed report envelopes, and verification that catches any changed byte."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsynth.core.canonical import canonical_json
from medsynth.core.hashing import sha256_hex
from medsynth.errors import DataError, VerificationError
from medsynth.report.signing import (
    PAYLOAD_TYPE,
    SIGNATURE_NAME,
    SignedFile,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    pae,
    sign_report,
    verify_report,
)

REPORT_FILES = {
    "report.json": canonical_json({"verdict": "PASS", "checks": [{"name": "auc", "v": 0.51}]}),
    "report.html": b"<!doctype html><h1>Audit verdict: PASS</h1>\n",
    "plots/roc.svg": b"<svg/>",
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("keys") / "k")


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("other"))


@pytest.fixture(scope="module")
def signed_master(tmp_path_factory, keys) -> Path:
    folder = tmp_path_factory.mktemp("master") / "report"
    for name, data in REPORT_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    sign_report(folder, keys[0])
    return folder


@pytest.fixture
def report(signed_master, tmp_path) -> Path:
    """A fresh copy of the signed sample report, free to tamper with."""
    return Path(shutil.copytree(signed_master, tmp_path / "report"))


def envelope(folder: Path) -> dict:
    return json.loads((folder / SIGNATURE_NAME).read_bytes())


def write_envelope(folder: Path, env: dict) -> None:
    (folder / SIGNATURE_NAME).write_bytes(canonical_json(env))


# -- keys -----------------------------------------------------------------------------------------
def test_keypair_files_modes_and_key_id(keys):
    private, public = keys
    assert (private.name, public.name) == ("medsynth-signing.key", "medsynth-signing.pub")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(private.parent).st_mode) & 0o077 == 0  # folder made 0700
    pub = load_public_key(public)
    assert load_private_key(private).public_key().public_bytes_raw() == pub.public_bytes_raw()
    assert key_id(pub) == sha256_hex(pub.public_bytes_raw())[:16]
    assert public.read_text().splitlines()[0].endswith(f"key id {key_id(pub)}")
    assert list(private.parent.iterdir()) != [] and not any(
        p.name.endswith(".tmp") for p in private.parent.iterdir()
    )


def test_keypair_is_never_overwritten(keys):
    private, public = keys
    before = private.read_bytes(), public.read_bytes()
    with pytest.raises(DataError, match="exists; keys are never overwritten"):
        generate_keypair(private.parent)
    assert (private.read_bytes(), public.read_bytes()) == before


def test_keypair_refuses_when_only_the_private_key_exists(tmp_path):
    (tmp_path / "medsynth-signing.key").write_bytes(b"old")
    with pytest.raises(DataError, match="medsynth-signing.key exists"):
        generate_keypair(tmp_path)
    assert (tmp_path / "medsynth-signing.key").read_bytes() == b"old"
    assert not (tmp_path / "medsynth-signing.pub").exists()


def test_key_files_are_not_interchangeable(keys):
    with pytest.raises(DataError, match="is a private key; verify with the public key"):
        load_public_key(keys[0])
    with pytest.raises(DataError, match=r"not an unencrypted PEM private key \(it is a public"):
        load_private_key(keys[1])


def test_pae_matches_the_dsse_definition():
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


# -- signing and a clean verification -------------------------------------------------------------
def test_intact_report_verifies_with_and_without_trusted_key(report, keys):
    kid = key_id(load_public_key(keys[1]))
    result = verify_report(report)
    assert (result.key_id, result.trusted_key) == (kid, False)
    assert result.files == tuple(
        SignedFile(name, sha256_hex(REPORT_FILES[name]), len(REPORT_FILES[name]))
        for name in sorted(REPORT_FILES)
    )
    assert verify_report(report, public_key_path=keys[1]).trusted_key is True


def test_envelope_shape_and_payload(report, keys):
    env = envelope(report)
    assert sorted(env) == ["payload", "payloadType", "signatures"]
    assert env["payloadType"] == PAYLOAD_TYPE == "application/vnd.medsynth.audit-report+json"
    statement = json.loads(base64.b64decode(env["payload"]))
    assert statement == {
        "format": "medsynth.signed-report/1",
        "files": [
            {"name": n, "sha256": sha256_hex(REPORT_FILES[n]), "size": len(REPORT_FILES[n])}
            for n in sorted(REPORT_FILES)
        ],
    }
    (sig,) = env["signatures"]
    public = load_public_key(keys[1])
    assert sig["keyid"] == key_id(public)
    assert base64.b64decode(sig["publicKey"]) == public.public_bytes_raw()
    public.verify(
        base64.b64decode(sig["sig"]), pae(PAYLOAD_TYPE, base64.b64decode(env["payload"]))
    )  # raises if wrong


def test_signing_is_deterministic_and_never_writes_the_private_key(report, keys):
    first = (report / SIGNATURE_NAME).read_bytes()
    sign_report(report, keys[0])
    assert (report / SIGNATURE_NAME).read_bytes() == first
    secret = load_private_key(keys[0]).private_bytes_raw()
    pem_body = b"".join(keys[0].read_bytes().splitlines()[1:-1])
    for path in report.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret not in data and pem_body not in data
            assert base64.b64encode(secret) not in data


def test_signing_refuses_a_private_key_inside_the_report(report, keys, tmp_path):
    inside = report / "medsynth-signing.key"
    shutil.copy(keys[0], inside)
    with pytest.raises(DataError, match="lies inside the report folder"):
        sign_report(report, inside)
    with pytest.raises(DataError, match="holds a private key"):
        sign_report(report, keys[0])


def test_a_private_key_deep_in_a_large_file_is_found(report, keys):
    inside = report / "appendix.html"
    pem = keys[0].read_bytes()
    start = pem.index(b"PRIVATE KEY-----")
    inside.write_bytes(b"x" * (3 * (1 << 20) - 5 - start) + pem)  # the marker straddles 3 MiB
    with pytest.raises(DataError, match="appendix.html holds a private key"):
        sign_report(report, keys[0])


def test_signing_needs_a_report_json(tmp_path, keys):
    (tmp_path / "report.html").write_text("x")
    with pytest.raises(DataError, match="has no report.json"):
        sign_report(tmp_path, keys[0])


# -- one changed byte anywhere fails --------------------------------------------------------------
def tamper_targets() -> list[str]:
    return [*sorted(REPORT_FILES), SIGNATURE_NAME]


@pytest.mark.parametrize("name", tamper_targets())
def test_every_single_byte_change_fails(report, name):
    """Exhaustive over positions: each byte XOR 0x01 and XOR 0x80, one at a time."""
    path = report / name
    original = path.read_bytes()
    for pos in range(len(original)):
        for mask in (0x01, 0x80):
            data = bytearray(original)
            data[pos] ^= mask
            path.write_bytes(bytes(data))
            with pytest.raises(VerificationError) as info:
                verify_report(report)
            assert name in str(info.value), (pos, mask, str(info.value))
    path.write_bytes(original)
    verify_report(report)  # restored: intact again


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_byte_edits_fail(report, data):
    """Any new value at any position, plus deletions and insertions, in any file."""
    name = data.draw(st.sampled_from(tamper_targets()), label="file")
    path = report / name
    original = path.read_bytes()
    edit = data.draw(st.sampled_from(["replace", "delete", "insert"]), label="edit")
    pos = data.draw(st.integers(0, len(original) - (0 if edit == "insert" else 1)), label="pos")
    byte = data.draw(st.integers(0, 255), label="byte")
    if edit == "replace":
        byte = byte if byte != original[pos] else (byte + 1) % 256
        changed = original[:pos] + bytes([byte]) + original[pos + 1 :]
    elif edit == "delete":
        changed = original[:pos] + original[pos + 1 :]
    else:
        changed = original[:pos] + bytes([byte]) + original[pos:]
    path.write_bytes(changed)
    try:
        with pytest.raises(VerificationError, match=name.replace(".", r"\.")):
            verify_report(report)
    finally:
        path.write_bytes(original)


def test_missing_extra_and_linked_files_are_named_together(report):
    (report / "report.html").unlink()
    (report / "notes.txt").write_text("added later")
    (report / "plots" / "link.svg").symlink_to(report / "plots" / "roc.svg")
    with pytest.raises(VerificationError) as info:
        verify_report(report)
    message = str(info.value)
    assert "3 file problem(s)" in message
    assert "report.html: missing (it was signed)" in message
    assert "notes.txt: extra file, not covered by the signature" in message
    assert "plots/link.svg: a symbolic link" in message


def test_unsigned_report_fails(report):
    (report / SIGNATURE_NAME).unlink()
    with pytest.raises(VerificationError, match="no report.sig.json: the report is not signed"):
        verify_report(report)


# -- another key ----------------------------------------------------------------------------------
def test_other_trusted_key_fails(report, keys, other_keys):
    with pytest.raises(VerificationError, match="not by the trusted key") as info:
        verify_report(report, public_key_path=other_keys[1])
    assert key_id(load_public_key(keys[1])) in str(info.value)


def test_resigned_forgery_is_caught_only_by_the_trusted_key(report, keys, other_keys):
    (report / "report.json").write_bytes(canonical_json({"verdict": "PASS", "forged": True}))
    sign_report(report, other_keys[0])
    assert verify_report(report).key_id == key_id(load_public_key(other_keys[1]))
    with pytest.raises(VerificationError, match="not by the trusted key"):
        verify_report(report, public_key_path=keys[1])


def test_swapped_embedded_key_still_fails_against_the_trusted_key(report, keys, other_keys):
    """A forger who embeds the trusted key id but signs with another key is caught."""
    env = envelope(report)
    forged = load_private_key(other_keys[0])
    payload = base64.b64decode(env["payload"])
    env["signatures"][0]["sig"] = base64.b64encode(forged.sign(pae(PAYLOAD_TYPE, payload))).decode()
    write_envelope(report, env)
    with pytest.raises(VerificationError, match="bad signature in report.sig.json"):
        verify_report(report, public_key_path=keys[1])


# -- malformed envelopes --------------------------------------------------------------------------
def _set(path: tuple, value):
    def change(env: dict) -> None:
        target = env
        for step in path[:-1]:
            target = target[step]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return change


MALFORMED = {
    "wrong type": (
        _set(("payloadType",), "application/json"),
        "payloadType 'application/json' is not",
    ),
    "bad base64": (_set(("payload",), "@@not base64@@"), "payload is not valid base64"),
    "payload not a string": (_set(("payload",), 12), "payload is int, not a base64 string"),
    "no payload": (_set(("payload",), KeyError), "missing field(s) payload"),
    "no signatures": (_set(("signatures",), KeyError), "missing field(s) signatures"),
    "extra field": (_set(("comment",), "hi"), "unknown field(s) comment"),
    "empty signatures": (_set(("signatures",), []), "exactly one signature, found 0"),
    "signatures object": (_set(("signatures",), {}), "exactly one signature, found dict"),
    "no sig": (_set(("signatures", 0, "sig"), KeyError), "signature: missing field(s) sig"),
    "no keyid": (_set(("signatures", 0, "keyid"), KeyError), "missing field(s) keyid"),
    "short key": (_set(("signatures", 0, "publicKey"), "AAAA"), "32 bytes and a signature 64"),
    "wrong keyid": (
        _set(("signatures", 0, "keyid"), "0000000000000000"),
        "keyid '0000000000000000' is not the id",
    ),
    "signature entry a list": (_set(("signatures", 0), []), "expected a JSON object"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_envelope_is_named(report, case):
    change, fragment = MALFORMED[case]
    env = envelope(report)
    change(env)
    write_envelope(report, env)
    with pytest.raises(VerificationError, match="report.sig.json") as info:
        verify_report(report)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[]", "expected a JSON object, found list"),
        (b'{"payload": NaN}', "not a JSON number"),
    ],
)
def test_envelope_that_is_not_an_envelope(report, raw, fragment):
    (report / SIGNATURE_NAME).write_bytes(raw)
    with pytest.raises(VerificationError, match=fragment):
        verify_report(report)


def test_pretty_printed_envelope_is_refused(report):
    (report / SIGNATURE_NAME).write_text(json.dumps(envelope(report), indent=2))
    with pytest.raises(VerificationError, match="not in canonical JSON form"):
        verify_report(report)


def test_non_canonical_base64_padding_bits_are_refused(report):
    env = envelope(report)
    key = env["signatures"][0]["publicKey"]  # 32 bytes: the last symbol carries 2 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(key[-2])
    twin = key[:-2] + alphabet[last ^ 1] + key[-1:]
    assert base64.b64decode(twin) == base64.b64decode(key)  # a lenient decoder sees no change
    env["signatures"][0]["publicKey"] = twin
    write_envelope(report, env)
    with pytest.raises(VerificationError, match="publicKey is not canonical base64"):
        verify_report(report)


def sign_statement(folder: Path, private: Path, statement) -> None:
    """Sign an arbitrary statement, as a forger holding a key could."""
    key = load_private_key(private)
    payload = canonical_json(statement)
    write_envelope(
        folder,
        {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [
                {
                    "keyid": key_id(key.public_key()),
                    "publicKey": base64.b64encode(key.public_key().public_bytes_raw()).decode(),
                    "sig": base64.b64encode(key.sign(pae(PAYLOAD_TYPE, payload))).decode(),
                }
            ],
        },
    )


def _entry(name: str, data: bytes = b"") -> dict:
    return {"name": name, "sha256": sha256_hex(data), "size": len(data)}


@pytest.mark.parametrize(
    ("statement", "fragment"),
    [
        ({"format": "other/1", "files": []}, "format 'other/1' is not"),
        ({"format": "medsynth.signed-report/1"}, "signed statement: missing field(s) files"),
        ({"format": "medsynth.signed-report/1", "files": [_entry("../etc/passwd")]}, "files[0] = "),
        ({"format": "medsynth.signed-report/1", "files": [_entry("/abs")]}, "files[0] = "),
        (
            {
                "format": "medsynth.signed-report/1",
                "files": [{"name": "report.json", "sha256": "ab", "size": 1}],
            },
            "files[0] = ",
        ),
        (
            {
                "format": "medsynth.signed-report/1",
                "files": [{"name": "report.json", "sha256": "0" * 64, "size": True}],
            },
            "files[0] = ",
        ),
        (
            {"format": "medsynth.signed-report/1", "files": [_entry("report.html")]},
            "must be sorted, unique and include report.json",
        ),
        (
            {
                "format": "medsynth.signed-report/1",
                "files": [_entry("report.json"), _entry("report.html")],
            },
            "must be sorted",
        ),
        ([], "signed statement: expected a JSON object"),
    ],
)
def test_malformed_signed_statement_is_named(report, keys, statement, fragment):
    sign_statement(report, keys[0], statement)
    with pytest.raises(VerificationError, match="malformed signed statement") as info:
        verify_report(report)
    assert fragment in str(info.value)


def test_not_a_folder(tmp_path):
    with pytest.raises(VerificationError, match="not a folder"):
        verify_report(tmp_path / "nothing")


# -- command line ---------------------------------------------------------------------------------
def test_cli_keys_generate(tmp_path):
    from medsynth.cli.keys import keys as keys_group

    runner = CliRunner()
    result = runner.invoke(keys_group, ["generate", "--out", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    kid = key_id(load_public_key(tmp_path / "k" / "medsynth-signing.pub"))
    assert f"(key id {kid})" in result.output and "mode 0600" in result.output
    again = runner.invoke(keys_group, ["generate", "--out", str(tmp_path / "k")])
    assert again.exit_code == 1 and "keys are never overwritten" in again.output


def test_cli_report_verify_exit_codes(report, keys, other_keys):
    from medsynth.cli.report_cmd import report as report_group

    runner = CliRunner()
    ok = runner.invoke(report_group, ["verify", str(report), "--key", str(keys[1])])
    assert ok.exit_code == 0, ok.output
    assert "verified: 3 files signed by trusted key" in ok.output
    untrusted = runner.invoke(report_group, ["verify", str(report)])
    assert untrusted.exit_code == 0 and "pass --key PUB to check who signed" in untrusted.output
    other = runner.invoke(report_group, ["verify", str(report), "--key", str(other_keys[1])])
    assert other.exit_code == 5 and "not by the trusted key" in other.output
    html = report / "report.html"
    html.write_bytes(html.read_bytes().replace(b"PASS", b"FAIL"))
    bad = runner.invoke(report_group, ["verify", str(report), "--key", str(keys[1])])
    assert bad.exit_code == 5 and "report.html: changed since signing" in bad.output
    resigned = runner.invoke(report_group, ["sign", str(report), "--key", str(keys[0])])
    assert resigned.exit_code == 0, resigned.output
    assert runner.invoke(report_group, ["verify", str(report)]).exit_code == 0
    missing = runner.invoke(report_group, ["verify", str(report / "nope")])
    assert missing.exit_code == 2
