"""Re-identification: singling out, linkability and copies of real records.

Each attack runs twice: on training patients (whose records the generator saw) and on holdout
patients (the control, records it never saw), and the risk is the difference of the two success
rates, with an interval (:mod:`medsynth.audit.stats`). What succeeds on the control as often as
on the training patients is what the synthetic data say about the population, not about a
person. Where the sizes of the two real cohorts would bias the comparison (counting how many
real records a predicate matches, or which cohort is nearer), both are cut to the same number of
patients, drawn with the audit's seed. Records are compared as wholes, time series included
(:mod:`medsynth.audit.features`). These are the three criteria of the Article 29 Working Party's
opinion on anonymisation techniques (2014: singling out, linkability, inference); the shape of
the measurement (an attack on the released data, against a control set) follows Giomi et al.
2022 ("A unified framework for quantifying privacy risk in synthetic data") and Stadler,
Oprisanu and Troncoso 2022; the predicate and linking procedures below are this module's own.

* :class:`SinglingOut`: the attacker writes predicates from distinct synthetic records: a
  conjunction of a record's public levels (attribute values and bands, diagnoses, channel-mean
  bins), taken in random order until it holds for that synthetic record alone, betting that it
  isolates one real patient too. Success: the predicate is true for exactly one patient.
* :class:`Linkability`: the attacker holds two partial views of the same person (by default
  the static attributes in one, diagnoses and time series in the other) and links them when
  the nearest synthetic neighbours of the two views coincide.
* :class:`RecordMatches`: the share of synthetic records that are exact copies, or near copies
  (closer than the ``near_quantile`` of real-to-real closest distances), of a training record,
  beside the same share for holdout records; and the exact copies of *distinctive* records
  (whose content occurs once among the training and holdout records together) beyond what
  chance puts on the training side (:func:`medsynth.audit.stats.copies_beyond_chance`). A
  sparse record (no events, common attributes) is shared by many real patients and is matched
  by chance as often as not; a distinctive one that reappears verbatim, on the training side
  only, more often than a coin allows, was copied.
* :class:`DcrShare`: the share of synthetic records whose closest real record is a training
  rather than a holdout patient; 0.5 when the generator did not favour its training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medsynth.audit.base import AuditInputs, AuditResult, Evaluator, not_run
from medsynth.audit.features import (
    cohort_problems,
    does_not_apply,
    histogram,
    nearest,
    patient_features,
    row_keys,
    same_records,
    sample_rows,
    split_blocks,
)
from medsynth.audit.fidelity import patient_levels
from medsynth.audit.stats import (
    copies_beyond_chance,
    difference_estimate,
    proportion_estimate,
)
from medsynth.errors import DataError

__all__ = ["DcrShare", "Linkability", "RecordMatches", "SinglingOut", "distinctive_matches"]

MIN_TARGETS = 10
HISTOGRAM_BINS = 20
LEVEL_BINS = 10


class _ControlledAttack(Evaluator):
    """Shared parameters and checks of the attacks measured against the holdout control."""

    kind = "privacy"
    min_synthetic = 1

    def __init__(
        self, inputs: AuditInputs, *, max_targets: int | None = 5000, confidence: float = 0.95
    ) -> None:
        super().__init__(inputs)
        self.max_targets = max_targets
        self.confidence = confidence

    def _parameters(self) -> dict[str, Any]:
        return {
            "seed": self.inputs.random_state,
            "max_targets": self.max_targets,
            "confidence": self.confidence,
        }

    def _degenerate(self) -> str | None:
        inp = self.inputs
        reason = cohort_problems(
            {
                "train": inp.train.n_patients,
                "holdout": inp.holdout.n_patients,
                "synthetic": inp.synthetic.n_patients,
            },
            {"train": MIN_TARGETS, "holdout": MIN_TARGETS, "synthetic": self.min_synthetic},
        )
        if reason is None and same_records(
            patient_features(inp.synthetic), patient_features(inp.holdout)
        ):
            reason = (
                "the synthetic cohort holds exactly the holdout patients; the holdout must be "
                "patients the generator never saw, so it cannot serve as the control"
            )
        return reason

    def _equal_samples(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the train and holdout cohorts, the same number from each."""
        m = min(self.inputs.train.n_patients, self.inputs.holdout.n_patients)
        if self.max_targets is not None:
            m = min(m, int(self.max_targets))
        return (
            sample_rows(self.inputs.train.n_patients, m, rng),
            sample_rows(self.inputs.holdout.n_patients, m, rng),
        )

    def _result(
        self,
        metrics: dict[str, Any],
        baseline: dict[str, Any],
        params: dict[str, Any],
        details: dict[str, Any],
    ) -> AuditResult:
        return AuditResult(
            name=self.name,
            kind=self.kind,
            status="ok",
            metrics=metrics,
            baseline=baseline,
            parameters=params,
            details=details,
        )


