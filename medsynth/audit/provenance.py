"""Provenance of an audit report: hashes and sizes of its inputs, the model artifact and the
privacy ledger's events, as plain JSON values.

Nothing here reads a record into the report: cohorts are reduced to their content hash, source
and sizes, the model artifact to the sha256 of each file and its privacy record (epsilon, delta
and the parameters to recompute them), the ledger to the events of the training data's source.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.cohort import Cohort
from medsynth.errors import DataError

PRIVACY_RECORD = "privacy.json"


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN and infinities to None, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    raise TypeError(f"cannot put {type(value).__name__} into the audit report")


def cohort_identity(cohort: Cohort) -> dict[str, Any]:
    """Hashes and sizes of a cohort (no records)."""
    return {
        "content_sha256": cohort.content_hash(),
        "source": cohort.source.to_dict(),
        "patients": cohort.n_patients,
        "events": len(cohort.events),
        "conditions": len(cohort.conditions),
    }


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by POSIX path relative to it (sorted)."""
    out = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return out


def model_identity(model_dir: Path | None) -> dict[str, Any] | None:
    """Hashes of the model artifact's files and its privacy record, when a model is given.

    ``sha256`` is the hash of the canonical JSON of the ``files`` mapping (path -> sha256), so
    one number pins every file of the artifact.
    """
    if model_dir is None:
        return None
    folder = Path(model_dir)
    if not folder.is_dir():
        raise DataError(
            f"model artifact {folder} is not a folder; give the folder written by 'medsynth train'"
        )
    files = file_hashes(folder)
    record = None
    path = folder / PRIVACY_RECORD
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not valid JSON ({exc}); the artifact is damaged") from None
    tree = hashlib.sha256(json.dumps(files, sort_keys=True, separators=(",", ":")).encode())
    return {
        "name": folder.name,
        "sha256": tree.hexdigest(),
        "files": files,
        "privacy_record": record,
    }


def ledger_events_of(ledger: Any, dataset: str) -> list[dict[str, Any]]:
    """The privacy-ledger events of ``dataset`` as plain dictionaries.

    ``ledger`` is a :class:`medsynth.privacy.ledger.Ledger` or the path of a ledger file.
    """
    if isinstance(ledger, (str, Path)):
        from medsynth.privacy.ledger import Ledger

        ledger = Ledger(Path(ledger))
    return [jsonable(e) for e in ledger.events(dataset)]
