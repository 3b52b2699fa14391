"""Ed25519 keys, signed report envelopes and their verification.

A report folder (``report.json``, ``report.html`` and anything else in it) is signed by writing
``report.sig.json`` beside its files: a DSSE envelope (https://github.com/secure-systems-lab/dsse)
whose payload, of type ``application/vnd.medsynth.audit-report+json``, is a canonical JSON
statement naming every other file of the folder with its SHA-256 and size. The Ed25519 signature
covers the DSSE pre-authentication encoding of payload type and payload, so no byte of any file,
of the statement or of its type can change unnoticed. The envelope embeds the signer's public key
so anyone can check integrity; only a check against a public key obtained independently
(``public_key_path``) shows who signed. Private keys are written once, with mode 0600, and are
never copied into a report: signing refuses a folder that holds one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from medsynth._io import atomic_write_bytes
from medsynth.core.canonical import canonical_form_of, canonical_json
from medsynth.core.hashing import digest_file, sha256_hex
from medsynth.errors import DataError, MedsynthError, VerificationError

__all__ = [
    "PAYLOAD_TYPE",
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "SIGNATURE_NAME",
    "SignedFile",
    "VerificationResult",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "pae",
    "sign_report",
    "verify_report",
]

PAYLOAD_TYPE = "application/vnd.medsynth.audit-report+json"
STATEMENT_FORMAT = "medsynth.signed-report/1"
SIGNATURE_NAME = "report.sig.json"
REQUIRED_FILE = "report.json"
PRIVATE_KEY_NAME = "medsynth-signing.key"
PUBLIC_KEY_NAME = "medsynth-signing.pub"
_PRIVATE_PEM_MARK = b"PRIVATE KEY-----"
_ENVELOPE_KEYS = {"payload", "payloadType", "signatures"}
_SIGNATURE_KEYS = {"keyid", "publicKey", "sig"}
_STATEMENT_KEYS = {"files", "format"}
_FILE_KEYS = {"name", "sha256", "size"}


@dataclass(frozen=True)
class SignedFile:
    """One file named by a signed statement."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class VerificationResult:
    """What an intact report's signature establishes.

    Attributes:
        report_dir: the folder verified.
        key_id: the signer's key id (first 16 hex digits of SHA-256 of the raw public key).
        trusted_key: True when checked against a public key given by the caller; False when
            only against the key embedded in the envelope (integrity, not origin).
        files: every signed file, sorted by name.
    """

    report_dir: Path
    key_id: str
    trusted_key: bool
    files: tuple[SignedFile, ...]