def _level_matrix(cohort: Any) -> np.ndarray:
    levels = patient_levels(cohort, LEVEL_BINS)
    return np.stack([b.codes for b in levels.values()], axis=1).astype(np.int64)


def _distance_edges(*arrays: np.ndarray) -> np.ndarray:
    pooled = np.concatenate([a[np.isfinite(a)] for a in arrays])
    hi = float(np.quantile(pooled, 0.99)) if len(pooled) else 1.0
    return np.linspace(0.0, hi if hi > 0 else 1.0, HISTOGRAM_BINS + 1)


def _singling_predicate(
    syn: np.ndarray, record: np.ndarray, order: np.ndarray
) -> np.ndarray | None:
    """The shortest prefix of ``order`` whose equalities with ``record`` hold for exactly one
    synthetic row (the record itself), or None when no prefix does."""
    match = np.ones(len(syn), dtype=bool)
    for i, col in enumerate(order):
        match &= syn[:, col] == record[col]
        if int(match.sum()) == 1:
            return order[: i + 1]
    return None


class SinglingOut(_ControlledAttack):
    """Predicates built from synthetic records that hold for exactly one real patient, on
    training patients against holdout patients of the same number.

    Args:
        inputs: the audit inputs.
        n_predicates: how many synthetic records (drawn without replacement, so at most all
            of them) the attacker writes a predicate from. Each record gives one predicate at
            most: drawing a record twice would count the same bet twice, and on sparse
            records, where few are unique, that made the interval far too narrow.
        max_columns: most variables per predicate (default: no limit). Variables are
            attribute values and bands, diagnoses and channel-mean bins over the schema
            bounds; a predicate takes them in random order until it singles out its
            synthetic record.
        max_targets: at most this many training and this many holdout patients.
        confidence: nominal coverage of the intervals.
    """

    name = "singling_out"
    min_synthetic = 2

    def __init__(
        self,
        inputs: AuditInputs,
        *,
        n_predicates: int = 500,
        max_columns: int | None = None,
        max_targets: int | None = 5000,
        confidence: float = 0.95,
    ) -> None:
        super().__init__(inputs, max_targets=max_targets, confidence=confidence)
        self.n_predicates = n_predicates
        self.max_columns = max_columns

    def _run(self) -> AuditResult:
        params = {
            **self._parameters(),
            "n_predicates": self.n_predicates,
            "max_columns": self.max_columns,
        }
        reason = self._degenerate()
        if reason:
            return not_run(self.name, self.kind, reason, params)
        rng = np.random.default_rng(self.inputs.random_state)
        rows_t, rows_h = self._equal_samples(rng)
        syn = _level_matrix(self.inputs.synthetic)
        real_t = _level_matrix(self.inputs.train)[rows_t]
        real_h = _level_matrix(self.inputs.holdout)[rows_h]
        if syn.shape[1] == 0:
            return does_not_apply(
                self.name, self.kind, "the dataset schema gives no variable to match", params
            )
        limit = syn.shape[1] if self.max_columns is None else min(self.max_columns, syn.shape[1])
        hits_t = hits_h = written = 0
        sizes: list[int] = []
        for row in rng.permutation(len(syn))[: int(self.n_predicates)]:
            record = syn[row]  # each synthetic record once: repeats would not be new trials
            cols = _singling_predicate(syn, record, rng.permutation(syn.shape[1])[:limit])
            if cols is None:
                continue  # the record has a twin on every variable tried: no predicate
            written += 1
            sizes.append(len(cols))
            hits_t += int((real_t[:, cols] == record[cols]).all(axis=1).sum() == 1)
            hits_h += int((real_h[:, cols] == record[cols]).all(axis=1).sum() == 1)
        params["predicates_written"] = written
        if written == 0:
            return not_run(
                self.name,
                self.kind,
                "no predicate singles out a synthetic record (every record tried has a twin)",
                params,
            )
        success_t = proportion_estimate(hits_t, written, self.confidence)
        success_h = proportion_estimate(hits_h, written, self.confidence)
        return self._result(
            {
                "risk": difference_estimate(hits_t, written, hits_h, written, self.confidence),
                "success_train": success_t,
                "success_control": success_h,
                "predicates": written,
                "targets": len(rows_t),
            },
            {"risk": 0.0, "success_train": success_h.value},
            params,
            {
                "variables": syn.shape[1],
                "variables_per_predicate": {
                    "mean": float(np.mean(sizes)),
                    "max": int(np.max(sizes)),
                },
            },
        )


