"""Provenance of an audit report's inputs, as plain JSON values.

Nothing here reads a record into the report: cohorts are reduced to their content hash, source
and sizes. The model and the privacy ledger are named by the pipeline
(:mod:`medsynth.pipeline.provenance`), which sits above the privacy layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.cohort import Cohort


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
