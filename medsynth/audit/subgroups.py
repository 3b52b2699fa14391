"""Subgroup fidelity: does the synthetic cohort serve every sex, age band and race/ethnicity group?

A generator can match the cohort as a whole and still erase a minority: DP-SGD noise falls
hardest on small groups. For each group of patients sharing a sex, an age band (public edges,
e.g. 18-39, 40-64, 65+) or a race or ethnicity category, the evaluator compares the synthetic
cohort to the real training cohort:

* **share ratio** = (group's share of synthetic patients) / (group's share of training patients);
  the group is flagged *under-represented* when even the upper end of the ratio's 95 %
  interval (Clopper-Pearson on the synthetic share) is below the policy's ``min_share_ratio``,
  so that a group is not flagged for the luck of a small synthetic sample;
* **group TVD** = mean TVD (see :mod:`medsynth.audit.fidelity`) over the other attributes'
  marginals and the channel value histograms, computed inside the group; when it exceeds the
  group's baseline (the same figure for the group's holdout patients against its training
  patients: what sampling noise alone gives) by more than ``max_excess_tvd``, the group is
  flagged *distorted* (without a baseline, the figure itself is compared);
* **condition difference** = largest prevalence difference of a condition inside the group;
* **timeline TVDs**: the events-per-patient and gap TVDs of :mod:`medsynth.audit.timeseries`
  inside the group, each beside its holdout baseline (shown, not flagged);
* **AUC** (when a utility target is given): the train-on-synthetic and train-on-real classifiers
  scored on the holdout patients of the group.

Groups with fewer training patients than ``min_group_size`` are shown with a caution and their
flags are counted apart: their figures are mostly sampling noise. The holdout-against-training
figures of each group are the baseline for what noise alone gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from medsynth.audit.base import AuditInputs, AuditResult, Evaluator, not_run
from medsynth.audit.fidelity import MIN_PATIENTS, _max, _mean, bin_counts, marginal_figures, tvd
from medsynth.audit.timeseries import count_edges, event_gaps, events_per_patient, gap_edges
from medsynth.audit.utility import (
    MIN_CLASS,
    Target,
    TargetSpec,
    class_problem,
    fit_model,
    predict_all,
    resolve_target,
)
from medsynth.cohort import PATIENT_ID, Cohort
from medsynth.errors import DataError
from medsynth.schema import DatasetSchema

GROUPED_HOMES = ("Patient.gender", "us-core-race", "us-core-ethnicity")
AGE_HOME = "Patient.birthDate"
DEFAULT_AGE_EDGES = (40.0, 65.0)


@dataclass(frozen=True)
class Group:
    """A subgroup: which attribute, its label, and how to select its patients."""

    attribute: str
    label: str
    value: str | None = None
    lo: float | None = None
    hi: float | None = None

    def mask(self, patients: pd.DataFrame) -> np.ndarray:
        col = patients[self.attribute]
        if self.value is not None:
            return (col.astype("object") == self.value).fillna(False).to_numpy(dtype=bool)
        v = col.to_numpy(dtype="float64", na_value=np.nan)
        lo = -np.inf if self.lo is None else self.lo
        hi = np.inf if self.hi is None else self.hi
        return (v >= lo) & (v < hi)


def default_groups(
    schema: DatasetSchema,
    age_edges: Sequence[float] = DEFAULT_AGE_EDGES,
    attributes: Sequence[str] | None = None,
) -> list[Group]:
    """Groups over sex, race and ethnicity categories and public age bands (schema order).

    ``age_edges`` are the inner cut points of the age attribute (``Patient.birthDate`` held as
    a numeric age); bands are closed below and open above, the outer ones end at the schema's
    bounds. ``attributes`` restricts the grouping to the named attributes.
    """
    out: list[Group] = []
    for attr in schema.attributes:
        if attributes is not None and attr.name not in attributes:
            continue
        if attr.type == "categorical" and (attributes is not None or attr.fhir in GROUPED_HOMES):
            out += [
                Group(attr.name, f"{attr.name}: {c.label}", value=c.value) for c in attr.categories
            ]
        elif attr.type == "numeric" and (attributes is not None or attr.fhir == AGE_HOME):
            cuts = [float(attr.min), *[float(e) for e in age_edges if attr.min < e < attr.max]]
            for i, lo in enumerate(cuts):
                hi = cuts[i + 1] if i + 1 < len(cuts) else None
                text = f"{lo:g}-{hi - 1:g}" if hi is not None else f"{lo:g}+"
                out.append(Group(attr.name, f"{attr.name}: {text}", lo=lo, hi=hi))
    return out


def subset(cohort: Cohort, mask: np.ndarray) -> Cohort:
    return cohort.subset(cohort.patients[PATIENT_ID].to_numpy()[mask].tolist())


def group_tvd(
    real: Cohort, other: Cohort, exclude: str, bins: int
) -> tuple[float | None, float | None]:
    """(mean TVD over other attributes and channels, largest condition difference)."""
    if real.n_patients == 0 or other.n_patients == 0:
        return None, None
    fig = marginal_figures(real, other, bins)
    tvds = [e["tvd"] for n, e in fig["attributes"].items() if n != exclude]
    tvds += [e["tvd"] for e in fig["channels"].values()]
    return _mean(tvds), _max([e["difference"] for e in fig["conditions"].values()])


def group_timeline_tvd(real: Cohort, other: Cohort) -> tuple[float | None, float | None]:
    """(events-per-patient TVD, gap TVD) inside a group, over the public bins of
    :mod:`medsynth.audit.timeseries` (None when a side has no patient or no gap)."""
    if real.n_patients == 0 or other.n_patients == 0:
        return None, None
    schema = real.schema
    c_edges = count_edges(schema.limits.max_events_total)
    counts = tvd(
        bin_counts(events_per_patient(real), c_edges),
        bin_counts(events_per_patient(other), c_edges),
    )
    g_edges = gap_edges(schema.time.horizon_days)
    gaps = tvd(bin_counts(event_gaps(real), g_edges), bin_counts(event_gaps(other), g_edges))
    return counts, gaps


def share_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """Upper end of the two-sided Clopper-Pearson interval of a share ``k / n``.

    Clopper and Pearson (1934), "The use of confidence or fiducial limits illustrated in the
    case of the binomial", Biometrika 26(4): the upper limit is the ``1 - alpha/2`` quantile of
    Beta(k + 1, n - k), and 1 when ``k = n``.
    """
    from scipy.stats import beta

    if k >= n:
        return 1.0
    return float(beta.ppf(1.0 - (1.0 - confidence) / 2.0, k + 1, n - k))


def group_auc(predictions: tuple[np.ndarray, np.ndarray] | None, mask: np.ndarray) -> float | None:
    """AUC over the holdout patients in ``mask`` (None when a class has too few patients)."""
    if predictions is None:
        return None
    y, s = predictions[0][mask], predictions[1][mask]
    keep = np.isfinite(y)
    y, s = y[keep].astype(int), s[keep]
    return None if class_problem(y, "group", MIN_CLASS) else float(roc_auc_score(y, s))


@dataclass(frozen=True)
class Thresholds:
    """When a group is flagged (from the policy's subgroup parameters)."""

    min_share_ratio: float = 0.5
    max_excess_tvd: float = 0.1
    min_group_size: int = 30


def group_row(
    group: Group,
    inputs: AuditInputs,
    thresholds: Thresholds,
    bins: int,
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray] | None],
) -> dict[str, Any]:
    """Every figure of one group, its flags and its caution."""
    train, holdout, synth = inputs.train, inputs.holdout, inputs.synthetic
    parts = {
        n: subset(c, group.mask(c.patients))
        for n, c in (("train", train), ("holdout", holdout), ("synthetic", synth))
    }
    shares = {
        n: parts[n].n_patients / c.n_patients if c.n_patients else None
        for n, c in (("train", train), ("holdout", holdout), ("synthetic", synth))
    }
    ratio = (shares["synthetic"] / shares["train"]) if shares["train"] else None
    ratio_high = (
        share_upper(parts["synthetic"].n_patients, synth.n_patients) / shares["train"]
        if shares["train"] and synth.n_patients
        else None
    )
    tvd_s, cond_s = group_tvd(parts["train"], parts["synthetic"], group.attribute, bins)
    tvd_h, cond_h = group_tvd(parts["train"], parts["holdout"], group.attribute, bins)
    epp_s, gap_s = group_timeline_tvd(parts["train"], parts["synthetic"])
    epp_h, gap_h = group_timeline_tvd(parts["train"], parts["holdout"])
    flags = []
    if ratio_high is not None and ratio_high < thresholds.min_share_ratio:
        flags.append("under-represented")
    excess = tvd_s - (tvd_h or 0.0) if tvd_s is not None else None
    if excess is not None and excess > thresholds.max_excess_tvd:
        flags.append("distorted")
    row = {
        "group": group.label,
        "attribute": group.attribute,
        "n_train": parts["train"].n_patients,
        "n_holdout": parts["holdout"].n_patients,
        "n_synthetic": parts["synthetic"].n_patients,
        "share_train": shares["train"],
        "share_synthetic": shares["synthetic"],
        "share_holdout": shares["holdout"],
        "share_ratio": ratio,
        "share_ratio_ci_high": ratio_high,
        "tvd": tvd_s,
        "tvd_baseline": tvd_h,
        "tvd_excess": excess,
        "condition_diff": cond_s,
        "condition_diff_baseline": cond_h,
        "events_per_patient_tvd": epp_s,
        "events_per_patient_tvd_baseline": epp_h,
        "gap_tvd": gap_s,
        "gap_tvd_baseline": gap_h,
        "flags": flags,
        "small": parts["train"].n_patients < thresholds.min_group_size,
    }
    if predictions:
        in_group = group.mask(holdout.patients)
        row["auc_synthetic"] = group_auc(predictions.get("synthetic"), in_group)
        row["auc_real"] = group_auc(predictions.get("real"), in_group)
    return row