class Linkability(_ControlledAttack):
    """Linking two partial views of a patient through their nearest synthetic records, on
    training patients against holdout patients.

    Args:
        inputs: the audit inputs.
        view_a: feature blocks of the first view (attribute names, ``"conditions"``, channel
            names); the second view is every other block. Default: the static attributes.
        n_neighbors: the views link when their ``n_neighbors`` nearest synthetic records share
            one.
        max_targets, confidence: as for :class:`SinglingOut`.
    """

    name = "linkability"

    def __init__(
        self,
        inputs: AuditInputs,
        *,
        view_a: Sequence[str] | None = None,
        n_neighbors: int = 1,
        max_targets: int | None = 5000,
        confidence: float = 0.95,
    ) -> None:
        super().__init__(inputs, max_targets=max_targets, confidence=confidence)
        self.view_a = view_a
        self.n_neighbors = n_neighbors

    def _no_views(self, view_a: list[str]) -> str:
        """Why one of the two views is empty on this schema."""
        name = self.inputs.schema.name
        if self.view_a is None and not view_a:
            return (
                f"dataset schema {name!r} has no patient attribute, so the first view (the "
                "static attributes) is empty; to link other parts of a record, give "
                "linkability a 'view_a' such as [\"conditions\"]"
            )
        if self.view_a is None:
            return (
                f"dataset schema {name!r} has nothing but patient attributes (no diagnosis, no "
                "measurement), so the second view is empty"
            )
        if not view_a:
            return f"view_a {list(self.view_a)} has no value in dataset schema {name!r}"
        return (
            f"view_a {list(self.view_a)} takes every part of a record in dataset schema "
            f"{name!r}, so the second view is empty"
        )

    def _links(self, targets: np.ndarray, syn: np.ndarray, a: np.ndarray, b: np.ndarray) -> int:
        _, ia = nearest(syn[:, a], targets[:, a], self.n_neighbors)
        _, ib = nearest(syn[:, b], targets[:, b], self.n_neighbors)
        return int(sum(bool(np.intersect1d(x, y).size) for x, y in zip(ia, ib, strict=True)))

    def _run(self) -> AuditResult:
        params = {**self._parameters(), "n_neighbors": self.n_neighbors}
        reason = self._degenerate()
        if reason:
            return not_run(self.name, self.kind, reason, params)
        if self.n_neighbors < 1:
            raise DataError(
                f"linkability parameter 'n_neighbors' must be >= 1, got {self.n_neighbors}"
            )
        fs = patient_features(self.inputs.synthetic)
        view_a, view_b = split_blocks(fs, self.view_a)
        params.update(view_a=view_a, view_b=view_b)
        if not view_a or not view_b:
            return does_not_apply(self.name, self.kind, self._no_views(view_a), params)
        a, b = fs.columns(view_a), fs.columns(view_b)
        rng = np.random.default_rng(self.inputs.random_state)
        rows_t = sample_rows(self.inputs.train.n_patients, self.max_targets, rng)
        rows_h = sample_rows(self.inputs.holdout.n_patients, self.max_targets, rng)
        t = patient_features(self.inputs.train).values[rows_t]
        h = patient_features(self.inputs.holdout).values[rows_h]
        k_t, k_h = self._links(t, fs.values, a, b), self._links(h, fs.values, a, b)
        success_t = proportion_estimate(k_t, len(t), self.confidence)
        success_h = proportion_estimate(k_h, len(h), self.confidence)
        return self._result(
            {
                "risk": difference_estimate(k_t, len(t), k_h, len(h), self.confidence),
                "success_train": success_t,
                "success_control": success_h,
                "targets_train": len(t),
                "targets_control": len(h),
            },
            {"risk": 0.0, "success_train": success_h.value},
            params,
            {},
        )


