"""The installation's secret key: what makes a ledger's head unforgeable without it.

A ledger's head file (:mod:`medsynth.privacy.ledger_head`) carries an HMAC-SHA256 under this key,
so someone who can edit files but does not hold the key cannot rewrite a ledger's history and
re-seal it, nor delete its last lines and write a matching head. Whoever holds the key can forge
any history: keep it where only the data owner's service account can read it (mode 0600, created
so). The key lives in :func:`installation_dir` (``$MEDSYNTH_HOME``, else
``$XDG_DATA_HOME/medsynth``, else ``~/.local/share/medsynth``) as ``installation.key``; a new
installation (a new key) starts afresh and cannot authenticate the ledgers of another.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from medsynth.errors import LedgerIntegrityError, MedsynthError

__all__ = ["KEY_NAME", "create_installation_key", "installation_dir", "installation_key", "mac"]

KEY_NAME = "installation.key"
_KEY_BYTES = 32
_CACHE: dict[str, tuple[tuple[int, int], bytes]] = {}


def installation_dir() -> Path:
    """``$MEDSYNTH_HOME``, else ``$XDG_DATA_HOME/medsynth``, else ``~/.local/share/medsynth``."""
    env = os.environ.get("MEDSYNTH_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "medsynth"


def key_path() -> Path:
    return installation_dir() / KEY_NAME


def installation_key() -> bytes:
    """The installation's key (read once per key file; cached while the file is unchanged).

    Raises:
        LedgerIntegrityError: there is no key (or it is unreadable): a ledger cannot be
            authenticated, so it is refused rather than read unchecked.
    """
    path = key_path()
    try:
        stat = path.stat()
        cached = _CACHE.get(str(path))
        if cached is not None and cached[0] == (stat.st_mtime_ns, stat.st_size):
            return cached[1]
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LedgerIntegrityError(
            f"no installation key at {path}: ledgers written here cannot be authenticated. "
            "Restore the key from your backup, or point MEDSYNTH_HOME at the folder that holds "
            "it; 'medsynth budget init' creates one for a new installation"
        ) from None
    except OSError as exc:
        raise LedgerIntegrityError(f"cannot read the installation key {path}: {exc}") from None
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        raise LedgerIntegrityError(f"{path} is not a medsynth installation key (64 hex digits)")
    _CACHE[str(path)] = ((stat.st_mtime_ns, stat.st_size), key)
    return key


def create_installation_key() -> Path:
    """Create the installation key (mode 0600) unless one exists; return its path."""
    path = key_path()
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # created concurrently: keep the first
        return path
    except OSError as exc:
        raise MedsynthError(f"cannot create the installation key {path}: {exc}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(_KEY_BYTES) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path


def mac(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 of ``data`` under ``key``, as hex."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()