class SubgroupEvaluator(Evaluator):
    """Per-group representation and fidelity, with flags for the groups left behind.

    Args:
        inputs: the audit inputs.
        min_share_ratio: flag a group whose synthetic share is, with 95 % confidence, below
            this ratio of its real share.
        max_excess_tvd: flag a group whose within-group mean TVD exceeds its baseline by more
            than this.
        min_group_size: groups with fewer training patients get a caution, flags counted apart.
        age_edges: inner cut points of the age bands.
        attributes: group by these attributes instead of sex, age, race and ethnicity.
        target: optional utility target, scored per group.
        bins: public bins for numeric values.
    """

    name = "subgroups"
    kind = "fidelity"

    def __init__(
        self,
        inputs: AuditInputs,
        *,
        min_share_ratio: float = 0.5,
        max_excess_tvd: float = 0.1,
        min_group_size: int = 30,
        age_edges: Sequence[float] = DEFAULT_AGE_EDGES,
        attributes: Sequence[str] | None = None,
        target: TargetSpec | None = None,
        bins: int = 10,
    ) -> None:
        super().__init__(inputs)
        self.thresholds = Thresholds(min_share_ratio, max_excess_tvd, min_group_size)
        self.age_edges = tuple(age_edges)
        self.attributes = tuple(attributes) if attributes is not None else None
        self.target = target
        self.bins = bins

    def _params(self) -> dict[str, Any]:
        t = self.thresholds
        return {
            "min_share_ratio": t.min_share_ratio,
            "max_excess_tvd": t.max_excess_tvd,
            "min_group_size": t.min_group_size,
            "age_edges": list(self.age_edges),
            "attributes": list(self.attributes) if self.attributes else None,
            "target": self.target or None,
            "bins": self.bins,
            "reference": "train",
            "random_state": self.inputs.random_state,
        }

    def _target(self) -> Target | None:
        """The per-group AUC target; None when none is given or no alternative fits."""
        if not self.target:
            return None
        if isinstance(self.target, Mapping):
            return resolve_target(self.target, self.inputs.schema)
        try:
            return resolve_target(self.target, self.inputs.schema)
        except DataError:
            return None

    def _not_run(self, reason: str) -> AuditResult:
        return not_run(self.name, self.kind, reason, self._params())

    def _run(self) -> AuditResult:
        inputs = self.inputs
        unknown = [a for a in self.attributes or () if a not in inputs.schema.attribute_by_name]
        if unknown:
            valid = ", ".join(inputs.schema.attribute_names)
            raise DataError(
                f"subgroup attributes {unknown} are not in schema "
                f"{inputs.schema.name!r}; valid: {valid}"
            )
        groups = default_groups(inputs.schema, self.age_edges, self.attributes)
        if not groups:
            return self._not_run(
                "the schema has no sex, age, race or ethnicity attribute to "
                "group by; name grouping attributes in the policy"
            )
        if min(inputs.train.n_patients, inputs.synthetic.n_patients) < MIN_PATIENTS:
            return self._not_run(f"needs at least {MIN_PATIENTS} training and synthetic patients")
        predictions: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        target = self._target()
        if target is not None:
            for side, cohort in (("synthetic", inputs.synthetic), ("real", inputs.train)):
                model = fit_model(cohort, target, random_state=inputs.random_state)
                predictions[side] = (
                    None if isinstance(model, str) else predict_all(model, inputs.holdout)
                )
        rows = [group_row(g, inputs, self.thresholds, self.bins, predictions) for g in groups]
        big = [r for r in rows if not r["small"]]
        ratios = [r["share_ratio"] for r in big]
        return AuditResult(
            name=self.name,
            kind=self.kind,
            status="ok",
            metrics={
                "flagged_groups": sum(1 for r in big if r["flags"]),
                "flagged_small_groups": sum(1 for r in rows if r["small"] and r["flags"]),
                "under_represented_groups": sum(
                    1 for r in big if "under-represented" in r["flags"]
                ),
                "distorted_groups": sum(1 for r in big if "distorted" in r["flags"]),
                "min_share_ratio": min((x for x in ratios if x is not None), default=None),
                "max_group_tvd": _max([r["tvd"] for r in big]),
                "max_group_tvd_excess": _max([r["tvd_excess"] for r in big]),
                "groups_compared": len(big),
                "small_groups": len(rows) - len(big),
            },
            baseline={"max_group_tvd": _max([r["tvd_baseline"] for r in big])},
            parameters=self._params(),
            details={"groups": rows},
        )
