"""Leak cases built from the simulator: real and synthetic cohorts from independent draws, with
a number of training patients copied verbatim into the synthetic cohort.

Training, holdout and the "synthetic" cohort are independent simulator draws of the same
schema (three seeds): the synthetic cohort is then what a generator that learned the population
and nothing about its patients would release. :func:`with_copies` replaces ``k`` of its patients
by verbatim copies of ``k`` training patients (their whole record, under fresh ids), the leak an
audit must catch. Every patient id carries its cohort's prefix, so no id is shared by chance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medsynth.cohort import PATIENT_ID, Cohort
from medsynth.schema import DatasetSchema
from medsynth.simulate import simulate


def renamed(cohort: Cohort, prefix: str) -> Cohort:
    """The same records under ids ``prefix0``, ``prefix1``, ... (cohort order)."""
    ids = {old: f"{prefix}{i}" for i, old in enumerate(cohort.patient_ids)}

    def rename(table: pd.DataFrame) -> pd.DataFrame:
        return table.assign(**{PATIENT_ID: table[PATIENT_ID].map(ids)})

    return Cohort(
        cohort.schema,
        rename(cohort.patients),
        rename(cohort.events),
        rename(cohort.conditions),
        cohort.source,
    )


def draws(schema: DatasetSchema, n: int, seed: int) -> tuple[Cohort, Cohort, Cohort]:
    """(train, holdout, fresh): three independent draws of ``n`` patients each."""
    return tuple(  # type: ignore[return-value]
        renamed(simulate(schema, n, random_state=3 * seed + i), prefix)
        for i, prefix in enumerate(("train-", "holdout-", "synthetic-"))
    )


def with_copies(fresh: Cohort, train: Cohort, k: int, seed: int) -> Cohort:
    """``fresh`` with its last ``k`` patients replaced by verbatim copies of ``k`` training
    patients drawn at random (fresh ids ``copy-0``, ...); the size stays that of ``fresh``."""
    if k == 0:
        return fresh
    chosen = np.random.default_rng(seed).choice(train.n_patients, size=k, replace=False)
    copies = renamed(train.subset(np.asarray(train.patient_ids)[chosen]), "copy-")
    kept = fresh.subset(fresh.patient_ids[: fresh.n_patients - k])
    return Cohort(
        fresh.schema,
        *(
            pd.concat([getattr(kept, t), getattr(copies, t)], ignore_index=True)
            for t in ("patients", "events", "conditions")
        ),
        fresh.source,
    )
