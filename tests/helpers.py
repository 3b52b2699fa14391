"""Plain functions shared by the test modules: a tiny schema document, hand-made cohorts and a
privacy record.

Fixtures built from them live in ``tests/conftest.py``; test modules import the functions from
here (never from the root conftest or from another test module).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from medsynth.cohort import Cohort
from medsynth.schema import DatasetSchema

if TYPE_CHECKING:
    from medsynth.privacy.accounting import PrivacyRecord


def minimal_doc() -> dict[str, Any]:
    """A tiny valid schema document: two attributes, one condition, two channels."""
    return {
        "format": "medsynth.dataset/1",
        "name": "tiny",
        "time": {"anchor": "first_event", "horizon_days": 365, "output_start": "2022-01-01"},
        "limits": {"max_events_per_channel": 3, "max_events_total": 5, "max_conditions": 2},
        "attributes": [
            {
                "name": "sex",
                "type": "categorical",
                "fhir": "Patient.gender",
                "categories": ["female", "male"],
            },
            {
                "name": "age",
                "type": "numeric",
                "fhir": "Patient.birthDate",
                "min": 18,
                "max": 90,
                "decimals": 0,
            },
        ],
        "conditions": {
            "system": "http://snomed.info/sct",
            "codes": [{"code": "38341003", "display": "Hypertension"}],
        },
        "channels": [
            {
                "name": "glucose",
                "code": "2339-0",
                "display": "Glucose",
                "unit": "mg/dL",
                "min": 20,
                "max": 600,
                "category": "laboratory",
                "decimals": 0,
            },
            {
                "name": "hba1c",
                "code": "4548-4",
                "display": "HbA1c",
                "unit": "%",
                "min": 3,
                "max": 18,
                "category": "laboratory",
                "decimals": 1,
            },
        ],
    }


def make_cohort(
    schema: DatasetSchema,
    rows: Iterable[tuple],
    events: Iterable[tuple] = (),
    conditions: Iterable[tuple] = (),
) -> Cohort:
    """A cohort of the tiny schema (:func:`minimal_doc`) written out by hand.

    rows: (id, sex, age); events: (id, time, channel, value); conditions: (id, code), onset 0.
    """
    pat = pd.DataFrame(list(rows), columns=["patient_id", "sex", "age"])
    ev = pd.DataFrame(list(events), columns=["patient_id", "time", "channel", "value"])
    cond = pd.DataFrame(
        [(p, c, 0.0) for p, c in conditions], columns=["patient_id", "code", "onset"]
    )
    return Cohort.conform(schema, pat, ev, cond)[0]


def random_cohort(schema: DatasetSchema, n: int, seed: int, prefix: str = "p") -> Cohort:
    """Patients whose hypertension depends on age and shows in glucose (a learnable signal)."""
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}{i}" for i in range(n)]
    age = rng.integers(18, 91, n)
    sick = rng.random(n) < 0.15 + 0.6 * (age - 18) / 72
    rows = list(zip(ids, rng.choice(["female", "male"], n), age, strict=True))
    events = []
    for pid, s in zip(ids, sick, strict=True):
        level = rng.normal(150 if s else 95, 12)
        for t in np.sort(rng.uniform(0, 360, rng.integers(1, 4))):
            events.append((pid, t, "glucose", level + rng.normal(0, 5)))
        events.append((pid, rng.uniform(0, 360), "hba1c", rng.normal(7 if s else 5.3, 0.4)))
    conditions = [(pid, "38341003") for pid, s in zip(ids, sick, strict=True) if s]
    return make_cohort(schema, rows, events, conditions)


def privacy_record(epsilon: float, delta: float = 1e-5, **changes: Any) -> PrivacyRecord:
    """A privacy record charging ``epsilon`` (RDP, q = 0.05, sigma = 2, 100 steps by default).

    Opacus is imported on the first call, not when a test module imports this one."""
    from medsynth.privacy.accounting import PrivacyRecord

    fields: dict[str, Any] = {
        "accountant": "rdp",
        "sample_rate": 0.05,
        "noise_multiplier": 2.0,
        "max_grad_norm": 1.0,
        "steps": 100,
        "delta": delta,
        "epsilon": epsilon,
        "target_epsilon": epsilon,
        "opacus_version": "1.6.0",
    }
    return PrivacyRecord(**{**fields, **changes})


def new_ledger(path, *, default_cap: float = 1000.0):
    """Start a ledger at ``path`` (ledgers are only ever created explicitly); returns the path.

    Its default cap is large: tests train at large epsilons to check learning, not budgets."""
    from medsynth.privacy.ledger import Ledger

    Ledger.create(path, default_cap=default_cap)
    return path
