"""Fidelity of a synthetic cohort: how closely its distributions match the real training cohort.

Everything here is measured over the dataset schema's public domains, never over bins learned
from data: numeric attributes and channel values are cut into equal-width bins over the schema's
``[min, max]``, categorical attributes use the schema's categories (plus a "(missing)" level).
The figures are deliberately simple so that a reader can recompute them by hand:

* **TVD** (total variation distance) between two histograms over the same bins:
  ``0.5 * sum_i |p_i - q_i|`` with ``p`` and ``q`` the bin shares; 0 means identical shares,
  1 means disjoint support.
* **KS** (two-sample Kolmogorov-Smirnov statistic) on raw numeric values:
  ``max_x |F_real(x) - F_synth(x)|`` with ``F`` the empirical distribution functions.
* **Condition prevalence difference**: ``|share of real patients with the code - share of
  synthetic patients with it|``.
* **Association differences**: Cramér's V (``sqrt(chi2 / (n * (min(r, c) - 1)))`` over the
  contingency table of two binned variables, empty rows and columns dropped) for every pair of
  attributes, condition flags and per-patient channel means, and the Pearson correlation matrix of
  the numeric ones; the figure is the absolute difference real vs synthetic, pair by pair.

Each figure is also computed for the real holdout against the real training cohort and reported
as the *baseline*: the distance two honest samples of the same population already show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medsynth.audit.base import AuditInputs, AuditResult, Evaluator, not_run
from medsynth.cohort import PATIENT_ID, Cohort
from medsynth.schema import DatasetSchema
from medsynth.schema.model import Attribute

MISSING = "(missing)"
MIN_PATIENTS = 2


# -- pure metric functions ------------------------------------------------------------------------
def equal_width_edges(lo: float, hi: float, n_bins: int) -> np.ndarray:
    """``n_bins + 1`` equal-width bin edges over the public interval ``[lo, hi]``."""
    if not hi > lo or n_bins < 1:
        raise ValueError(f"need hi > lo and n_bins >= 1, got [{lo}, {hi}] with {n_bins} bins")
    return np.linspace(float(lo), float(hi), int(n_bins) + 1)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of finite ``values`` per bin; values outside the edges go to the end bins.

    Bins are closed on the left, the last one also on the right: ``[e0, e1), ..., [e_k-1, e_k]``.
    """
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1).astype("int64")


def tvd(
    p_counts: Sequence[float] | np.ndarray, q_counts: Sequence[float] | np.ndarray
) -> float | None:
    """Total variation distance between two histograms over the same bins (None if one is empty)."""
    p = np.asarray(p_counts, dtype="float64")
    q = np.asarray(q_counts, dtype="float64")
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in length: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def ks_statistic(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic ``max |F_a - F_b|`` (None if a sample is empty)."""
    x = np.sort(np.asarray(a, dtype="float64")[np.isfinite(a)])
    y = np.sort(np.asarray(b, dtype="float64")[np.isfinite(b)])
    if len(x) == 0 or len(y) == 0:
        return None
    grid = np.concatenate([x, y])
    fx = np.searchsorted(x, grid, side="right") / len(x)
    fy = np.searchsorted(y, grid, side="right") / len(y)
    return float(np.max(np.abs(fx - fy)))


def cramers_v(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cramér's V of two integer-coded variables (None when a side has a single level)."""
    a = np.asarray(a, dtype="int64")
    b = np.asarray(b, dtype="int64")
    if len(a) == 0:
        return None
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    r, c = int(ai.max()) + 1, int(bi.max()) + 1
    if min(r, c) < 2:
        return None
    table = np.bincount(ai * c + bi, minlength=r * c).reshape(r, c).astype("float64")
    n = table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (n * (min(r, c) - 1))))


# -- public discretization of patient-level variables ---------------------------------------------
@dataclass(frozen=True)
class Binned:
    """A patient-level variable cut into public levels: integer codes and the level labels."""

    labels: tuple[str, ...]
    codes: np.ndarray  # one int per patient, index into labels

    def counts(self) -> np.ndarray:
        return np.bincount(self.codes, minlength=len(self.labels)).astype("int64")


def _number(x: float, decimals: int) -> str:
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _edge_labels(edges: np.ndarray, decimals: int = 2) -> tuple[str, ...]:
    fmt = [_number(float(e), decimals) for e in edges]
    return tuple(
        f"[{fmt[i]}, {fmt[i + 1]}{']' if i == len(edges) - 2 else ')'}"
        for i in range(len(edges) - 1)
    )


