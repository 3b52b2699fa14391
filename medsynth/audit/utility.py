"""Utility of a synthetic cohort: does a model trained on it work on real patients?

The test is *train on synthetic, test on real* (TSTR): a gradient-boosted classifier
(scikit-learn ``HistGradientBoostingClassifier``) is fit on the synthetic cohort to predict a
target the policy names, and its ROC AUC is measured on the real holdout, which neither the
generator nor the classifier saw. Beside it stands *train on real, test on real* (TRTR): the same
classifier fit on the real training cohort and scored on the same holdout, the ceiling a
synthetic cohort can at best reach. The headline figures are both AUCs (with bootstrap
confidence intervals over holdout patients), their gap and their ratio.

A target is one of (policy field ``target``):

* ``{"condition": "38341003"}``: the patient has the condition code (any onset);
* ``{"channel": "hba1c", "above": 6.5, "statistic": "last"}``: the patient's last (or ``mean``,
  ``max``, ``min``) value of the channel is above the threshold (``"below"`` also works); patients
  never measured on the channel are left out;
* ``{"attribute": "deceased", "equals": true}``: a static attribute has the given value.

Features are the patient's static attributes, condition flags and per-channel summaries
(count, mean, last, min, max), with every feature derived from the target removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medsynth.audit.base import AuditInputs, AuditResult, Estimate, Evaluator, not_run
from medsynth.audit.fidelity import condition_flags
from medsynth.cohort import PATIENT_ID, Cohort
from medsynth.errors import DataError
from medsynth.schema import DatasetSchema

STATISTICS = ("last", "mean", "max", "min")
MIN_CLASS = 5


@dataclass(frozen=True)
class Target:
    """What the utility classifier predicts; see the module docstring for the three forms."""

    condition: str | None = None
    channel: str | None = None
    above: float | None = None
    below: float | None = None
    statistic: str = "last"
    attribute: str | None = None
    equals: Any = None

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], schema: DatasetSchema) -> Target:
        """Build and check a target against the schema; the message lists the valid names."""
        if "condition" in spec:
            code = str(spec["condition"])
            if code not in schema.condition_by_code:
                raise DataError(
                    f"utility target condition {code!r} is not in schema "
                    f"{schema.name!r}; valid: {', '.join(schema.condition_codes)}"
                )
            return cls(condition=schema.condition_by_code[code].code)
        if "channel" in spec:
            name = str(spec["channel"])
            if name not in schema.channel_by_name:
                raise DataError(
                    f"utility target channel {name!r} is not in schema "
                    f"{schema.name!r}; valid: {', '.join(schema.channel_names)}"
                )
            stat = str(spec.get("statistic", "last"))
            if stat not in STATISTICS or ("above" in spec) == ("below" in spec):
                raise DataError(
                    f"utility target {dict(spec)}: give exactly one of 'above' or "
                    f"'below' and a statistic in {STATISTICS}"
                )
            return cls(
                channel=name, above=spec.get("above"), below=spec.get("below"), statistic=stat
            )
        if "attribute" in spec:
            name = str(spec["attribute"])
            if name not in schema.attribute_by_name or "equals" not in spec:
                raise DataError(
                    f"utility target attribute {name!r}: needs a schema attribute "
                    f"({', '.join(schema.attribute_names)}) and 'equals'"
                )
            return cls(attribute=name, equals=spec["equals"])
        raise DataError(
            f"utility target {dict(spec)} names no 'condition', 'channel' or 'attribute'"
        )

    def describe(self, schema: DatasetSchema) -> str:
        if self.condition is not None:
            display = schema.condition_by_code[self.condition].display
            return f"has condition {self.condition} ({display})"
        if self.channel is not None:
            side, value = ("above", self.above) if self.above is not None else ("below", self.below)
            return f"{self.statistic} {self.channel} {side} {value}"
        return f"{self.attribute} = {self.equals}"

    def to_dict(self) -> dict[str, Any]:
        if self.condition is not None:
            return {"condition": self.condition}
        if self.channel is not None:
            side = {"above": self.above} if self.above is not None else {"below": self.below}
            return {"channel": self.channel, "statistic": self.statistic, **side}
        return {"attribute": self.attribute, "equals": self.equals}


TargetSpec = Mapping[str, Any] | Sequence[Mapping[str, Any]]


def resolve_target(spec: TargetSpec, schema: DatasetSchema) -> Target:
    """The target of a policy: one mapping, or a list of alternatives of which the first one
    the schema knows is used (so one policy serves several dataset schemas).

    Raises:
        DataError: no alternative fits the schema; the message gives each one's problem. The
            evaluators treat a single target that does not fit as an error in the policy and a
            list of which none fits as a reason not to run.
    """
    options = [spec] if isinstance(spec, (Mapping, str)) else list(spec)
    problems = []
    for option in options:
        if not isinstance(option, Mapping):
            problems.append(
                f'utility target {option!r} is not an object such as {{"condition": "<code>"}}'
            )
            continue
        try:
            return Target.from_dict(option, schema)
        except DataError as exc:
            problems.append(str(exc))
    if not problems:
        problems.append("the list of targets is empty")
    raise DataError("; ".join(problems))


def channel_summaries(cohort: Cohort) -> pd.DataFrame:
    """count, mean, last, min, max per patient (cohort order) and channel: ``<channel>:<stat>``."""
    ev = cohort.events.sort_values([PATIENT_ID, "time"], kind="mergesort")
    agg = ev.groupby([PATIENT_ID, "channel"])["value"].agg(["count", "mean", "last", "min", "max"])
    wide = agg.unstack("channel")
    ids = pd.Index(cohort.patients[PATIENT_ID], name=PATIENT_ID)
    cols = {}
    for ch in cohort.schema.channel_names:
        for stat in ("count", "mean", "last", "min", "max"):
            col = wide[(stat, ch)] if (stat, ch) in wide.columns else pd.Series(dtype="float64")
            col = col.reindex(ids)
            cols[f"{ch}:{stat}"] = (
                col.fillna(0).to_numpy(dtype="float64")
                if stat == "count"
                else col.to_numpy(dtype="float64")
            )
    return pd.DataFrame(cols, index=ids)


def labels(cohort: Cohort, target: Target) -> np.ndarray:
    """0/1 label per patient (cohort order), or NaN where the target is undefined."""
    if target.condition is not None:
        return condition_flags(cohort)[target.condition].to_numpy(dtype="float64")
    if target.channel is not None:
        stat = channel_summaries(cohort)[f"{target.channel}:{target.statistic}"].to_numpy()
        hit = stat > target.above if target.above is not None else stat < target.below
        return np.where(np.isfinite(stat), hit.astype("float64"), np.nan)
    col = cohort.patients[target.attribute].astype("object")
    want = str(target.equals).lower() if isinstance(target.equals, bool) else str(target.equals)
    got = col.map(
        lambda v: (
            None if pd.isna(v) else (str(v).lower() if isinstance(v, (bool, np.bool_)) else str(v))
        )
    )
    return np.where(got.isna(), np.nan, (got == want).astype("float64"))


def features(cohort: Cohort, target: Target) -> tuple[pd.DataFrame, list[bool]]:
    """Patient features without anything derived from the target, and the categorical mask."""
    schema = cohort.schema
    cols: dict[str, np.ndarray] = {}
    categorical: list[bool] = []
    for attr in schema.attributes:
        if attr.name == target.attribute:
            continue
        col = cohort.patients[attr.name]
        if attr.type == "categorical":
            lookup = {v: float(i) for i, v in enumerate(attr.values)}
            cols[attr.name] = np.array(
                [lookup.get(v, np.nan) if not pd.isna(v) else np.nan for v in col.astype("object")]
            )
        elif attr.type == "boolean":
            cols[attr.name] = col.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
        elif attr.type == "date":
            lo = pd.Timestamp(attr.date_bounds()[0])
            cols[attr.name] = (pd.to_datetime(col) - lo).dt.days.to_numpy(dtype="float64")
        else:
            cols[attr.name] = col.to_numpy(dtype="float64", na_value=np.nan)
        categorical.append(attr.type == "categorical")
    for code, flag in condition_flags(cohort).items():
        if code != target.condition:
            cols[f"condition:{code}"] = flag.to_numpy(dtype="float64")
            categorical.append(False)
    for name, col in channel_summaries(cohort).items():
        if name.split(":")[0] != target.channel:
            cols[name] = col.to_numpy(dtype="float64")
            categorical.append(False)
    return pd.DataFrame(cols), categorical


@dataclass(frozen=True)
class Fitted:
    """A fitted classifier and the feature columns it uses (those not all-missing in training)."""

    model: Any
    columns: tuple[str, ...]
    target: Target


def single_thread() -> Any:
    """A context that keeps OpenMP to one thread: on a busy machine the gradient-boosting
    threads of scikit-learn otherwise spin against each other and run many times slower."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def fit_model(
    train: Cohort, target: Target, *, random_state: int, max_iter: int = 100
) -> Fitted | str:
    """Fit the classifier on ``train``; return it, or the reason it cannot be fit."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, mask = features(train, target)
    y = labels(train, target)
    keep = np.isfinite(y)
    problem = class_problem(y[keep], "training side")
    if problem:
        return problem
    x = x[keep]
    used = [i for i, c in enumerate(x.columns) if x[c].notna().any()]
    if not used:
        return "the training side has no feature with a value"
    model = HistGradientBoostingClassifier(
        max_iter=max_iter,
        early_stopping=False,
        categorical_features=np.array(mask)[used],
        random_state=random_state,
    )
    with single_thread():
        model.fit(x.iloc[:, used].to_numpy(), y[keep].astype(int))
    return Fitted(model, tuple(x.columns[used]), target)


def predict_all(fitted: Fitted, test: Cohort) -> tuple[np.ndarray, np.ndarray]:
    """(labels with NaN where undefined, predicted probabilities) for every patient of ``test``."""
    x, _ = features(test, fitted.target)
    y = labels(test, fitted.target)
    if len(y) == 0:
        return y, np.zeros(0)
    with single_thread():
        return y, fitted.model.predict_proba(x.loc[:, list(fitted.columns)].to_numpy())[:, 1]


def score(fitted: Fitted, test: Cohort) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predicted probabilities) of the patients of ``test`` where the target is defined."""
    y, s = predict_all(fitted, test)
    keep = np.isfinite(y)
    return y[keep].astype(int), s[keep]


