"""Open whatever a user points medsynth at as a Cohort.

A source is a cohort folder (written by ``medsynth ingest`` or :meth:`Cohort.save`), a folder of
exported cohort tables (CSV or Parquet), or FHIR files and folders that the reader understands.
Commands that take a SOURCE (train, audit) all go through :func:`open_source`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsynth.cohort import Cohort
from medsynth.errors import DataError
from medsynth.schema import DatasetSchema


@dataclass(frozen=True)
class OpenedSource:
    """A cohort and, when it came from FHIR, the reader's account of what it did."""

    cohort: Cohort
    kind: str
    ingest: Any | None = None  # medsynth.fhir.read.IngestResult

    def lines(self) -> list[str]:
        if self.ingest is not None:
            return list(self.ingest.lines())
        return [f"{self.kind}: {self.cohort.n_patients} patients, {len(self.cohort.events)} events"]


def is_cohort_dir(path: Path) -> bool:
    return path.is_dir() and (path / "cohort.json").is_file()


def is_tables_dir(path: Path) -> bool:
    return path.is_dir() and (path / "tables.json").is_file()


def open_source(
    sources: Sequence[str | Path],
    schema: DatasetSchema | None,
    *,
    strict: bool = False,
    progress: bool = False,
) -> OpenedSource:
    """Open a cohort folder, a tables folder, or FHIR sources mapped through ``schema``."""
    paths = [Path(s) for s in sources]
    if not paths:
        raise DataError("no source given")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"source not found: {', '.join(missing)}")
    folders = [str(p) for p in paths if is_cohort_dir(p) or is_tables_dir(p)]
    if len(paths) > 1 and folders:
        raise DataError(
            f"{', '.join(folders)}: a cohort or tables folder opens on its own, not beside "
            "other sources; give it alone (several FHIR files and folders can go together)"
        )
    if len(paths) == 1 and is_cohort_dir(paths[0]):
        cohort = Cohort.load(paths[0])
        if schema is not None and schema.sha256 != cohort.schema.sha256:
            raise DataError(
                f"{paths[0]}: the cohort was built with schema {cohort.schema.name!r} "
                f"({cohort.schema.sha256[:12]}), not the given {schema.name!r} "
                f"({schema.sha256[:12]}); drop --schema or re-run ingest"
            )
        return OpenedSource(cohort, "cohort folder")
    if len(paths) == 1 and is_tables_dir(paths[0]):
        from medsynth.tabular import read_tables

        cohort, _ = read_tables(paths[0], schema, strict=strict)
        return OpenedSource(cohort, "cohort tables")
    if schema is None:
        raise DataError("reading FHIR needs --schema (a schema file or a shipped schema name)")
    from medsynth.fhir.read import read_fhir

    result = read_fhir(paths, schema, strict=strict, progress=progress)
    return OpenedSource(result.cohort, "FHIR", result)
