"""Membership inference: can an attacker tell the training patients from other patients?

Threat model: the attacker holds the released synthetic cohort and the complete record of a
person (static attributes, diagnoses and time series), and wants to know whether that person
was in the training data. The audit plays the attacker on real patients whose answer it knows:
members are training patients, non-members are holdout patients the generator never saw. Each
attack gives every target a score (higher = "member"); the figures are the ROC AUC (0.5 is
chance) with a bootstrap interval, the TPR at 1 % and 10 % FPR (the low-FPR regime Carlini et
al. 2022 argue matters), the share of members flagged beyond chance at 1 % FPR with an exact
interval (``tpr_excess_at_fpr_1pct``, which also counts the noise of the threshold) and an
empirical epsilon lower bound (:mod:`medsynth.audit.stats`), set beside the accounted epsilon
of the model's privacy record when the artifact is given.

* :class:`DcrMembershipAttack`: the score is minus the distance from the target to its closest
  synthetic record, the classic distance-to-closest-record test (Hilprecht, Härterich and
  Bernau 2019, "Monte Carlo and reconstruction membership inference attacks against generative
  models"; Stadler, Oprisanu and Troncoso 2022, "Synthetic data - anonymisation groundhog day").
* :class:`DensityRatioMembershipAttack`: the attacker also holds patients from the same
  population (here: part of the holdout) and scores a target by how much more likely it is
  under the synthetic data than under that reference, the density ratio of DOMIAS (van Breugel
  et al. 2023, "Membership inference attacks against synthetic data through overfitting
  detection"). The ratio is estimated by a classifier trained to tell synthetic from reference
  records (an extremely randomised forest: its leaves are local enough to notice records that
  the generator reproduced). Holdout targets are scored by a classifier that did not see them
  (two-fold cross-fitting), so the non-members are never part of the reference.
* :class:`LikelihoodMembershipAttack`: with the model artifact, a target's score is the model's
  own log-likelihood of the record (Yeom et al. 2018, "Privacy risk in machine learning");
  NOT RUN without the artifact.

Targets are the whole record, time series included (:mod:`medsynth.audit.features`); results
hold only aggregates (rates, ROC points, score histograms), never a record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsynth.audit.base import AuditInputs, AuditResult, Evaluator, not_run
from medsynth.audit.features import (
    cohort_problems,
    histogram,
    nearest,
    patient_features,
    same_records,
    sample_rows,
)
from medsynth.audit.stats import (
    auc_estimate,
    empirical_epsilon,
    members_beyond_chance,
    roc_curve,
    tpr_at_fpr,
)
from medsynth.errors import DataError

__all__ = [
    "DcrMembershipAttack",
    "DensityRatioMembershipAttack",
    "LikelihoodMembershipAttack",
    "membership_figures",
]

MIN_TARGETS = 10  # members and non-members each
DEFAULT_DELTA = 1e-5
ROC_GRID = np.linspace(0.0, 1.0, 101)
HISTOGRAM_BINS = 20


def accounted_privacy(model_dir: Path | None) -> tuple[float | None, float | None]:
    """``(epsilon, delta)`` of the artifact's checked privacy record, or ``(None, None)`` without
    one (or for a model trained without privacy)."""
    if model_dir is None or not (Path(model_dir) / "privacy.json").is_file():
        return None, None
    from medsynth.models.artifact import read_privacy_document

    record = read_privacy_document(model_dir)

    def number(key: str) -> float | None:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    return number("epsilon"), number("delta")


def membership_figures(
    members: np.ndarray,
    non_members: np.ndarray,
    *,
    delta: float,
    confidence: float,
    n_bootstrap: int,
    random_state: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The headline figures and plot data of a membership attack from its two score arrays."""
    eps, rates = empirical_epsilon(
        members, non_members, delta=delta, confidence=confidence, random_state=random_state
    )
    metrics: dict[str, Any] = {
        "auc": auc_estimate(
            members,
            non_members,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            random_state=random_state,
        ),
        "tpr_at_fpr_1pct": tpr_at_fpr(members, non_members, 0.01, confidence),
        "tpr_at_fpr_10pct": tpr_at_fpr(members, non_members, 0.10, confidence),
        "epsilon_empirical": eps,
        "epsilon_lower_bound": eps.ci_low,
        "members": len(members),
        "non_members": len(non_members),
    }
    excess, flagged = members_beyond_chance(members, non_members, 0.01, confidence)
    metrics["tpr_excess_at_fpr_1pct"] = excess
    fpr, tpr, _ = roc_curve(members, non_members)
    grid_tpr = [float(tpr[fpr <= g + 1e-12].max()) for g in ROC_GRID]
    pooled = np.concatenate([members, non_members])
    lo, hi = (float(x) for x in np.quantile(pooled, [0.01, 0.99]))  # no single record's score
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, HISTOGRAM_BINS + 1)
    details = {
        "roc": {"fpr": ROC_GRID.round(2).tolist(), "tpr": grid_tpr},
        "score_histogram": {
            "edges": edges.tolist(),
            "members": histogram(members, edges),
            "non_members": histogram(non_members, edges),
        },
        "epsilon_test": rates,
        "flagged_at_fpr_1pct": flagged,
    }
    return metrics, details


