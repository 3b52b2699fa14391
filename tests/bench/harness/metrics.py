"""Figures computed identically for every system's output.

* TSTR: a gradient-boosting model (scikit-learn ``HistGradientBoostingClassifier`` or
  ``...Regressor``) fit on the synthetic flat table, scored on the real holdout (ROC AUC or R²).
  For the train-on-real row the model is fit on the real training table (TRTR).
* Marginals: mean total variation distance of all 1-way and all 2-way marginals against the
  real training table. Numeric columns are cut into :data:`BINS` equal-width bins over the
  schema's public bounds; categoricals keep their schema categories; missing is its own bin.
* Correlation difference: mean absolute difference of the pairwise Pearson correlations
  (numeric columns, categoricals one-hot) between synthetic and real training tables.
* Privacy: distance to closest record (DCR) in a space scaled by the public bounds, the share
  of synthetic records closer to the training than to an equally large holdout sample (0.5 is
  ideal), and a distance-based membership-inference AUC (members = training patients,
  non-members = holdout, score = minus the distance to the nearest synthetic record).
* Longitudinal: events per patient, gaps between a patient's events, within-patient lag-1
  autocorrelation of each channel and lab-lab correlations of visit-level values.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd

from tests.bench.harness.datasets import Column

BINS = 10
MISSING = -1


def codes(df: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    """Every column as small integer codes (bins over public bounds; -1 for missing)."""
    out = {}
    for c in columns:
        col = df[c.name] if c.name in df else pd.Series(np.nan, index=df.index)
        if c.kind == "numeric":
            x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
            b = np.floor((np.clip(x, c.low, c.high) - c.low) / (c.high - c.low) * BINS)
            b = np.clip(b, 0, BINS - 1)
            out[c.name] = np.where(np.isnan(x), MISSING, b).astype(int)
        else:
            lookup = {v: i for i, v in enumerate(c.categories)}
            out[c.name] = col.astype("string").map(lookup).fillna(MISSING).astype(int).to_numpy()
    return pd.DataFrame(out)


def _tvd(a: pd.Series, b: pd.Series) -> float:
    pa = a.value_counts(normalize=True)
    pb = b.value_counts(normalize=True)
    idx = pa.index.union(pb.index)
    return 0.5 * float(np.abs(pa.reindex(idx, fill_value=0) - pb.reindex(idx, fill_value=0)).sum())


def marginal_tvd(
    real: pd.DataFrame, syn: pd.DataFrame, columns: tuple[Column, ...]
) -> dict[str, float]:
    """Mean 1-way and 2-way total variation distances."""
    r, s = codes(real, columns), codes(syn, columns)
    one = [_tvd(r[c.name], s[c.name]) for c in columns]
    two = []
    for a, b in itertools.combinations([c.name for c in columns], 2):
        two.append(_tvd(r[a] * 100 + r[b], s[a] * 100 + s[b]))
    return {"tvd1": float(np.mean(one)), "tvd2": float(np.mean(two)) if two else float("nan")}


def _numeric_matrix(df: pd.DataFrame, columns: tuple[Column, ...]) -> pd.DataFrame:
    parts = {}
    for c in columns:
        if c.kind == "numeric":
            parts[c.name] = pd.to_numeric(df[c.name], errors="coerce").astype(float)
        else:
            col = df[c.name].astype("string")
            for v in c.categories[1:] if len(c.categories) == 2 else c.categories:
                parts[f"{c.name}={v}"] = (col == v).astype(float)  # missing stays NaN
    return pd.DataFrame(parts)


def correlation_difference(
    real: pd.DataFrame, syn: pd.DataFrame, columns: tuple[Column, ...]
) -> float:
    """Mean absolute difference of pairwise Pearson correlations (undefined pairs count as 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cr = _numeric_matrix(real, columns).corr().fillna(0.0).to_numpy()
        cs = _numeric_matrix(syn, columns).corr().fillna(0.0).to_numpy()
    iu = np.triu_indices_from(cr, k=1)
    return float(np.mean(np.abs(cr[iu] - cs[iu])))


def _features(df: pd.DataFrame, columns: tuple[Column, ...], target: str) -> pd.DataFrame:
    x = {}
    for c in columns:
        if c.name == target:
            continue
        if c.kind == "numeric":
            x[c.name] = pd.to_numeric(df[c.name], errors="coerce").astype(float)
        else:
            lookup = {v: float(i) for i, v in enumerate(c.categories)}
            x[c.name] = df[c.name].astype("string").map(lookup).astype(float)
    return pd.DataFrame(x)


def tstr(
    syn: pd.DataFrame,
    holdout: pd.DataFrame,
    columns: tuple[Column, ...],
    target: str,
    task: str,
    seed: int,
) -> float:
    """ROC AUC (classification) or R² (regression) on the real holdout; NaN if unfit."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import r2_score, roc_auc_score

    col = next(c for c in columns if c.name == target)
    xs, xh = _features(syn, columns, target), _features(holdout, columns, target)
    if task == "classification":
        ys = syn[target].astype("string") == col.categories[-1]
        yh = holdout[target].astype("string") == col.categories[-1]
        keep = syn[target].notna().to_numpy()
        if ys[keep].nunique() < 2:
            return float("nan")
        model = HistGradientBoostingClassifier(random_state=seed).fit(xs[keep], ys[keep])
        return float(roc_auc_score(yh, model.predict_proba(xh)[:, 1]))
    ys = pd.to_numeric(syn[target], errors="coerce")
    yh = pd.to_numeric(holdout[target], errors="coerce")
    keep, keep_h = ys.notna().to_numpy(), yh.notna().to_numpy()
    if keep.sum() < 10:
        return float("nan")
    model = HistGradientBoostingRegressor(random_state=seed).fit(xs[keep], ys[keep])
    return float(r2_score(yh[keep_h], model.predict(xh[keep_h])))


def _scaled(df: pd.DataFrame, columns: tuple[Column, ...]) -> np.ndarray:
    """Rows in [0, 1] per numeric column (public bounds), one-hot categoricals, missing = -0.5."""
    parts = []
    for c in columns:
        if c.kind == "numeric":
            x = pd.to_numeric(df[c.name], errors="coerce").to_numpy(dtype=float)
            x = (np.clip(x, c.low, c.high) - c.low) / (c.high - c.low)
            parts.append(np.where(np.isnan(x), -0.5, x)[:, None])
        else:
            col = df[c.name].astype("string")
            hot = [(col == v).fillna(False).to_numpy(dtype=float) for v in c.categories]
            parts.append(np.stack(hot, 1))
    return np.concatenate(parts, axis=1)


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each row of ``a`` to its nearest row of ``b`` (Euclidean)."""
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=1).fit(b).kneighbors(a)[0][:, 0]


