"""SHA-256 of bytes, of files and of folders: how medsynth names what it wrote.

:func:`tree_digest` is the one way a set of files becomes one hash: the SHA-256 of the canonical
JSON object mapping each file's relative POSIX path to its SHA-256. A model's hash
(:func:`medsynth.models.artifact.model_sha256`) is the tree digest of the files that define the
model; an audit report names its inputs the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from medsynth.core.canonical import canonical_json
from medsynth.errors import DataError

__all__ = ["digest_file", "hash_file", "hash_tree", "sha256_hex", "tree_digest", "tree_files"]

_CHUNK = 1 << 18  # 256 KiB: flat memory while hashing large inputs


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def digest_file(path: str | Path) -> tuple[str, int]:
    """SHA-256 hex digest and size in bytes of one file, read in chunks (the same read)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def hash_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes as 64 lowercase hex digits."""
    return digest_file(path)[0]


def tree_files(root: str | Path, *, exclude: Iterable[str] = ()) -> list[str]:
    """Every file under ``root`` as sorted POSIX paths relative to it, minus ``exclude``.

    Raises:
        DataError: when ``root`` is not a folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"{base} is not a folder; give the folder whose files to hash")
    skip = set(exclude)
    names = (p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
    return sorted(n for n in names if n not in skip)


def hash_tree(
    root: str | Path, *, exclude: Iterable[str] = (), only: Iterable[str] | None = None
) -> dict[str, str]:
    """SHA-256 of every file under ``root``, keyed by sorted relative POSIX path.

    Args:
        root: the folder to hash (sub-folders included).
        exclude: relative POSIX paths to leave out (e.g. a signature over the rest).
        only: when given, exactly these relative paths (each must exist).

    Example:
        >>> hash_tree("model", only=["config.json", "weights.pt"])  # doctest: +SKIP
        {'config.json': '5f…', 'weights.pt': 'c1…'}
    """
    base = Path(root)
    if only is not None:
        names = sorted(set(only))
        missing = [n for n in names if not (base / n).is_file()]
        if missing:
            raise DataError(f"{base}: missing {', '.join(missing)}")
    else:
        names = tree_files(base, exclude=exclude)
    return {name: hash_file(base / name) for name in names}


def tree_digest(files: Mapping[str, str]) -> str:
    """One SHA-256 for a mapping of relative path -> file SHA-256 (canonical JSON, RFC 8785)."""
    return sha256_hex(canonical_json(dict(files)))