def bin_numeric(values: np.ndarray, lo: float, hi: float, n_bins: int) -> Binned:
    """Equal-width public bins over ``[lo, hi]`` plus a last "(missing)" level for NaN."""
    edges = equal_width_edges(lo, hi, n_bins)
    v = np.asarray(values, dtype="float64")
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, n_bins - 1)
    codes = np.where(np.isfinite(v), idx, n_bins)
    return Binned((*_edge_labels(edges), MISSING), codes.astype("int64"))


def bin_attribute(attr: Attribute, column: pd.Series, n_bins: int) -> Binned:
    """Public levels of one static attribute (categories, booleans, or bins over its bounds)."""
    if attr.type == "categorical":
        values = attr.values
        codes = pd.Categorical(column.astype("object"), categories=list(values)).codes
        codes = np.where(codes < 0, len(values), codes)
        return Binned((*values, MISSING), codes.astype("int64"))
    if attr.type == "boolean":
        col = column.astype("boolean")
        truth = col.fillna(False).to_numpy(dtype=bool).astype(int)
        codes = np.where(col.isna().to_numpy(), 2, truth)
        return Binned(("false", "true", MISSING), codes.astype("int64"))
    if attr.type == "date":
        lo, hi = (pd.Timestamp(d) for d in attr.date_bounds())
        days = (pd.to_datetime(column) - lo).dt.total_seconds().to_numpy(dtype="float64") / 86400.0
        return bin_numeric(days, 0.0, (hi - lo).total_seconds() / 86400.0, n_bins)
    return bin_numeric(
        column.to_numpy(dtype="float64", na_value=np.nan), float(attr.min), float(attr.max), n_bins
    )  # type: ignore[arg-type]


def condition_flags(cohort: Cohort) -> pd.DataFrame:
    """0/1 per patient (rows in cohort order) and schema condition code (columns)."""
    ids = pd.Index(cohort.patients[PATIENT_ID].astype("object"), name=PATIENT_ID)
    codes = list(cohort.schema.condition_codes)
    cond = cohort.conditions
    rows = ids.get_indexer(cond[PATIENT_ID].astype("object"))
    cols = pd.Index(codes, dtype="object").get_indexer(cond["code"].astype("object"))
    keep = (rows >= 0) & (cols >= 0)
    flags = np.zeros((len(ids), len(codes)), dtype="int64")
    flags[rows[keep], cols[keep]] = 1
    return pd.DataFrame(flags, index=ids, columns=codes)


def channel_means(cohort: Cohort) -> pd.DataFrame:
    """Mean value per patient (rows in cohort order) and channel (NaN when never measured)."""
    ids = cohort.patients[PATIENT_ID]
    means = cohort.events.groupby([PATIENT_ID, "channel"])["value"].mean().unstack("channel")
    means = means.reindex(
        index=pd.Index(ids, name=PATIENT_ID), columns=list(cohort.schema.channel_names)
    )
    return means.astype("float64")


def patient_levels(cohort: Cohort, n_bins: int) -> dict[str, Binned]:
    """Every patient-level variable of a cohort in public levels, named for the report.

    Attributes by name, condition flags as ``condition:<code>``, channel means as
    ``mean:<channel>`` (binned over the channel's bounds; "(missing)" when never measured).
    """
    schema = cohort.schema
    out: dict[str, Binned] = {}
    for attr in schema.attributes:
        out[attr.name] = bin_attribute(attr, cohort.patients[attr.name], n_bins)
    flags = condition_flags(cohort)
    for code in schema.condition_codes:
        out[f"condition:{code}"] = Binned(("absent", "present"), flags[code].to_numpy())
    means = channel_means(cohort)
    for ch in schema.channels:
        out[f"mean:{ch.name}"] = bin_numeric(means[ch.name].to_numpy(), ch.min, ch.max, n_bins)
    return out


def short_display(display: str) -> str:
    """A LOINC long name without its bracketed property part: ``"Glucose [Mass/volume] in
    Blood"`` becomes ``"Glucose"``."""
    return display.split(" [")[0].strip() or display


def variable_labels(schema: DatasetSchema) -> dict[str, str]:
    """Display names of the patient-level variables of :func:`patient_levels`, for people.

    Attributes keep their name (capitalised, ``_`` as space), condition flags show the
    condition's display and channel means the channel's short display with "(mean)".
    """
    out = {a.name: a.name.replace("_", " ").capitalize() for a in schema.attributes}
    out.update({f"condition:{c.code}": c.display for c in schema.conditions})
    out.update({f"mean:{c.name}": f"{short_display(c.display)} (mean)" for c in schema.channels})
    return out