class _MembershipAttack(Evaluator):
    """Shared machinery: target selection, figures, the accounted epsilon, degenerate inputs."""

    kind = "privacy"
    score_name = ""

    def __init__(
        self,
        inputs: AuditInputs,
        *,
        max_targets: int | None = 5000,
        n_bootstrap: int = 200,
        confidence: float = 0.95,
        delta: float | None = None,
    ) -> None:
        super().__init__(inputs)
        self.max_targets = max_targets
        self.n_bootstrap = n_bootstrap
        self.confidence = confidence
        self.delta = delta

    def _parameters(self) -> dict[str, Any]:
        return {
            "seed": self.inputs.random_state,
            "max_targets": self.max_targets,
            "n_bootstrap": self.n_bootstrap,
            "confidence": self.confidence,
            "score": self.score_name,
        }

    def _degenerate(self) -> str | None:
        inp = self.inputs
        sizes = {
            "train": inp.train.n_patients,
            "holdout": inp.holdout.n_patients,
            "synthetic": inp.synthetic.n_patients,
        }
        minimum = {"train": MIN_TARGETS, "holdout": MIN_TARGETS, "synthetic": 1}
        reason = cohort_problems(sizes, minimum)
        if reason is None and same_records(
            patient_features(inp.synthetic), patient_features(inp.holdout)
        ):
            reason = (
                "the synthetic cohort holds exactly the holdout patients; the holdout must be "
                "patients the generator never saw, so it cannot serve as the control"
            )
        return reason

    def _scores(self, members: np.ndarray, non_members: np.ndarray) -> tuple[Any, Any]:
        raise NotImplementedError  # pragma: no cover

    def _run(self) -> AuditResult:
        params = self._parameters()
        reason = self._degenerate()
        if reason:
            return not_run(self.name, self.kind, reason, params)
        rng = np.random.default_rng(self.inputs.random_state)
        members = sample_rows(self.inputs.train.n_patients, self.max_targets, rng)
        non_members = sample_rows(self.inputs.holdout.n_patients, self.max_targets, rng)
        scored = self._scores(members, non_members)
        if isinstance(scored, str):
            return not_run(self.name, self.kind, scored, params)
        pos, neg = scored
        accounted_eps, accounted_delta = accounted_privacy(self.inputs.model_dir)
        delta = self.delta if self.delta is not None else (accounted_delta or DEFAULT_DELTA)
        params["delta"] = delta
        metrics, details = membership_figures(
            np.asarray(pos, dtype="float64"),
            np.asarray(neg, dtype="float64"),
            delta=delta,
            confidence=self.confidence,
            n_bootstrap=self.n_bootstrap,
            random_state=self.inputs.random_state,
        )
        metrics["epsilon_accounted"] = accounted_eps
        return AuditResult(
            name=self.name,
            kind=self.kind,
            status="ok",
            metrics=metrics,
            baseline={
                "auc": 0.5,
                "tpr_at_fpr_1pct": 0.01,
                "tpr_at_fpr_10pct": 0.10,
                "tpr_excess_at_fpr_1pct": 0.0,
                "epsilon_lower_bound": 0.0,
            },
            parameters=params,
            details=details,
        )


class DcrMembershipAttack(_MembershipAttack):
    """Membership inference by the distance from a person's record to the closest synthetic
    record: training patients the generator copied or nearly copied lie closer than others.

    Args:
        inputs: the audit inputs.
        max_targets: at most this many members and this many non-members are scored (drawn
            with the audit's seed); ``None`` scores everyone.
        n_bootstrap: bootstrap resamples of the AUC interval.
        confidence: nominal coverage of every interval.
        delta: the delta of the empirical epsilon bound; defaults to the artifact's delta,
            else 1e-5.

    Example:
        >>> DcrMembershipAttack(inputs).evaluate().result().metrics["auc"]  # doctest: +SKIP
    """

    name = "mia_dcr"
    score_name = "minus the distance to the closest synthetic record"

    def _scores(self, members: np.ndarray, non_members: np.ndarray) -> tuple[Any, Any]:
        syn = patient_features(self.inputs.synthetic).values
        d_m, _ = nearest(syn, patient_features(self.inputs.train).values[members])
        d_n, _ = nearest(syn, patient_features(self.inputs.holdout).values[non_members])
        return -d_m[:, 0], -d_n[:, 0]