class _DistanceAttack(_ControlledAttack):
    """Closest distances of every synthetic record to equal-size train and holdout samples."""

    def _distances(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.inputs.random_state)
        rows_t, rows_h = self._equal_samples(rng)
        syn = patient_features(self.inputs.synthetic).values
        t = patient_features(self.inputs.train).values[rows_t]
        h = patient_features(self.inputs.holdout).values[rows_h]
        d_ref, _ = nearest(t, h)  # real-to-real: each holdout patient to the train sample
        d_t, _ = nearest(t, syn)
        d_h, _ = nearest(h, syn)
        keys_t, keys_h = set(row_keys(t)), set(row_keys(h))
        keys_s = row_keys(syn)
        return {
            "train": d_t[:, 0],
            "holdout": d_h[:, 0],
            "real": d_ref[:, 0],
            "exact_train": np.array([x in keys_t for x in keys_s], dtype=bool),
            "exact_holdout": np.array([x in keys_h for x in keys_s], dtype=bool),
            "targets": np.array([len(rows_t)]),
        }


def distinctive_matches(
    synthetic: np.ndarray, train: np.ndarray, holdout: np.ndarray
) -> dict[str, int]:
    """Distinct synthetic records equal to a real record, by how often that content occurs
    among the real records (``row_keys`` of each cohort's features).

    Returns:
        ``train`` / ``holdout``: distinct synthetic records equal to a *distinctive* real
        record, one whose content occurs exactly once among the training and holdout records
        together, on the training / holdout side; ``common``: distinct synthetic records equal
        to a content two or more real records share; ``synthetic_equal_to_train``: synthetic
        records (duplicates counted) equal to some training record.
    """
    from collections import Counter

    real = Counter(train.tolist()) + Counter(holdout.tolist())
    in_train = set(train.tolist())
    distinct = set(synthetic.tolist())
    once = [key for key in distinct if real[key] == 1]
    return {
        "train": sum(key in in_train for key in once),
        "holdout": sum(key not in in_train for key in once),
        "common": sum(real[key] > 1 for key in distinct),
        "synthetic_equal_to_train": int(sum(key in in_train for key in synthetic.tolist())),
    }