def numeric_table(cohort: Cohort) -> pd.DataFrame:
    """Patient-level numeric variables for correlations: numeric and boolean attributes,
    condition flags (``condition:<code>``) and channel means (``mean:<channel>``)."""
    cols: dict[str, np.ndarray] = {}
    for attr in cohort.schema.attributes:
        col = cohort.patients[attr.name]
        if attr.type == "numeric":
            cols[attr.name] = col.to_numpy(dtype="float64", na_value=np.nan)
        elif attr.type == "boolean":
            cols[attr.name] = col.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    for code, flag in condition_flags(cohort).items():
        cols[f"condition:{code}"] = flag.to_numpy(dtype="float64")
    for name, mean in channel_means(cohort).items():
        cols[f"mean:{name}"] = mean.to_numpy(dtype="float64")
    return pd.DataFrame(cols)


def channel_values(cohort: Cohort) -> dict[str, np.ndarray]:
    """All event values of each channel that has events, by channel name."""
    return {
        str(name): g.to_numpy(dtype="float64")
        for name, g in cohort.events.groupby("channel")["value"]
    }


# -- comparisons of two cohorts -------------------------------------------------------------------
def marginal_figures(real: Cohort, other: Cohort, n_bins: int) -> dict[str, Any]:
    """Per-attribute, per-channel and per-condition distances between two cohorts."""
    schema = real.schema
    attributes: dict[str, Any] = {}
    for attr in schema.attributes:
        a = bin_attribute(attr, real.patients[attr.name], n_bins)
        b = bin_attribute(attr, other.patients[attr.name], n_bins)
        entry: dict[str, Any] = {
            "type": attr.type,
            "labels": list(a.labels),
            "display_labels": (
                [c.label for c in attr.categories] + [MISSING]
                if attr.type == "categorical"
                else list(a.labels)
            ),
            "real": a.counts().tolist(),
            "synthetic": b.counts().tolist(),
            "tvd": tvd(a.counts(), b.counts()),
        }
        if attr.type == "numeric":
            entry["ks"] = ks_statistic(
                real.patients[attr.name].to_numpy(dtype="float64", na_value=np.nan),
                other.patients[attr.name].to_numpy(dtype="float64", na_value=np.nan),
            )
        attributes[attr.name] = entry
    channels: dict[str, Any] = {}
    xs, ys = channel_values(real), channel_values(other)
    for ch in schema.channels:
        x, y = xs.get(ch.name, np.zeros(0)), ys.get(ch.name, np.zeros(0))
        edges = equal_width_edges(ch.min, ch.max, n_bins)
        cx, cy = bin_counts(x, edges), bin_counts(y, edges)
        channels[ch.name] = {
            "display": ch.display,
            "unit": ch.unit,
            "normal": list(ch.normal) if ch.normal else None,
            "edges": edges.tolist(),
            "real": cx.tolist(),
            "synthetic": cy.tolist(),
            "tvd": tvd(cx, cy),
            "ks": ks_statistic(x, y),
            "n_real": int(len(x)),
            "n_synthetic": int(len(y)),
        }
    fa, fb = condition_flags(real), condition_flags(other)
    conditions: dict[str, Any] = {}
    for cond in schema.conditions:
        pa = float(fa[cond.code].mean()) if len(fa) else None
        pb = float(fb[cond.code].mean()) if len(fb) else None
        diff = abs(pa - pb) if pa is not None and pb is not None else None
        conditions[cond.code] = {
            "display": cond.display,
            "real": pa,
            "synthetic": pb,
            "difference": diff,
        }
    return {"attributes": attributes, "channels": channels, "conditions": conditions}


def association_figures(
    real: Cohort, other: Cohort, n_bins: int, *, top: int = 10, min_pairs: int = 10
) -> dict[str, Any]:
    """Cramér's V and Pearson correlation differences, pair by pair, between two cohorts."""
    la, lb = patient_levels(real, n_bins), patient_levels(other, n_bins)
    names = list(la)
    k = len(names)
    diff = np.full((k, k), np.nan)
    pairs: list[tuple[float, str, str, float, float]] = []
    for i in range(k):
        for j in range(i + 1, k):
            va = cramers_v(la[names[i]].codes, la[names[j]].codes)
            vb = cramers_v(lb[names[i]].codes, lb[names[j]].codes)
            if va is None or vb is None:
                continue
            d = abs(va - vb)
            diff[i, j] = diff[j, i] = d
            pairs.append((d, names[i], names[j], va, vb))
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    ca = numeric_table(real).corr(min_periods=min_pairs)
    cb = numeric_table(other).corr(min_periods=min_pairs)
    cdiff = (ca - cb).abs()
    upper = cdiff.to_numpy()[np.triu_indices(len(cdiff), k=1)]
    upper = upper[np.isfinite(upper)]
    values = np.array([p[0] for p in pairs])
    return {
        "labels": {n: lab for n, lab in variable_labels(real.schema).items() if n in la},
        "cramers_v": {
            "variables": names,
            "difference": [
                [None if not np.isfinite(x) else round(float(x), 4) for x in row] for row in diff
            ],
            "pairs_compared": len(pairs),
            "mean_abs_difference": float(values.mean()) if len(values) else None,
            "max_abs_difference": float(values.max()) if len(values) else None,
            "largest": [
                {"a": a, "b": b, "real": va, "synthetic": vb, "difference": d}
                for d, a, b, va, vb in pairs[:top]
            ],
        },
        "correlation": {
            "variables": list(cdiff.columns),
            "pairs_compared": int(len(upper)),
            "mean_abs_difference": float(upper.mean()) if len(upper) else None,
            "max_abs_difference": float(upper.max()) if len(upper) else None,
        },
    }