# -- keys -----------------------------------------------------------------------------------------
def key_id(public_key: Ed25519PublicKey) -> str:
    """Short key id: the first 16 hex digits of SHA-256 of the 32 raw public-key bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_hex(raw)[:16]


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``data`` and ``mode`` atomically; never replace an existing file.

    The bytes go to a temporary file opened with ``mode`` from its creation, then are linked
    to ``path``: linking fails if ``path`` exists, so a concurrent writer cannot be overwritten.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)  # the umask may only have narrowed it
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    except FileExistsError:
        raise DataError(
            f"{path} exists; keys are never overwritten: choose another --out "
            "folder or move the old key pair away first"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def generate_keypair(out_dir: str | Path) -> tuple[Path, Path]:
    """Create a new Ed25519 key pair in ``out_dir``.

    Writes ``medsynth-signing.key`` (PKCS#8 PEM, unencrypted, file mode 0600: keep it secret)
    and ``medsynth-signing.pub`` (a ``# key id`` comment line, then SubjectPublicKeyInfo PEM).

    Returns:
        ``(private_key_path, public_key_path)``.

    Raises:
        DataError: when either file exists already (keys are never overwritten).
    """
    folder = Path(out_dir)
    private_path, public_path = folder / PRIVATE_KEY_NAME, folder / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        if path.exists():
            raise DataError(
                f"{path} exists; keys are never overwritten: choose another --out "
                "folder or move the old key pair away first"
            )
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    _write_new(
        private_path,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = f"# medsynth Ed25519 report-signing public key, key id {key_id(public)}\n"
    _write_new(public_path, header.encode("ascii") + pem, 0o644)
    return private_path, public_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Read an unencrypted Ed25519 private key (PEM) written by :func:`generate_keypair`."""
    data = _read_key_file(path, "private")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        hint = " (it is a public key)" if b"PUBLIC KEY-----" in data else ""
        raise DataError(
            f"{path} is not an unencrypted PEM private key{hint}: {exc}; give the "
            f"{PRIVATE_KEY_NAME} file made by 'medsynth keys generate'"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DataError(
            f"{path} holds a {type(key).__name__}, not an Ed25519 key; make one "
            "with 'medsynth keys generate'"
        )
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key (PEM, comment lines before it allowed)."""
    data = _read_key_file(path, "public")
    if _PRIVATE_PEM_MARK in data:
        raise DataError(
            f"{path} is a private key; verify with the public key "
            f"({PUBLIC_KEY_NAME}) and keep the private key secret"
        )
    try:
        key = serialization.load_pem_public_key(data[data.find(b"-----BEGIN") :])
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"{path} is not a PEM public key: {exc}; give the {PUBLIC_KEY_NAME} "
            "file made by 'medsynth keys generate'"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise DataError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def _read_key_file(path: str | Path, kind: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the {kind} key {path}: {exc.strerror}") from None


# -- envelope -------------------------------------------------------------------------------------
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the exact bytes an envelope's signature covers."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _holds_private_key(path: Path, chunk: int = 1 << 20) -> bool:
    """Whether the PEM private-key marker occurs anywhere in the file (read whole, in chunks
    that overlap by the marker's length, so a marker across a boundary is found)."""
    keep = len(_PRIVATE_PEM_MARK) - 1
    tail = b""
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            if _PRIVATE_PEM_MARK in tail + block:
                return True
            tail = block[-keep:]
    return False


def _report_files(report_dir: Path) -> list[SignedFile]:
    """Every file of the folder except the signature, refusing links and private keys."""
    files = []
    for path in sorted(report_dir.rglob("*")):
        name = path.relative_to(report_dir).as_posix()
        if path.is_symlink():
            raise DataError(f"{path} is a symbolic link; a signed report holds plain files only")
        if not path.is_file() or name == SIGNATURE_NAME:
            continue
        if _holds_private_key(path):
            raise DataError(
                f"{path} holds a private key; a private key is never "
                "part of a report: move it out of the report folder"
            )
        digest, size = digest_file(path)
        files.append(SignedFile(name, digest, size))
    return files


def sign_report(report_dir: str | Path, private_key_path: str | Path) -> Path:
    """Sign every file of ``report_dir`` and write the envelope ``report.sig.json`` into it.

    An existing ``report.sig.json`` is replaced; signing the same files with the same key gives
    the same bytes (Ed25519 signatures are deterministic).

    Returns:
        The path of the envelope.

    Raises:
        DataError: no ``report.json`` in the folder, a symbolic link or a private key in it,
            the private key inside the folder, or an unusable key file.
    """
    folder = Path(report_dir)
    if not (folder / REQUIRED_FILE).is_file():
        raise DataError(f"{folder} has no {REQUIRED_FILE}; sign an audit report folder")
    if Path(private_key_path).resolve().is_relative_to(folder.resolve()):
        raise DataError(
            f"the private key {private_key_path} lies inside the report folder "
            f"{folder}; keep it outside so it is never shared with the report"
        )
    private = load_private_key(private_key_path)
    files = _report_files(folder)
    statement = {
        "format": STATEMENT_FORMAT,
        "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in files],
    }
    payload = canonical_json(statement)
    public = private.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": _b64(payload),
        "signatures": [
            {
                "keyid": key_id(public),
                "publicKey": _b64(raw),
                "sig": _b64(private.sign(pae(PAYLOAD_TYPE, payload))),
            }
        ],
    }
    target = folder / SIGNATURE_NAME
    atomic_write_bytes(target, canonical_json(envelope))
    return target


# -- verification ---------------------------------------------------------------------------------
def _fail(where: Path, problem: str) -> VerificationError:
    return VerificationError(f"report {where} failed verification: {problem}")


def _bad(where: Path, problem: str) -> VerificationError:
    return _fail(where, f"malformed envelope {SIGNATURE_NAME}: {problem}")


def _b64decode(value: Any, field: str, where: Path) -> bytes:
    """Strict base64: only the alphabet, correct padding, and the one canonical spelling."""
    if not isinstance(value, str):
        raise _bad(where, f"{field} is {type(value).__name__}, not a base64 string")
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _bad(where, f"{field} is not valid base64") from None
    if _b64(data) != value:
        raise _bad(where, f"{field} is not canonical base64 (altered padding bits)")
    return data


def _load_canonical(data: bytes, what: str, where: Path) -> Any:
    """Parse JSON that must be byte-for-byte canonical (so no byte can change unnoticed)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(where, f"malformed {what}: not UTF-8 JSON ({exc})") from None
    try:
        canonical_json(doc)
    except MedsynthError as exc:
        raise _fail(where, f"malformed {what}: {exc}") from None
    if canonical_form_of(data) is None:  # RFC 8785, or the 0.1 form (the same bytes here)
        raise _fail(
            where,
            f"malformed {what}: not in canonical JSON form (sorted keys, no "
            "whitespace, no escapes); it was edited after signing",
        )
    return doc


def _require_keys(doc: Any, keys: set[str], what: str, where: Path) -> None:
    if not isinstance(doc, dict):
        raise _fail(where, f"malformed {what}: expected a JSON object, found {type(doc).__name__}")
    missing, extra = sorted(keys - doc.keys()), sorted(doc.keys() - keys)
    if missing or extra:
        parts = ([f"missing field(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown field(s) {', '.join(extra)}"] if extra else []
        )
        raise _fail(where, f"malformed {what}: {'; '.join(parts)}")


def _open_envelope(folder: Path) -> tuple[bytes, Ed25519PublicKey, bytes, str]:
    """Parse and check the envelope's form; return payload, embedded key, signature, key id."""
    path = folder / SIGNATURE_NAME
    if not path.is_file():
        raise _fail(folder, f"no {SIGNATURE_NAME}: the report is not signed")
    env = _load_canonical(path.read_bytes(), f"envelope {SIGNATURE_NAME}", folder)
    _require_keys(env, _ENVELOPE_KEYS, f"envelope {SIGNATURE_NAME}", folder)
    if env["payloadType"] != PAYLOAD_TYPE:
        raise _bad(folder, f"payloadType {env['payloadType']!r} is not {PAYLOAD_TYPE!r}")
    payload = _b64decode(env["payload"], "payload", folder)
    sigs = env["signatures"]
    if not isinstance(sigs, list) or len(sigs) != 1:
        count = len(sigs) if isinstance(sigs, list) else type(sigs).__name__
        raise _bad(folder, f"signatures must be a list of exactly one signature, found {count}")
    _require_keys(sigs[0], _SIGNATURE_KEYS, f"envelope {SIGNATURE_NAME} signature", folder)
    raw = _b64decode(sigs[0]["publicKey"], "signatures[0].publicKey", folder)
    sig = _b64decode(sigs[0]["sig"], "signatures[0].sig", folder)
    if len(raw) != 32 or len(sig) != 64:
        raise _bad(
            folder,
            f"an Ed25519 public key has 32 bytes and a signature 64, found "
            f"{len(raw)} and {len(sig)}",
        )
    try:
        embedded = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise _bad(folder, "signatures[0].publicKey is not an Ed25519 public key") from None
    if sigs[0]["keyid"] != key_id(embedded):
        raise _bad(
            folder,
            f"keyid {sigs[0]['keyid']!r} is not the id "
            f"{key_id(embedded)!r} of the embedded public key",
        )
    return payload, embedded, sig, key_id(embedded)


def _parse_statement(payload: bytes, folder: Path) -> list[SignedFile]:
    doc = _load_canonical(payload, "signed statement", folder)
    _require_keys(doc, _STATEMENT_KEYS, "signed statement", folder)
    if doc["format"] != STATEMENT_FORMAT or not isinstance(doc["files"], list):
        raise _fail(
            folder,
            f"malformed signed statement: format {doc['format']!r} is not "
            f"{STATEMENT_FORMAT!r} or files is not a list",
        )
    files = []
    for i, item in enumerate(doc["files"]):
        _require_keys(item, _FILE_KEYS, f"signed statement files[{i}]", folder)
        name, digest, size = item["name"], item["sha256"], item["size"]
        ok = (
            isinstance(name, str)
            and name
            and not name.startswith("/")
            and ".." not in name.split("/")
            and name != SIGNATURE_NAME
            and isinstance(digest, str)
            and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)
            and isinstance(size, int)
            and not isinstance(size, bool)
            and size >= 0
        )
        if not ok:
            raise _fail(folder, f"malformed signed statement: files[{i}] = {item!r}")
        files.append(SignedFile(name, digest, size))
    names = [f.name for f in files]
    if names != sorted(set(names)) or REQUIRED_FILE not in names:
        raise _fail(
            folder,
            "malformed signed statement: file names must be sorted, unique "
            f"and include {REQUIRED_FILE}",
        )
    return files


def _compare_files(folder: Path, signed: list[SignedFile]) -> list[str]:
    """Every difference between the signed file list and the folder, as readable lines."""
    problems = []
    expected = {f.name: f for f in signed}
    present = set()
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            problems.append(f"{name}: a symbolic link, not allowed in a signed report")
        elif path.is_file() and name != SIGNATURE_NAME:
            present.add(name)
            if name not in expected:
                problems.append(f"{name}: extra file, not covered by the signature")
                continue
            digest, size = digest_file(path)
            want = expected[name]
            if (digest, size) != (want.sha256, want.size):
                problems.append(
                    f"{name}: changed since signing (sha256 {digest[:12]}…, "
                    f"{size} bytes; signed {want.sha256[:12]}…, {want.size} bytes)"
                )
    problems += [f"{name}: missing (it was signed)" for name in sorted(expected.keys() - present)]
    return problems


def verify_report(
    report_dir: str | Path, *, public_key_path: str | Path | None = None
) -> VerificationResult:
    """Check that a report folder is exactly what was signed, and by whom if a key is given.

    Args:
        report_dir: the folder holding the report files and ``report.sig.json``.
        public_key_path: a public key obtained independently of the report (the signer's
            ``medsynth-signing.pub``). Without it only integrity against the envelope's own
            embedded key is checked: anyone can re-sign an altered report with a new key.

    Returns:
        The signer's key id, whether it was checked against a trusted key, and the files.

    Raises:
        VerificationError: naming what failed: a malformed envelope (its field), a key other
            than the trusted one, a bad signature, or each changed, missing or extra file.
        DataError: the trusted key file cannot be read.
    """
    folder = Path(report_dir)
    if not folder.is_dir():
        raise _fail(folder, "not a folder; give the report folder holding report.sig.json")
    trusted = load_public_key(public_key_path) if public_key_path is not None else None
    payload, embedded, sig, kid = _open_envelope(folder)
    key = embedded
    if trusted is not None:
        if key_id(trusted) != kid:
            raise _fail(
                folder,
                f"signed by key {kid}, not by the trusted key "
                f"{key_id(trusted)} ({public_key_path})",
            )
        key = trusted
    try:
        key.verify(sig, pae(PAYLOAD_TYPE, payload))
    except InvalidSignature:
        raise _fail(
            folder,
            f"bad signature in {SIGNATURE_NAME}: it does not match the "
            f"signed statement (the envelope was altered)",
        ) from None
    signed = _parse_statement(payload, folder)
    problems = _compare_files(folder, signed)
    if problems:
        raise _fail(
            folder, f"{len(problems)} file problem(s):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return VerificationResult(
        report_dir=folder, key_id=kid, trusted_key=trusted is not None, files=tuple(signed)
    )
