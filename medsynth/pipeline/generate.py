"""Synthetic patients from a trained model: chunks for streaming, or one cohort.

Sampling and decoding are post-processing of a DP model, so they cost no privacy budget and
read no data. :func:`generate` yields :class:`Cohort` chunks of ``batch_size`` patients, which
:func:`medsynth.fhir.write.write_fhir` consumes one at a time with flat memory;
:func:`generate_cohort` gathers them. Output is deterministic for a ``random_state``, a batch size
and a device. :func:`release_info` is what a FHIR manifest records about the release: the model
hash (the one its ``privacy.json`` and the ledger name) and the privacy guarantee.
A model trained without privacy is not releasable and is refused here.

Example:
    >>> for chunk in generate("model/", 10_000, random_state=1, conditions={"sex": "female"}):
    ...     print(chunk.n_patients)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from medsynth.cohort import Cohort
from medsynth.models.artifact import PatientModel, load_model
from medsynth.pipeline.provenance import check_release_record

__all__ = ["generate", "generate_cohort", "load_release", "release_info"]


def load_release(model: str | Path | PatientModel, device: str = "auto") -> PatientModel:
    """A model fit for release: its privacy record names its weights (checked by
    :func:`~medsynth.models.artifact.load_model`), holds (its epsilon recomputed from its own
    parameters is not above the stated one) and is a DP-SGD record.

    Raises:
        DataError: naming ``privacy.json``, when any of these fails.
    """
    loaded = model if isinstance(model, PatientModel) else load_model(model, device=device)
    check_release_record(loaded.privacy, Path(loaded.path) / "privacy.json")
    return loaded


def generate(
    model_dir: str | Path | PatientModel,
    n_patients: int,
    *,
    random_state: int = 0,
    conditions: Mapping[str, Any] | None = None,
    batch_size: int = 512,
    device: str = "auto",
    progress: bool = False,
) -> Iterator[Cohort]:
    """Yield synthetic cohorts of at most ``batch_size`` patients, ``n_patients`` in all.

    Args:
        conditions: fix attributes or conditions, e.g. ``{"sex": "female", "age": (40, 60)}``
            (see :mod:`medsynth.models.conditions`).
        progress: show a progress bar (patients) on stderr.
    """
    from tqdm.auto import tqdm

    model = load_release(model_dir, device)
    bar = tqdm(total=n_patients, desc="generate", unit="patient", disable=not progress)
    with bar:
        for chunk in model.sample(
            n_patients, conditions=conditions, random_state=random_state, batch_size=batch_size
        ):
            bar.update(chunk.n_patients)
            yield chunk


def generate_cohort(
    model_dir: str | Path | PatientModel,
    n_patients: int,
    *,
    random_state: int = 0,
    conditions: Mapping[str, Any] | None = None,
    batch_size: int = 512,
    device: str = "auto",
) -> Cohort:
    """All of :func:`generate` as one cohort."""
    chunks = list(
        generate(
            model_dir,
            n_patients,
            random_state=random_state,
            conditions=conditions,
            batch_size=batch_size,
            device=device,
        )
    )
    model_schema = chunks[0].schema if chunks else load_release(model_dir, device).schema
    if not chunks:
        return Cohort.conform(model_schema, pd.DataFrame({"patient_id": []}))[0]
    if len(chunks) == 1:
        return chunks[0]
    first = chunks[0]
    return Cohort(
        schema=model_schema,
        patients=pd.concat([c.patients for c in chunks], ignore_index=True),
        events=pd.concat([c.events for c in chunks], ignore_index=True),
        conditions=pd.concat([c.conditions for c in chunks], ignore_index=True),
        source=first.source,
    )


def release_info(model: PatientModel) -> dict[str, Any]:
    """Manifest fields naming the model and its privacy guarantee (a releasable model's record
    holds every one of them; :func:`load_release` checks it)."""
    record = model.privacy
    return {
        "model_sha256": model.sha256,
        "epsilon": model.epsilon,
        "delta": model.delta,
        "accountant": record["accountant"],
        "mechanism": record["mechanism"],
        "privacy_unit": record["unit"],
    }