def _max(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarize(marginals: Mapping[str, Any], associations: Mapping[str, Any]) -> dict[str, Any]:
    """The flat headline figures a policy can set thresholds on."""
    attrs = [e["tvd"] for e in marginals["attributes"].values()]
    chans = [e["tvd"] for e in marginals["channels"].values()]
    return {
        "attribute_tvd_max": _max(attrs),
        "attribute_tvd_mean": _mean(attrs),
        "channel_tvd_max": _max(chans),
        "channel_tvd_mean": _mean(chans),
        "channel_ks_max": _max([e["ks"] for e in marginals["channels"].values()]),
        "condition_prevalence_diff_max": _max(
            [e["difference"] for e in marginals["conditions"].values()]
        ),
        "cramers_v_diff_mean": associations["cramers_v"]["mean_abs_difference"],
        "cramers_v_diff_max": associations["cramers_v"]["max_abs_difference"],
        "correlation_diff_mean": associations["correlation"]["mean_abs_difference"],
        "correlation_diff_max": associations["correlation"]["max_abs_difference"],
    }


# -- evaluator ------------------------------------------------------------------------------------
class FidelityEvaluator(Evaluator):
    """Marginal and association fidelity of the synthetic cohort against the training cohort.

    Args:
        inputs: the audit inputs (train, holdout, synthetic, schema).
        bins: number of equal-width public bins for numeric values.
        top_pairs: how many of the most changed variable pairs to list.

    Example:
        >>> result = FidelityEvaluator(inputs, bins=10).evaluate().result()  # doctest: +SKIP
        >>> result.metrics["attribute_tvd_max"]  # doctest: +SKIP
    """

    name = "fidelity"
    kind = "fidelity"

    def __init__(self, inputs: AuditInputs, *, bins: int = 10, top_pairs: int = 10) -> None:
        super().__init__(inputs)
        self.bins = bins
        self.top_pairs = top_pairs

    def _run(self) -> AuditResult:
        train, holdout, synth = self.inputs.train, self.inputs.holdout, self.inputs.synthetic
        params = {"bins": self.bins, "top_pairs": self.top_pairs, "reference": "train"}
        too_small = [
            f"{name} has {c.n_patients} patients"
            for name, c in (("train", train), ("synthetic", synth))
            if c.n_patients < MIN_PATIENTS
        ]
        if too_small:
            return not_run(
                self.name,
                self.kind,
                f"needs at least {MIN_PATIENTS} patients per cohort: {'; '.join(too_small)}",
                params,
            )
        marg = marginal_figures(train, synth, self.bins)
        assoc = association_figures(train, synth, self.bins, top=self.top_pairs)
        baseline: dict[str, Any] = {}
        if holdout.n_patients >= MIN_PATIENTS:
            baseline = summarize(
                marginal_figures(train, holdout, self.bins),
                association_figures(train, holdout, self.bins, top=0),
            )
        return AuditResult(
            name=self.name,
            kind=self.kind,
            status="ok",
            metrics=summarize(marg, assoc),
            baseline=baseline,
            parameters=params,
            details={
                "marginals": marg,
                "associations": assoc,
                "n_patients": {
                    "train": train.n_patients,
                    "holdout": holdout.n_patients,
                    "synthetic": synth.n_patients,
                },
            },
        )


def check_schema(schema: DatasetSchema, *cohorts: Cohort) -> None:
    """Raise ValueError if a cohort was built with another schema than ``schema``."""
    for c in cohorts:
        if c.schema.sha256 != schema.sha256:
            raise ValueError(f"cohort schema {c.schema.name!r} differs from {schema.name!r}")