class DensityRatioMembershipAttack(_MembershipAttack):
    """Membership inference by a classifier that contrasts the synthetic data with reference
    patients of the same population: records the synthetic data over-represent score high.

    Args:
        inputs: the audit inputs.
        n_estimators: trees of the extremely randomised forest.
        folds: cross-fitting folds over the holdout (each fold is scored by a classifier whose
            reference is the other folds).
        max_targets, n_bootstrap, confidence, delta: as for :class:`DcrMembershipAttack`.
    """

    name = "mia_density"
    score_name = "classifier probability of 'synthetic' against a holdout reference"

    def __init__(
        self,
        inputs: AuditInputs,
        *,
        n_estimators: int = 50,
        folds: int = 2,
        max_targets: int | None = 5000,
        n_bootstrap: int = 200,
        confidence: float = 0.95,
        delta: float | None = None,
    ) -> None:
        super().__init__(
            inputs,
            max_targets=max_targets,
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            delta=delta,
        )
        self.n_estimators = n_estimators
        self.folds = folds

    def _parameters(self) -> dict[str, Any]:
        return {
            **super()._parameters(),
            "n_estimators": self.n_estimators,
            "folds": self.folds,
            "classifier": "sklearn ExtraTreesClassifier, balanced classes",
        }

    def _scores(self, members: np.ndarray, non_members: np.ndarray) -> tuple[Any, Any] | str:
        from sklearn.ensemble import ExtraTreesClassifier

        if self.folds < 2:
            raise DataError(f"mia_density parameter 'folds' must be >= 2, got {self.folds}")
        syn = patient_features(self.inputs.synthetic).values
        hold = patient_features(self.inputs.holdout).values
        train = patient_features(self.inputs.train).values[members]
        rng = np.random.default_rng(self.inputs.random_state)
        fold_of_hold = rng.permutation(np.arange(len(hold)) % self.folds)
        fold_of_member = rng.permutation(np.arange(len(train)) % self.folds)
        pos, neg = np.zeros(len(train)), np.zeros(len(hold))
        for f in range(self.folds):
            ref = hold[fold_of_hold != f]
            clf = ExtraTreesClassifier(
                n_estimators=self.n_estimators,
                class_weight="balanced",
                random_state=self.inputs.random_state + f,
                n_jobs=1,
            )
            clf.fit(np.vstack([syn, ref]), np.r_[np.ones(len(syn)), np.zeros(len(ref))])
            pos[fold_of_member == f] = clf.predict_proba(train[fold_of_member == f])[:, 1]
            neg[fold_of_hold == f] = clf.predict_proba(hold[fold_of_hold == f])[:, 1]
        return pos, neg[np.isin(np.arange(len(hold)), non_members)]


class LikelihoodMembershipAttack(_MembershipAttack):
    """Membership inference by the model's own log-likelihood of a person's record: a model
    that memorised its training patients gives them a higher likelihood than other patients.

    Needs the model artifact (``AuditInputs.model_dir``); NOT RUN without it.

    Args:
        inputs: the audit inputs, with ``model_dir``.
        max_targets, n_bootstrap, confidence, delta: as for :class:`DcrMembershipAttack`.
    """

    name = "mia_likelihood"
    score_name = "the model's log-likelihood of the record"

    def _degenerate(self) -> str | None:
        if self.inputs.model_dir is None:
            return "no model artifact was given (the likelihood attack scores with the model)"
        return super()._degenerate()

    def _scores(self, members: np.ndarray, non_members: np.ndarray) -> tuple[Any, Any] | str:
        from medsynth.models.artifact import load_model

        model = load_model(self.inputs.model_dir)  # type: ignore[arg-type]
        if model.schema.sha256 != self.inputs.schema.sha256:
            return (
                f"the model in {self.inputs.model_dir} was trained for dataset schema "
                f"{model.schema.name!r}, not the audit's {self.inputs.schema.name!r}"
            )
        train, hold = self.inputs.train, self.inputs.holdout
        pos = model.log_likelihood(train.subset(np.asarray(train.patient_ids)[members]))
        neg = model.log_likelihood(hold.subset(np.asarray(hold.patient_ids)[non_members]))
        if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
            return "the model gave a non-finite log-likelihood to some records"
        return pos, neg
