"""Shared fixtures: small schemas and cohorts built by hand (tests never read ../shared).

One thread per numerical library: on a small machine shared with other jobs, two torch (or
OpenMP, BLAS) threads per process spin against each other and a training step runs several
times slower. Set before torch or numpy is first imported; a value already in the environment
is kept.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import copy
from typing import Any

import pytest

from medsynth.schema import DatasetSchema, load_schema, parse_schema
from tests.helpers import minimal_doc


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


@pytest.fixture(scope="session")
def tiny_schema() -> DatasetSchema:
    """The schema of :func:`tests.helpers.minimal_doc`."""
    return parse_schema(minimal_doc())


@pytest.fixture(autouse=True, scope="session")
def _installation_home(tmp_path_factory):
    """Every test runs against its own installation folder (its key, no user ledger)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MEDSYNTH_HOME", str(tmp_path_factory.mktemp("medsynth-home")))
    patch.delenv("MEDSYNTH_LEDGER", raising=False)
    yield
    patch.undo()


@pytest.fixture()
def exact_copies(monkeypatch):
    """Registers the small privacy evaluator of :mod:`tests.audit.stub_attack` for one test, so
    that an audit can pass without the attack modules."""
    from tests.audit import stub_attack

    stub_attack.register(monkeypatch)