def class_problem(y: np.ndarray, where: str, min_class: int = MIN_CLASS) -> str:
    """Why 0/1 labels ``y`` are too few for a classifier or an AUC ("" when they are enough)."""
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if min(pos, neg) < min_class:
        return (
            f"the {where} has {pos} positive and {neg} negative patients for the target; "
            f"each class needs at least {min_class}"
        )
    return ""


def fit_score(
    train: Cohort, test: Cohort, target: Target, *, random_state: int, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray] | str:
    """Fit on ``train``, return (labels, scores) on ``test``, or the reason it cannot run."""
    model = fit_model(train, target, random_state=random_state, max_iter=max_iter)
    if isinstance(model, str):
        return model
    y, s = score(model, test)
    return class_problem(y, "real holdout (test side)") or (y, s)


def auc_estimate(
    y: np.ndarray, score: np.ndarray, *, n_boot: int, random_state: int, confidence: float = 0.95
) -> Estimate:
    """ROC AUC with a percentile bootstrap interval over test patients.

    Resamples in which one class is missing are skipped; with ``n_boot = 0`` the interval is
    the point itself.
    """
    from sklearn.metrics import roc_auc_score

    value = float(roc_auc_score(y, score))
    rng = np.random.default_rng(random_state)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        yy = y[idx]
        if 0 < yy.sum() < len(yy):
            draws.append(roc_auc_score(yy, score[idx]))
    if not draws:
        return Estimate(value, value, value, confidence, "none")
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    return Estimate(
        value,
        float(min(lo, value)),
        float(max(hi, value)),
        confidence,
        "percentile bootstrap over holdout patients",
    )


