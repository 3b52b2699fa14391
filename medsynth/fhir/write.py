"""Write cohorts as FHIR R4 JSON: bulk ndjson or transaction Bundles, streaming and atomic.

:class:`FhirWriter` takes cohort chunks one after another (generation streams sampled patients
into it), lays each out as resources block by block (:mod:`medsynth.fhir.layout`), serialises
them with ``orjson`` and appends them to the output with large buffered writes, so memory stays
flat in the number of patients. The output is built inside :func:`medsynth._io.atomic_dir`: it
appears, with its ``manifest.json``, only when the last chunk is written; an error anywhere
leaves no output. For a seed the files are byte-identical whatever the chunking; only the
manifest's ``transactionTime`` (the wall-clock time of writing, unless given) differs between
runs. :func:`write_fhir` is the one-call form.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from types import TracebackType
from typing import Any

from tqdm import tqdm

from medsynth._io import atomic_dir
from medsynth.cohort import Cohort
from medsynth.errors import DataError, MedsynthError
from medsynth.fhir.layout import (
    RESOURCE_TYPES,
    BlockInput,
    BundleSink,
    Layout,
    NdjsonSink,
    OutputFile,
    PreparedCohort,
    Rendered,
    Streams,
    render_block,
)
from medsynth.fhir.resources import SYNTHETIC_TAG, Templates

__all__ = ["FhirWriter", "Manifest", "OutputFile", "RESOURCE_TYPES", "write_fhir"]

MANIFEST_NAME = "manifest.json"
OUTPUT_FORMAT = "medsynth.fhir-output/1"


@dataclass(frozen=True)
class Manifest:
    """What a FHIR output folder holds; ``manifest.json`` in the shape of a Bulk Data manifest.

    ``counts`` are resources by type (Bundles excluded); ``files`` lists the output files (for
    the Bundle layout, ``count`` is the Bundle's number of entries); ``path`` is the folder.
    """

    layout: Layout
    transaction_time: str
    files: tuple[OutputFile, ...]
    counts: dict[str, int]
    patients: int
    schema_name: str
    schema_sha256: str
    seed: int
    medsynth_version: str
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path = Path(".")

    @property
    def total(self) -> int:
        """Number of resources written (Bundles themselves not counted)."""
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """The ``manifest.json`` document."""
        return {
            "transactionTime": self.transaction_time,
            "requiresAccessToken": False,
            "outputFormat": (
                "application/fhir+ndjson" if self.layout == "ndjson" else "application/fhir+json"
            ),
            "output": [{"type": f.type, "url": f.url, "count": f.count} for f in self.files],
            "error": [],
            "extension": {
                "medsynth": {
                    "format": OUTPUT_FORMAT,
                    "layout": self.layout,
                    "synthetic": True,
                    "tag": dict(SYNTHETIC_TAG),
                    "schema": {"name": self.schema_name, "sha256": self.schema_sha256},
                    "seed": self.seed,
                    "patients": self.patients,
                    "counts": dict(self.counts),
                    "medsynth_version": self.medsynth_version,
                    "sha256": {f.url: f.sha256 for f in self.files},
                    "extra": dict(self.extra),
                }
            },
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any], path: str | Path = ".") -> Manifest:
        """Parse a ``manifest.json`` document written by :meth:`to_dict` (``path``: folder)."""
        where = Path(path) / MANIFEST_NAME
        try:
            med = doc["extension"]["medsynth"]
            if med["format"] != OUTPUT_FORMAT:
                raise DataError(
                    f"{where}: format {med['format']!r} is not {OUTPUT_FORMAT!r}; "
                    "it was not written by this version of medsynth"
                )
            sha = med["sha256"]
            files = tuple(
                OutputFile(o["type"], o["url"], int(o["count"]), sha[o["url"]])
                for o in doc["output"]
            )
            return cls(
                med["layout"],
                doc["transactionTime"],
                files,
                dict(med["counts"]),
                int(med["patients"]),
                med["schema"]["name"],
                med["schema"]["sha256"],
                int(med["seed"]),
                med["medsynth_version"],
                dict(med["extra"]),
                Path(path),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{where}: not a medsynth FHIR manifest (missing or bad {exc})"
            ) from None

    @classmethod
    def load(cls, folder: str | Path) -> Manifest:
        """Read ``manifest.json`` from a FHIR output folder."""
        path = Path(folder) / MANIFEST_NAME
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read the manifest: {exc}") from None
        return cls.from_dict(doc, folder)


_WORKER: dict[str, Any] = {}


def _init_worker(t: Templates, layout: Layout) -> None:
    _WORKER.update(t=t, layout=layout)


def _render_in_worker(inp: BlockInput) -> Rendered:
    return render_block(_WORKER["t"], inp, _WORKER["layout"])


class FhirWriter:
    """Stream cohort chunks into a FHIR output folder; the folder appears on :meth:`close`.

    Use it as a context manager: leaving the block normally closes it (writing the manifest
    and moving the folder into place); an exception removes everything written. With
    ``workers`` > 1, blocks of ``block_patients`` patients are built and serialised in that
    many worker processes (the output is the same byte for byte); the main process still
    writes and hashes every byte, so this helps only with spare cores: on two cores one
    process is faster (``docs/performance.md``).

    Example:
        >>> with FhirWriter("out", format="bundle", seed=7) as writer:  # doctest: +SKIP
        ...     for chunk in chunks:
        ...         writer.write(chunk)
        >>> writer.manifest.total  # doctest: +SKIP
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        format: Layout = "ndjson",
        seed: int = 0,
        patients_per_bundle: int = 100,
        manifest_extra: dict[str, Any] | None = None,
        overwrite: bool = False,
        progress: bool = False,
        transaction_time: dt.datetime | None = None,
        workers: int = 1,
        block_patients: int = 256,
        total_patients: int | None = None,
    ) -> None:
        if format not in ("ndjson", "bundle"):
            raise MedsynthError(
                f"FHIR output format {format!r} is unknown; use 'ndjson' or 'bundle'"
            )
        for name, value in (
            ("patients_per_bundle", patients_per_bundle),
            ("workers", workers),
            ("block_patients", block_patients),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MedsynthError(f"{name} must be an integer of at least 1, got {value!r}")
        self.out_dir, self.format, self.seed = Path(out_dir), format, seed
        self.patients_per_bundle, self.block_patients = patients_per_bundle, block_patients
        self.workers, self.total_patients = workers, total_patients
        self.extra = _check_extra(manifest_extra)
        self.overwrite, self.progress = overwrite, progress
        self.transaction_time = _instant(transaction_time)
        self._streams = Streams(seed)
        self._ctx: Any = None
        self._sink: NdjsonSink | BundleSink | None = None
        self._bar: tqdm | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[tuple[Future[Rendered], int]] = deque()
        self._templates: Templates | None = None
        self._counts = dict.fromkeys(RESOURCE_TYPES, 0)
        self._patients = 0
        self._aborted = False
        self.manifest: Manifest | None = None

    def __enter__(self) -> FhirWriter:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self._abort(exc)

    def _open(self) -> None:
        if self.manifest is not None or self._aborted:
            raise MedsynthError(
                f"the FHIR writer for {self.out_dir} is already "
                f"{'aborted' if self._aborted else 'closed'}; start a new one"
            )
        if self._ctx is not None:
            return
        self._ctx = atomic_dir(self.out_dir, overwrite=self.overwrite)
        self._folder: Path = self._ctx.__enter__()
        self._sink = (
            NdjsonSink(self._folder)
            if self.format == "ndjson"
            else BundleSink(self._folder, self.patients_per_bundle, self._streams)
        )
        self._bar = tqdm(
            total=self.total_patients,
            unit=" patients",
            desc="FHIR",
            disable=not self.progress,
            leave=False,
        )

    def write(self, cohort: Cohort) -> None:
        """Append the resources of ``cohort``'s patients (all chunks share one schema)."""
        self._open()
        try:
            t = self._templates_for(cohort)
            prepared = PreparedCohort(cohort, t)
            for a in range(0, prepared.n, self.block_patients):
                b = min(a + self.block_patients, prepared.n)
                inp = prepared.block_input(a, b, self._streams)
                if self.workers == 1:
                    self._consume(render_block(t, inp, self.format), b - a)
                else:
                    self._submit(t, inp)
        except BaseException as exc:
            self._abort(exc)
            raise

    def _templates_for(self, cohort: Cohort) -> Templates:
        if self._templates is None:
            self._templates = Templates.for_schema(cohort.schema)
        elif cohort.schema.sha256 != self._templates.schema.sha256:
            raise DataError(
                f"cohort chunk has schema {cohort.schema.name!r} "
                f"({cohort.schema.sha256[:12]}), but earlier chunks had "
                f"{self._templates.schema.name!r} "
                f"({self._templates.schema.sha256[:12]}); write one schema "
                "per output folder"
            )
        return self._templates

    def _submit(self, t: Templates, inp: BlockInput) -> None:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(t, self.format),
            )
        while len(self._pending) >= 2 * self.workers:
            self._drain_one()
        self._pending.append((self._pool.submit(_render_in_worker, inp), inp.n))

    def _drain_one(self) -> None:
        future, n = self._pending.popleft()
        self._consume(future.result(), n)

    def _consume(self, rendered: Rendered, n: int) -> None:
        assert self._sink is not None and self._bar is not None
        self._sink.add(rendered)
        for rtype, count in rendered.counts.items():
            self._counts[rtype] += count
        self._patients += n
        self._bar.update(n)

    def close(self) -> Manifest:
        """Finish the files, write ``manifest.json`` and move the folder into place."""
        if self.manifest is not None:
            return self.manifest
        self._open()
        try:
            while self._pending:
                self._drain_one()
            self._stop_pool()
            if self._templates is None:
                raise DataError(f"no cohort chunk was given for {self.out_dir}; nothing to write")
            assert self._sink is not None
            manifest = self._manifest(tuple(self._sink.finish()))
            (self._folder / MANIFEST_NAME).write_text(
                json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8"
            )
        except BaseException as exc:
            self._abort(exc)
            raise
        self._finish_bar()
        self._ctx.__exit__(None, None, None)
        self._ctx = None
        self.manifest = manifest
        return manifest

    def _manifest(self, output: tuple[OutputFile, ...]) -> Manifest:
        from medsynth import __version__

        assert self._templates is not None
        schema = self._templates.schema
        return Manifest(
            self.format,
            self.transaction_time or _instant(_now()),
            output,
            dict(self._counts),
            self._patients,
            schema.name,
            schema.sha256,
            self.seed,
            __version__,
            dict(self.extra),
            self.out_dir,
        )

    def _abort(self, exc: BaseException) -> None:
        """Remove everything written; the writer cannot be used afterwards."""
        self._pending.clear()
        self._stop_pool(cancel=True)
        if self._sink is not None:
            self._sink.close()
        self._finish_bar()
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(type(exc), exc, exc.__traceback__)
        self._aborted = self.manifest is None

    def _stop_pool(self, cancel: bool = False) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=True, cancel_futures=cancel)

    def _finish_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def write_fhir(
    cohort_or_chunks: Cohort | Iterable[Cohort],
    out_dir: str | Path,
    *,
    format: Layout = "ndjson",
    random_state: int = 0,
    patients_per_bundle: int = 100,
    manifest_extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    transaction_time: dt.datetime | None = None,
    workers: int = 1,
) -> Manifest:
    """Write a cohort, or an iterable of cohort chunks, as FHIR R4 into ``out_dir``.

    Args:
        format: ``"ndjson"`` (one ``<Type>.ndjson`` per resource type) or ``"bundle"``
            (transaction Bundles of ``patients_per_bundle`` patients).
        random_state: seeds every invented value (ids, names, start dates, birth days); the
            manifest records it as ``seed``.
        manifest_extra: a JSON object stored as ``extension.medsynth.extra`` in the manifest
            (for example the model hash and epsilon of a synthetic release).
        transaction_time: the manifest's ``transactionTime``; default: now (UTC).
        workers: worker processes building and serialising resources (1: in this process).

    Returns:
        The :class:`Manifest` written to ``out_dir/manifest.json``.
    """
    if isinstance(cohort_or_chunks, Cohort):
        chunks: Iterable[Cohort] = [cohort_or_chunks]
        total: int | None = cohort_or_chunks.n_patients
    else:
        chunks, total = cohort_or_chunks, None
    writer = FhirWriter(
        out_dir,
        format=format,
        seed=random_state,
        patients_per_bundle=patients_per_bundle,
        manifest_extra=manifest_extra,
        overwrite=overwrite,
        progress=progress,
        transaction_time=transaction_time,
        workers=workers,
        total_patients=total,
    )
    with writer:
        for chunk in chunks:
            writer.write(chunk)
    assert writer.manifest is not None
    return writer.manifest


def _check_extra(extra: dict[str, Any] | None) -> dict[str, Any]:
    extra = dict(extra or {})
    try:
        json.dumps(extra, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise MedsynthError(f"manifest_extra is not JSON-serialisable: {exc}") from None
    return extra


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _instant(when: dt.datetime | None) -> str | None:
    """A FHIR instant in UTC with seconds; naive datetimes are refused."""
    if when is None:
        return None
    if when.tzinfo is None:
        raise MedsynthError(
            f"transaction_time {when.isoformat()} has no timezone; pass an "
            "aware datetime (e.g. with tzinfo=datetime.timezone.utc)"
        )
    return when.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat()