def privacy_figures(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    syn: pd.DataFrame,
    columns: tuple[Column, ...],
    seed: int,
) -> dict[str, float]:
    """DCR median, share of synthetic rows closer to train than holdout, distance MIA AUC."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = min(len(train), len(holdout))
    tr = _scaled(train.iloc[rng.choice(len(train), n, replace=False)], columns)
    ho = _scaled(holdout.iloc[rng.choice(len(holdout), n, replace=False)], columns)
    sy = _scaled(syn, columns)
    d_tr, d_ho = _nearest(sy, tr), _nearest(sy, ho)
    closer = float(np.mean(d_tr < d_ho) + 0.5 * np.mean(d_tr == d_ho))
    member = _nearest(tr, sy)
    non = _nearest(ho, sy)
    y = np.r_[np.ones(n), np.zeros(n)]
    auc = float(roc_auc_score(y, -np.r_[member, non]))
    return {"dcr_median": float(np.median(d_tr)), "dcr_share": closer, "mia_auc": auc}


def longitudinal(real_events: pd.DataFrame, syn_events: pd.DataFrame, channels, bounds) -> dict:
    """Events per patient, gaps, lag-1 autocorrelation and lab-lab correlations.

    ``*_events``: long tables ``patient_id, time, channel, value``; ``bounds``: channel ->
    (low, high) from the schema, used to bin values for their TVD.
    """
    out: dict[str, float] = {}

    def per_patient(ev):
        return ev.groupby("patient_id")["time"].nunique()

    vr, vs = per_patient(real_events), per_patient(syn_events)
    edges = np.array([0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 1e9])
    out["visits_tvd"] = _tvd(pd.Series(np.digitize(vr, edges)), pd.Series(np.digitize(vs, edges)))
    out["visits_mean_real"], out["visits_mean_syn"] = float(vr.mean()), float(vs.mean())

    def gaps(ev):
        t = ev.drop_duplicates(["patient_id", "time"]).sort_values(["patient_id", "time"])
        return t.groupby("patient_id")["time"].diff().dropna()

    gr, gs = gaps(real_events), gaps(syn_events)
    gedges = np.array([0, 30, 90, 150, 210, 300, 400, 500, 730, 1095, 1e9])
    out["gap_tvd"] = (
        _tvd(pd.Series(np.digitize(gr, gedges)), pd.Series(np.digitize(gs, gedges)))
        if len(gs) and len(gr)
        else float("nan")
    )
    lab_tvd, ac_diff = [], []
    for ch in channels:
        r = real_events[real_events["channel"] == ch]
        s = syn_events[syn_events["channel"] == ch]
        lo, hi = bounds[ch]
        e = np.linspace(lo, hi, BINS + 1)[1:-1]
        if len(r) and len(s):
            lab_tvd.append(
                _tvd(pd.Series(np.digitize(r["value"], e)), pd.Series(np.digitize(s["value"], e)))
            )
        ar, as_ = _lag1(r), _lag1(s)
        out[f"lag1_{ch}_real"], out[f"lag1_{ch}_syn"] = ar, as_
        if np.isfinite(ar) and np.isfinite(as_):
            ac_diff.append(abs(ar - as_))
    out["lab_tvd"] = float(np.mean(lab_tvd)) if lab_tvd else float("nan")
    out["lag1_max_diff"] = float(np.max(ac_diff)) if ac_diff else float("nan")
    out["lag1_mean_diff"] = float(np.mean(ac_diff)) if ac_diff else float("nan")

    def wide(ev):
        return ev.pivot_table(index=["patient_id", "time"], columns="channel", values="value")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cr = wide(real_events).reindex(columns=channels).corr().fillna(0).to_numpy()
        cs = wide(syn_events).reindex(columns=channels).corr().fillna(0).to_numpy()
    iu = np.triu_indices_from(cr, k=1)
    out["lab_corr_diff"] = float(np.mean(np.abs(cr[iu] - cs[iu])))
    return out


def _lag1(ev: pd.DataFrame) -> float:
    """Pooled within-patient lag-1 autocorrelation of a channel (values centred per patient)."""
    if ev.empty:
        return float("nan")
    ev = ev.sort_values(["patient_id", "time"])
    v = ev["value"].astype(float)
    centred = v - ev.groupby("patient_id")["value"].transform("mean")
    prev = centred.groupby(ev["patient_id"]).shift(1)
    ok = prev.notna()
    if ok.sum() < 10:
        return float("nan")
    a, b = centred[ok].to_numpy(), prev[ok].to_numpy()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def audit_mia(train, holdout, synthetic, seed: int) -> dict[str, float]:
    """medsynth's own DCR membership attack (:mod:`medsynth.audit.mia`) on the cohorts, when
    that module is importable; its AUC and empirical epsilon lower bound. Empty otherwise."""
    try:
        from medsynth.audit.base import AuditInputs
        from medsynth.audit.mia import DcrMembershipAttack
    except ImportError:
        return {}
    inputs = AuditInputs(train, holdout, synthetic, train.schema, random_state=seed)
    result = DcrMembershipAttack(inputs, n_bootstrap=50).evaluate().result()
    if result.status != "ok":
        return {}
    out = {}
    for name, value in result.metrics.items():
        v = getattr(value, "value", value)
        if isinstance(v, (int, float)) and name in ("auc", "epsilon_lower_bound"):
            out[f"audit_mia_{name}"] = float(v)
    return out