def roc_points(y: np.ndarray, score: np.ndarray, n_points: int = 51) -> dict[str, list[float]]:
    """The ROC curve on a fixed FPR grid (for plotting; the AUC comes from the full curve)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, score)
    grid = np.linspace(0.0, 1.0, n_points)
    return {"fpr": grid.round(4).tolist(), "tpr": np.interp(grid, fpr, tpr).round(4).tolist()}


class UtilityEvaluator(Evaluator):
    """Train on synthetic, test on real (TSTR) against train on real (TRTR), by ROC AUC.

    Args:
        inputs: the audit inputs.
        target: the prediction target as a mapping (see the module docstring) or a list of
            alternatives (the first the schema knows is used); without one it does not run.
        bootstrap: bootstrap resamples of holdout patients for the AUC intervals.
        max_iter: boosting iterations of the classifier.
    """

    name = "utility"
    kind = "utility"

    def __init__(
        self,
        inputs: AuditInputs,
        *,
        target: TargetSpec | None = None,
        bootstrap: int = 200,
        max_iter: int = 100,
    ) -> None:
        super().__init__(inputs)
        self.target = target
        self.bootstrap = bootstrap
        self.max_iter = max_iter

    def _run(self) -> AuditResult:
        schema, seed = self.inputs.schema, self.inputs.random_state
        params: dict[str, Any] = {
            "classifier": "HistGradientBoostingClassifier",
            "max_iter": self.max_iter,
            "bootstrap": self.bootstrap,
            "random_state": seed,
            "test_set": "holdout",
        }
        if not self.target:
            return not_run(
                self.name,
                self.kind,
                "the policy names no utility target; add params.target to the 'utility' evaluator",
                params,
            )
        if isinstance(self.target, Mapping):
            target = resolve_target(self.target, schema)
        else:
            try:
                target = resolve_target(self.target, schema)
            except DataError as exc:
                return not_run(
                    self.name,
                    self.kind,
                    f"no utility target of the policy fits schema {schema.name!r}: {exc}",
                    params,
                )
        params.update(target=target.to_dict(), target_description=target.describe(schema))
        synth = fit_score(
            self.inputs.synthetic,
            self.inputs.holdout,
            target,
            random_state=seed,
            max_iter=self.max_iter,
        )
        real = fit_score(
            self.inputs.train,
            self.inputs.holdout,
            target,
            random_state=seed,
            max_iter=self.max_iter,
        )
        if isinstance(synth, str) or isinstance(real, str):
            side = "train on synthetic" if isinstance(synth, str) else "train on real"
            reason = synth if isinstance(synth, str) else real
            return not_run(self.name, self.kind, f"{side}: {reason}", params)
        auc_s = auc_estimate(*synth, n_boot=self.bootstrap, random_state=seed)
        auc_r = auc_estimate(*real, n_boot=self.bootstrap, random_state=seed)
        y = synth[0]
        return AuditResult(
            name=self.name,
            kind=self.kind,
            status="ok",
            metrics={
                "auc_synthetic": auc_s,
                "auc_real": auc_r,
                "auc_gap": auc_r.value - auc_s.value,
                "auc_ratio": auc_s.value / auc_r.value if auc_r.value > 0 else None,
            },
            baseline={"auc_synthetic": 0.5, "auc_real": 0.5},
            parameters=params,
            details={
                "roc_synthetic": roc_points(*synth),
                "roc_real": roc_points(*real),
                "holdout_patients": int(len(y)),
                "holdout_positive": int(y.sum()),
                "train_positive_share": _share(labels(self.inputs.train, target)),
                "synthetic_positive_share": _share(labels(self.inputs.synthetic, target)),
                "holdout_positive_share": _share(y.astype("float64")),
            },
        )


def _share(y: np.ndarray) -> float | None:
    y = y[np.isfinite(y)]
    return float(y.mean()) if len(y) else None
