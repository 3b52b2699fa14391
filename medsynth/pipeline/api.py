"""The estimator: ``Synthesizer(...).fit(data).sample(n)``, pandas or FHIR in and out.

:class:`Synthesizer` follows scikit-learn's contract: ``__init__`` stores its parameters (privacy
arguments keyword-only), :meth:`Synthesizer.fit` trains under DP-SGD and returns ``self``,
learned state ends in ``_``, and using it before ``fit`` raises
:class:`~medsynth.errors.NotFittedError`. The privacy ledger is an explicit argument: fitting
charges exactly the ledger the caller named, and nothing is written anywhere else except the
model folder (``out``, or a temporary folder that :meth:`Synthesizer.save` copies).

Example:
    >>> from medsynth import Ledger, Synthesizer, load_schema  # doctest: +SKIP
    >>> from medsynth.simulate import simulate  # doctest: +SKIP
    >>> real = simulate(load_schema("general-adult"), 500, random_state=1)  # doctest: +SKIP
    >>> synth = Synthesizer(epsilon=3.0, ledger=Ledger("ledger.jsonl")).fit(real)  # doctest: +SKIP
    >>> fake = synth.sample(1000, conditions={"sex": "female"})  # doctest: +SKIP
    >>> fake.patients.head()  # a pandas DataFrame  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medsynth.cohort import Cohort
from medsynth.errors import DataError, NotFittedError
from medsynth.fhir.write import Manifest, write_fhir
from medsynth.models.artifact import PatientModel, load_model
from medsynth.models.plan import TrainConfig
from medsynth.privacy.ledger import Ledger
from medsynth.schema import DatasetSchema
from medsynth.sources import open_source

__all__ = ["Synthesizer"]


def as_cohort(
    data: Cohort | pd.DataFrame | str | Path | Sequence[str | Path],
    schema: DatasetSchema | None,
    *,
    events: pd.DataFrame | None = None,
    conditions: pd.DataFrame | None = None,
) -> Cohort:
    """A Cohort from a Cohort, pandas tables (with ``schema``) or paths ingest reads."""
    if isinstance(data, Cohort):
        return data
    if isinstance(data, pd.DataFrame):
        if schema is None:
            raise DataError("pandas tables need schema=: the dataset schema that describes them")
        return Cohort.conform(schema, data, events, conditions)[0]
    if schema is None:
        raise DataError("a FHIR export or cohort folder needs schema=: the dataset schema")
    paths = [data] if isinstance(data, (str, Path)) else list(data)
    return open_source([Path(p) for p in paths], schema, progress=False).cohort


class Synthesizer:
    """A patient-level differentially private generator of whole patient records.

    Args:
        epsilon: the target epsilon of the one DP-SGD run :meth:`fit` makes.
        ledger: the privacy ledger (a :class:`~medsynth.privacy.ledger.Ledger` or its path)
            charged before training; :meth:`fit` refuses to run without one (None is only for
            a synthesizer loaded from an artifact, which is never trained again).
        delta: default ``1 / (10 N)`` (:func:`medsynth.privacy.accounting.default_delta`).
        config: a :class:`~medsynth.models.plan.TrainConfig`; None for the defaults.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        random_state: seeds initialisation, pretraining patients and sampling (never the DP
            noise, which draws fresh operating-system randomness).
    """

    def __init__(
        self,
        *,
        epsilon: float,
        ledger: Ledger | str | Path | None,
        delta: float | None = None,
        config: TrainConfig | None = None,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.epsilon = epsilon
        self.ledger = ledger
        self.delta = delta
        self.config = config
        self.device = device
        self.random_state = random_state
        self._model: PatientModel | None = None

    # -- learned state ---------------------------------------------------------------------
    @property
    def model_(self) -> PatientModel:
        """The fitted model; :class:`NotFittedError` before :meth:`fit`."""
        if self._model is None:
            raise NotFittedError("this Synthesizer is not fitted; call fit(data) first")
        return self._model

    @property
    def model_path_(self) -> Path:
        """The model artifact folder (weights, config, privacy record)."""
        return self.model_.path

    @property
    def epsilon_(self) -> float:
        """The accounted epsilon of the fitted model (at most ``epsilon``)."""
        return self.model_.epsilon

    # -- fitting ---------------------------------------------------------------------------
    def fit(
        self,
        data: Cohort | pd.DataFrame | str | Path | Sequence[str | Path],
        *,
        schema: DatasetSchema | None = None,
        events: pd.DataFrame | None = None,
        conditions: pd.DataFrame | None = None,
        out: str | Path | None = None,
        progress: bool = False,
    ) -> Synthesizer:
        """Train under DP-SGD, charged to the ledger first; returns ``self``.

        Args:
            data: a :class:`Cohort`; a patients DataFrame (with ``events``, ``conditions`` and
                ``schema``); or FHIR files, folders or a cohort folder (with ``schema``).
            out: where to write the model artifact; default a new temporary folder (see
                :meth:`save`).
        """
        from medsynth.pipeline.train import train

        cohort = as_cohort(data, schema, events=events, conditions=conditions)
        target = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="medsynth-"))
        path = train(
            cohort,
            epsilon=self.epsilon,
            delta=self.delta,
            out=target,
            ledger=self.ledger,
            device=self.device,
            random_state=self.random_state,
            config=self.config,
            progress=progress,
            overwrite=out is None,  # the fresh temporary folder exists, empty
            label="medsynth.Synthesizer",
        )
        self._model = load_model(path, device=self.device)
        return self

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> Synthesizer:
        """A fitted synthesizer from a model artifact folder (nothing is charged)."""
        model = load_model(path, device=device)
        synth = cls(epsilon=model.epsilon, ledger=None, delta=model.delta, device=device)
        synth._model = model
        return synth

    def save(self, path: str | Path) -> Path:
        """Copy the model artifact folder to ``path`` (which must not exist)."""
        target = Path(path)
        if target.exists():
            raise DataError(f"{target} exists; choose a new folder for the model")
        shutil.copytree(self.model_path_, target)
        return target

    # -- sampling (post-processing: no privacy cost) --------------------------------------
    def sample(
        self,
        n_patients: int,
        *,
        conditions: Mapping[str, Any] | None = None,
        random_state: int | None = None,
        batch_size: int = 512,
    ) -> Cohort:
        """``n_patients`` synthetic patients as one :class:`Cohort` (``.patients``,
        ``.events``, ``.conditions`` are pandas DataFrames).

        Args:
            conditions: fix attributes or conditions, e.g. ``{"sex": "female"}``.
            random_state: default the synthesizer's ``random_state``.
        """
        from medsynth.pipeline.generate import generate_cohort

        seed = self.random_state if random_state is None else random_state
        return generate_cohort(
            self.model_, n_patients, random_state=seed, conditions=conditions, batch_size=batch_size
        )

    def sample_fhir(
        self,
        n_patients: int,
        out: str | Path,
        *,
        format: str = "ndjson",  # noqa: A002 - the FHIR layout, as on the command line
        conditions: Mapping[str, Any] | None = None,
        random_state: int | None = None,
        overwrite: bool = False,
    ) -> Manifest:
        """Write ``n_patients`` synthetic patients as FHIR R4 (bulk ndjson or Bundles) into
        ``out``; the manifest names the model hash and its epsilon."""
        from medsynth.pipeline.generate import generate, release_info

        seed = self.random_state if random_state is None else random_state
        chunks = generate(self.model_, n_patients, random_state=seed, conditions=conditions)
        return write_fhir(
            chunks,
            out,
            format=format,  # type: ignore[arg-type]
            random_state=seed,
            overwrite=overwrite,
            manifest_extra=release_info(self.model_),
        )

    def log_likelihood(self, data: Cohort) -> np.ndarray:
        """Per-patient log-likelihood under the fitted model (for membership audits)."""
        return self.model_.log_likelihood(data)
