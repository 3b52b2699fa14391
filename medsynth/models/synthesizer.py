"""The generator behind the estimator contract: ``fit(cohort) -> self``, ``sample(n)``.

:class:`DpPatientSynthesizer` stores its parameters in ``__init__`` (privacy arguments
keyword-only), trains with :func:`medsynth.privacy.training.train` in :meth:`fit` (which charges
the ledger and writes the artifact), and samples from the loaded artifact. Learned state ends in
``_``; using it before ``fit`` raises :class:`NotFittedError`.

Example:
    >>> synth = DpPatientSynthesizer(epsilon=3.0).fit(cohort, out="model/")  # doctest: +SKIP
    >>> women = synth.sample(1000, conditions={"sex": "female"}, random_state=1)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.cohort import Cohort
from medsynth.errors import NotFittedError
from medsynth.models.artifact import PatientModel, load_model
from medsynth.models.plan import TrainConfig

__all__ = ["DpPatientSynthesizer"]


class DpPatientSynthesizer:
    """Patient-level DP generator of whole patients (attributes, conditions, time series)."""

    def __init__(
        self,
        *,
        epsilon: float,
        delta: float | None = None,
        config: TrainConfig | None = None,
        ledger: Any = None,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.config = config
        self.ledger = ledger
        self.device = device
        self.random_state = random_state
        self._fitted: PatientModel | None = None

    @property
    def model_(self) -> PatientModel:
        """The loaded model; :class:`NotFittedError` before :meth:`fit`."""
        if self._fitted is None:
            raise NotFittedError("this DpPatientSynthesizer is not fitted; call fit(cohort) first")
        return self._fitted

    def fit(
        self, cohort: Cohort, *, out: str | Path, overwrite: bool = False, progress: bool = False
    ) -> DpPatientSynthesizer:
        """Train under DP-SGD (charged to the ledger first) and load the written artifact."""
        from medsynth.privacy.training import train

        path = train(
            cohort,
            epsilon=self.epsilon,
            delta=self.delta,
            out=out,
            ledger=self.ledger,
            device=self.device,
            seed=self.random_state,
            config=self.config,
            progress=progress,
            overwrite=overwrite,
        )
        self._fitted = load_model(path, device=self.device)
        return self

    @classmethod
    def from_artifact(cls, path: str | Path, *, device: str = "auto") -> DpPatientSynthesizer:
        """A fitted synthesizer from an existing artifact folder."""
        model = load_model(path, device=device)
        synth = cls(epsilon=model.epsilon, delta=model.delta, device=device)
        synth._fitted = model
        return synth

    def sample(
        self,
        n_patients: int,
        *,
        conditions: Mapping[str, Any] | None = None,
        random_state: int | None = None,
        batch_size: int = 512,
    ) -> Cohort:
        """``n_patients`` synthetic patients as one cohort (post-processing: no privacy cost)."""
        from medsynth.generate import generate_cohort

        seed = self.random_state if random_state is None else random_state
        return generate_cohort(
            self.model_, n_patients, seed=seed, conditions=conditions, batch_size=batch_size
        )

    def log_likelihood(self, cohort: Cohort) -> np.ndarray:
        """Per-patient log-likelihood under the fitted model (for membership audits)."""
        return self.model_.log_likelihood(cohort)