class RecordMatches(_DistanceAttack):
    """Exact and near-duplicate copies of real records among the synthetic records, training
    against holdout (whole records, time series included), and the exact copies of distinctive
    training records beyond chance (``distinctive_copies``: training and holdout patients up
    to ``max_targets`` each, not cut to equal numbers; the chance of the training side is the
    training share of those real records).

    Args:
        inputs: the audit inputs.
        near_quantile: a synthetic record is a near copy when it lies closer to a real record
            than this quantile of the closest distances between two real patients (holdout to
            training).
        max_targets, confidence: as for :class:`SinglingOut`.
    """

    name = "record_matches"

    def __init__(
        self,
        inputs: AuditInputs,
        *,
        near_quantile: float = 0.01,
        max_targets: int | None = 5000,
        confidence: float = 0.95,
    ) -> None:
        super().__init__(inputs, max_targets=max_targets, confidence=confidence)
        self.near_quantile = near_quantile

    def _run(self) -> AuditResult:
        params = {**self._parameters(), "near_quantile": self.near_quantile}
        reason = self._degenerate()
        if reason:
            return not_run(self.name, self.kind, reason, params)
        if not 0.0 < self.near_quantile < 1.0:
            raise DataError(
                "record_matches parameter 'near_quantile' must be in (0, 1), "
                f"got {self.near_quantile}"
            )
        d = self._distances()
        tau = float(np.quantile(d["real"], self.near_quantile))
        n = len(d["train"])
        exact_t, exact_h = int(d["exact_train"].sum()), int(d["exact_holdout"].sum())
        near_t = int(((d["train"] <= tau) | d["exact_train"]).sum())
        near_h = int(((d["holdout"] <= tau) | d["exact_holdout"]).sum())
        params["near_distance"] = tau
        edges = _distance_edges(d["train"], d["holdout"], d["real"])
        rng = np.random.default_rng(self.inputs.random_state)
        rows_t = sample_rows(self.inputs.train.n_patients, self.max_targets, rng)
        rows_h = sample_rows(self.inputs.holdout.n_patients, self.max_targets, rng)
        p_train = len(rows_t) / (len(rows_t) + len(rows_h))
        found = distinctive_matches(
            row_keys(patient_features(self.inputs.synthetic).values),
            row_keys(patient_features(self.inputs.train).values[rows_t]),
            row_keys(patient_features(self.inputs.holdout).values[rows_h]),
        )
        copies = copies_beyond_chance(found["train"], found["holdout"], p_train, self.confidence)
        return self._result(
            {
                "exact_match_rate": proportion_estimate(exact_t, n, self.confidence),
                "near_match_rate": proportion_estimate(near_t, n, self.confidence),
                "risk": difference_estimate(near_t, n, near_h, n, self.confidence),
                "exact_matches": exact_t,
                "synthetic_records": n,
                "distinctive_copies": copies,
                "distinctive_matches": found["train"],
            },
            {
                "exact_match_rate": exact_h / n,
                "near_match_rate": near_h / n,
                "risk": 0.0,
                "exact_matches": exact_h,
                "distinctive_copies": 0.0,
                "distinctive_matches": found["holdout"] * p_train / (1 - p_train),
            },
            params,
            {
                "distinctive": {
                    "matches_train": found["train"],
                    "matches_holdout": found["holdout"],
                    "matches_common": found["common"],
                    "training_share": p_train,
                    "synthetic_equal_to_train": found["synthetic_equal_to_train"],
                },
                "distance_histogram": {
                    "edges": edges.tolist(),
                    "synthetic_to_train": histogram(d["train"], edges),
                    "synthetic_to_holdout": histogram(d["holdout"], edges),
                    "holdout_to_train": histogram(d["real"], edges),
                },
                "targets": int(d["targets"][0]),
            },
        )


class DcrShare(_DistanceAttack):
    """Distance to closest record: the share of synthetic records nearer to a training patient
    than to any holdout patient (equal-size samples; 0.5 expected), and the median distance
    from synthetic to training records beside the same for holdout records.

    Args:
        inputs: the audit inputs.
        max_targets, confidence: as for :class:`SinglingOut`.
    """

    name = "dcr_share"

    def _run(self) -> AuditResult:
        params = self._parameters()
        reason = self._degenerate()
        if reason:
            return not_run(self.name, self.kind, reason, params)
        d = self._distances()
        n = len(d["train"])
        closer = float((d["train"] < d["holdout"]).sum() + 0.5 * (d["train"] == d["holdout"]).sum())
        share = proportion_estimate(closer, n, self.confidence)
        edges = _distance_edges(d["train"], d["holdout"], d["real"])
        return self._result(
            {
                "share": share,
                "dcr_train_median": float(np.median(d["train"])),
                "dcr_train_p05": float(np.quantile(d["train"], 0.05)),
                "synthetic_records": n,
            },
            {
                "share": 0.5,
                "dcr_train_median": float(np.median(d["real"])),
                "dcr_train_p05": float(np.quantile(d["real"], 0.05)),
            },
            params,
            {
                "distance_histogram": {
                    "edges": edges.tolist(),
                    "synthetic_to_train": histogram(d["train"], edges),
                    "synthetic_to_holdout": histogram(d["holdout"], edges),
                    "holdout_to_train": histogram(d["real"], edges),
                },
                "targets": int(d["targets"][0]),
            },
        )
