"""Shared fixtures: small schemas and cohorts built by hand (tests never read ../shared)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from medsynth.schema import DatasetSchema, load_schema, parse_schema


@pytest.fixture(scope="session")
def general_schema() -> DatasetSchema:
    return load_schema("general-adult")


@pytest.fixture(scope="session")
def liver_schema() -> DatasetSchema:
    return load_schema("liver-panel")


@pytest.fixture()
def general_doc(general_schema: DatasetSchema) -> dict[str, Any]:
    """A fresh, mutable copy of the general-adult schema document."""
    return copy.deepcopy(general_schema.raw)


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


@pytest.fixture(scope="session")
def tiny_schema() -> DatasetSchema:
    return parse_schema(minimal_doc())


@pytest.fixture(autouse=True, scope="session")
def _installation_home(tmp_path_factory):
    """Every test runs against its own installation folder (its key, no user ledger)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MEDSYNTH_HOME", str(tmp_path_factory.mktemp("medsynth-home")))
    patch.delenv("MEDSYNTH_LEDGER", raising=False)
    yield
    patch.undo()


def new_ledger(path, *, default_cap: float = 1000.0):
    """Start a ledger at ``path`` (ledgers are only ever created explicitly); returns the path.

    Its default cap is large: tests train at large epsilons to check learning, not budgets."""
    from medsynth.privacy.ledger import Ledger

    Ledger.create(path, default_cap=default_cap)
    return path
