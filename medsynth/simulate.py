"""Rule-based simulated patients for any dataset schema: the embedded default source.

:func:`simulate` builds a cohort of plausible patients from a dataset schema's public content
alone (channel bounds and normal ranges, categories, condition and LOINC codes that name known
concepts) and a seed. It reads no data of any kind, so its output costs no privacy budget: it
serves the demo, the tests, users without real data yet, and public pretraining of the DP
model. Age, sex and body size shape vitals and labs, diseases shift their channels,
trajectories are autocorrelated within a patient, visits are irregular and more frequent for
sicker patients. See ``docs/simulator.md`` for the model.

Patients are generated in fixed blocks of :data:`BLOCK_SIZE`, each from its own random streams,
so :func:`simulate_chunks` yields exactly the patients of one :func:`simulate` call, in pieces,
whatever the chunk size.

Example:
    >>> from medsynth.schema import load_schema
    >>> cohort = simulate(load_schema("general-adult"), 100, random_state=7)
    >>> cohort.n_patients
    100
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from medsynth.cohort import Cohort, ConformanceReport, Source
from medsynth.errors import DataError
from medsynth.schema import DatasetSchema, load_schema
from medsynth.simulator.block import RawBlock, simulate_block
from medsynth.simulator.plan import make_plan
from medsynth.simulator.streams import Streams

__all__ = ["BLOCK_SIZE", "simulate", "simulate_chunks", "simulate_conformed", "simulation_source"]

BLOCK_SIZE = 2048  # patients per block of random streams (part of what a seed produces)
SIMULATOR_VERSION = "1"  # bump when a change alters what a (schema, n, seed) produces
_ID_PREFIX = "sim-"


def _seed(random_state: int | np.random.Generator) -> int:
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63))
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(
        random_state, (int, np.integer)
    ):
        raise DataError(
            f"random_state must be an int >= 0 or a numpy Generator, got {random_state!r}"
        )
    if random_state < 0:
        raise DataError(f"random_state must be >= 0, got {random_state}")
    return int(random_state)


def _schema(schema: DatasetSchema | str | Path) -> DatasetSchema:
    return schema if isinstance(schema, DatasetSchema) else load_schema(schema)


def simulation_source(schema: DatasetSchema, n_patients: int, seed: int) -> Source:
    """The :class:`Source` of a simulated cohort: a hash of (schema, size, seed, version)."""
    key = f"medsynth.simulate/{SIMULATOR_VERSION}|{schema.sha256}|{n_patients}|{seed}"
    return Source(
        fingerprint=hashlib.sha256(key.encode()).hexdigest(),
        kind="simulated",
        description=(
            f"rule-based simulation (no real data): schema {schema.name!r}, "
            f"{n_patients} patients, seed {seed}"
        ),
    )


def _blocks(schema: DatasetSchema, n_patients: int, seed: int) -> Iterator[RawBlock]:
    plan = make_plan(schema)
    width = max(6, len(str(n_patients - 1)))
    for block, first in enumerate(range(0, n_patients, BLOCK_SIZE)):
        index = np.arange(first, min(first + BLOCK_SIZE, n_patients))
        ids = np.array([f"{_ID_PREFIX}{i:0{width}d}" for i in index], dtype=object)
        yield simulate_block(plan, Streams(seed, block), ids)


def _cut(buffer: list[RawBlock], size: int) -> tuple[RawBlock, list[RawBlock]]:
    """The first ``size`` patients of the buffered blocks, and what is left."""
    head: list[RawBlock] = []
    rest: list[RawBlock] = []
    need = size
    for raw in buffer:
        m = len(raw.patients)
        if need >= m:
            head.append(raw)
        elif need == 0:
            rest.append(raw)
        else:
            head.append(_slice(raw, 0, need))
            rest.append(_slice(raw, need, m))
        need = max(need - m, 0)
    return _concat(head), rest


def _slice(raw: RawBlock, lo: int, hi: int) -> RawBlock:
    def part(df: pd.DataFrame) -> pd.DataFrame:
        keep = (df["_pos"] >= lo) & (df["_pos"] < hi)
        return df[keep].assign(_pos=df["_pos"][keep] - lo).reset_index(drop=True)

    return RawBlock(part(raw.patients), part(raw.events), part(raw.conditions))


def _concat(parts: list[RawBlock]) -> RawBlock:
    if len(parts) == 1:
        return parts[0]
    return RawBlock(
        *(
            pd.concat([getattr(p, t) for p in parts], ignore_index=True)
            for t in ("patients", "events", "conditions")
        )
    )


def simulate_conformed(
    schema: DatasetSchema | str | Path,
    n_patients: int,
    *,
    random_state: int | np.random.Generator = 0,
    chunk_size: int | None = None,
) -> Iterator[tuple[Cohort, ConformanceReport]]:
    """Like :func:`simulate_chunks`, with the conformance report of each chunk.

    The simulator keeps values inside bounds and records inside limits itself, so every report
    is empty; the reports are there to check exactly that. Arguments are checked at once (a
    :class:`DataError` names the bad one), before the first chunk is asked for.
    """
    schema = _schema(schema)
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)):
        raise DataError(f"n_patients must be an integer >= 1, got {n_patients!r}")
    if n_patients < 1:
        raise DataError(f"n_patients must be >= 1, got {n_patients}")
    size = int(n_patients) if chunk_size is None else int(chunk_size)
    if size < 1:
        raise DataError(f"chunk_size must be >= 1, got {chunk_size}")
    return _conformed_chunks(schema, int(n_patients), _seed(random_state), size)


def _conformed_chunks(
    schema: DatasetSchema, n_patients: int, seed: int, size: int
) -> Iterator[tuple[Cohort, ConformanceReport]]:
    source = simulation_source(schema, n_patients, seed)
    buffer: list[RawBlock] = []
    buffered = 0
    blocks = _blocks(schema, n_patients, seed)
    while True:
        raw = next(blocks, None)
        if raw is not None:
            buffer.append(raw)
            buffered += len(raw.patients)
        while buffered >= size or (raw is None and buffered > 0):
            head, buffer = _cut(buffer, min(size, buffered))
            buffered -= len(head.patients)
            yield Cohort.conform(
                schema,
                head.patients.drop(columns="_pos"),
                head.events.drop(columns="_pos"),
                head.conditions.drop(columns="_pos"),
                source=source,
            )
        if raw is None:
            return


def simulate_chunks(
    schema: DatasetSchema | str | Path,
    n_patients: int,
    *,
    random_state: int | np.random.Generator = 0,
    chunk_size: int = BLOCK_SIZE,
) -> Iterator[Cohort]:
    """Simulate ``n_patients`` patients as cohorts of at most ``chunk_size`` patients each.

    The chunks hold, in order, exactly the patients :func:`simulate` returns for the same
    arguments (patient ids are unique across chunks), and all carry that cohort's
    :class:`Source`. Memory stays bounded by the chunk and block sizes, so large outputs can be
    streamed, e.g. straight into :func:`medsynth.fhir.write.write_fhir`.
    """
    chunks = simulate_conformed(
        schema, n_patients, random_state=random_state, chunk_size=chunk_size
    )
    return (cohort for cohort, _ in chunks)


def simulate(
    schema: DatasetSchema | str | Path,
    n_patients: int,
    *,
    random_state: int | np.random.Generator = 0,
) -> Cohort:
    """Simulate ``n_patients`` plausible patients for ``schema`` (no real data, no privacy cost).

    Args:
        schema: a dataset schema, or a shipped schema name or file path.
        n_patients: number of patients (>= 1).
        random_state: seed (int >= 0) or numpy Generator; the same seed gives the same cohort
            (equal :meth:`Cohort.content_hash`).

    Returns:
        A conformed :class:`Cohort` whose source has ``kind="simulated"`` and a fingerprint
        derived from the schema's sha256, ``n_patients`` and the seed.
    """
    ((cohort, _),) = simulate_conformed(schema, n_patients, random_state=random_state)
    return cohort
