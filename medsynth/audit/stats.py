"""Statistics of the privacy attacks: intervals for rates, ROC figures and empirical epsilon.

Pure functions over plain arrays; every attack of :mod:`medsynth.audit` reports through them.

* **Clopper-Pearson** (exact binomial) interval of a rate ``k / n``: the ends are quantiles of
  Beta distributions, ``Beta(a/2; k, n-k+1)`` and ``Beta(1-a/2; k+1, n-k)`` (Clopper and Pearson
  1934). Its coverage is at least the nominal level for every true rate.
* **Difference of two rates** (attack success on training patients minus success on holdout
  patients): Newcombe's hybrid score interval, which combines the Wilson intervals of both
  rates (Newcombe 1998, "Interval estimation for the difference between independent
  proportions", method 10).
* **ROC AUC** of an attack score (higher = "member"), ties counted one half (the Mann-Whitney
  statistic), with a percentile bootstrap interval that resamples members and non-members
  separately; **TPR at a fixed FPR** (1 % and 10 %) with a Clopper-Pearson interval over the
  members. The ROC curve and its area are scikit-learn's (``sklearn.metrics.roc_curve`` and
  ``auc``, the area ``roc_auc_score`` computes), as in the utility evaluator.
* **Copies beyond chance.** Synthetic records equal to a *distinctive* real record, one whose
  content occurs exactly once among the training and holdout records together, counted on each
  side. If the generator never saw the training data, the side that single real record lies on
  is a coin with the training share of the real records as its chance, independently per
  record; so ``k_train ~ Binomial(k_train + k_holdout, p_train)``, and ``c`` copied training
  records add ``c`` to ``k_train``. The interval of ``c`` inverts the exact one-sided binomial
  test (Clopper and Pearson 1934 invert the same test for a rate).
* **Members flagged beyond chance at a low FPR.** The attacker's threshold is the score of the
  ``(k + 1)``-th highest non-member, ``k = floor(fpr * non_members)``, so at most ``fpr`` of the
  non-members are flagged. If members and non-members are exchangeable (the generator did not
  favour its training data), the number of members above that threshold follows the negative
  hypergeometric distribution (members drawn before the ``(k + 1)``-th non-member in a random
  order); ``c`` members the attack recognises for sure add ``c``. The interval of ``c`` inverts
  that exact test. Reading the TPR of a threshold chosen on the same non-members against a
  Clopper-Pearson interval over the members alone ignores the threshold's own noise: at 500
  members and non-members its lower end exceeds the 1 % baseline by chance about one time in
  ten.
* **Empirical epsilon lower bound.** A mechanism is (epsilon, delta)-DP exactly when every test
  that tells two neighbouring datasets apart has ``FPR + e^eps * FNR >= 1 - delta`` and
  ``FNR + e^eps * FPR >= 1 - delta`` (Kairouz, Oh and Viswanath 2015, "The composition theorem
  for differential privacy", Theorem 2.1). With ``TPR = 1 - FNR`` that reads::

      eps >= log((TPR - delta) / FPR)   and   eps >= log((1 - FPR - delta) / (1 - TPR)).

  A membership attack with a threshold is such a test, so its measured rates bound epsilon
  from below. To hold with confidence ``1 - a``, each rate is replaced by its one-sided
  Clopper-Pearson end at level ``a/2`` in the pessimistic direction (TPR by its lower end,
  FPR by its upper end; union bound), as in Jagielski, Ullman and Oprea 2020 ("Auditing
  differentially private machine learning: how private is private SGD?") and Nasr et al. 2021
  ("Adversary instantiation: lower bounds for differentially private machine learning")::

      eps_lo = max(log((TPR_lo - delta) / FPR_hi), log((1 - FPR_hi - delta) / (1 - TPR_lo)), 0)

  The threshold is chosen on one half of the members and non-members and the bound computed on
  the other half, so picking the best threshold does not inflate the bound. Caveat: a real
  audit of a DP guarantee is about one patient's influence; here members and non-members are
  different patients, so the figure is evidence about the released data, not a proof about
  the mechanism (see ``docs/audit.md``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as _st
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import auc as _sk_auc
from sklearn.metrics import roc_curve as _sk_roc_curve

from medsynth.audit.base import Estimate

__all__ = [
    "auc_estimate",
    "clopper_pearson",
    "copies_beyond_chance",
    "difference_estimate",
    "empirical_epsilon",
    "epsilon_bounds",
    "members_beyond_chance",
    "proportion_estimate",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
    "wilson",
]

ArrayLike = Sequence[float] | np.ndarray


def _check(k: float, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


def clopper_pearson(k: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval of the rate ``k / n`` (``(0, 1)`` when ``n == 0``)."""
    _check(k, n)
    if n == 0:
        return 0.0, 1.0
    a = 1.0 - confidence
    lo = 0.0 if k <= 0 else float(_st.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k >= n else float(_st.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def _cp_lower(k: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    """One-sided lower Clopper-Pearson bound at level ``alpha`` (vectorised)."""
    k, n = np.asarray(k, dtype="float64"), np.asarray(n, dtype="float64")
    out = _st.beta.ppf(alpha, np.maximum(k, 1e-12), n - k + 1)
    return np.where(k <= 0, 0.0, out)


def _cp_upper(k: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    """One-sided upper Clopper-Pearson bound at level ``alpha`` (vectorised)."""
    k, n = np.asarray(k, dtype="float64"), np.asarray(n, dtype="float64")
    out = _st.beta.ppf(1 - alpha, k + 1, np.maximum(n - k, 1e-12))
    return np.where(k >= n, 1.0, out)


def wilson(k: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``k / n`` (``(0, 1)`` when ``n == 0``)."""
    _check(k, n)
    if n == 0:
        return 0.0, 1.0
    z = float(_st.norm.ppf(0.5 + confidence / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_estimate(k: float, n: int, confidence: float = 0.95) -> Estimate:
    """The rate ``k / n`` with its Clopper-Pearson interval (NaN rate when ``n == 0``)."""
    lo, hi = clopper_pearson(k, n, confidence)
    value = k / n if n else math.nan
    return Estimate(float(value), lo, hi, confidence, "clopper-pearson")


def difference_estimate(
    k1: float, n1: int, k2: float, n2: int, confidence: float = 0.95
) -> Estimate:
    """``k1/n1 - k2/n2`` with Newcombe's hybrid score interval (Wilson ends combined)."""
    if n1 == 0 or n2 == 0:
        return Estimate(math.nan, math.nan, math.nan, confidence, "newcombe-wilson")
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, confidence)
    l2, u2 = wilson(k2, n2, confidence)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Estimate(float(d), max(-1.0, lo), min(1.0, hi), confidence, "newcombe-wilson")


# -- ROC figures --------------------------------------------------------------------------------
def _scores(pos: ArrayLike, neg: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pos, dtype="float64").ravel()
    n = np.asarray(neg, dtype="float64").ravel()
    if not (np.isfinite(p).all() and np.isfinite(n).all()):
        raise ValueError("attack scores must be finite numbers")
    return p, n


def _labelled(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Members and non-members as scikit-learn's ``(y_true, y_score)``: members are label 1."""
    return np.r_[np.ones(len(p)), np.zeros(len(n))], np.concatenate([p, n])


def roc_auc(pos: ArrayLike, neg: ArrayLike) -> float:
    """ROC AUC: P(score of a member > score of a non-member), ties counted 1/2 (NaN if empty)."""
    p, n = _scores(pos, neg)
    if len(p) == 0 or len(n) == 0:
        return math.nan
    # roc_auc_score(y, s) is this same area, behind label checks that cost 2.5 times the work
    # in the bootstrap loop of auc_estimate.
    fpr, tpr, _ = _sk_roc_curve(*_labelled(p, n))
    return float(_sk_auc(fpr, tpr))


def auc_estimate(
    pos: ArrayLike,
    neg: ArrayLike,
    *,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    random_state: int = 0,
) -> Estimate:
    """ROC AUC with a percentile bootstrap interval (members and non-members resampled apart)."""
    p, n = _scores(pos, neg)
    value = roc_auc(p, n)
    if not math.isfinite(value) or n_bootstrap < 1:
        return Estimate(value, math.nan, math.nan, confidence, "bootstrap")
    rng = np.random.default_rng(random_state)
    reps = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        reps[b] = roc_auc(p[rng.integers(0, len(p), len(p))], n[rng.integers(0, len(n), len(n))])
    a = 1.0 - confidence
    lo, hi = np.quantile(reps, [a / 2, 1 - a / 2])
    return Estimate(value, float(lo), float(hi), confidence, "bootstrap")


def roc_curve(pos: ArrayLike, neg: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of the rule "member when score >= threshold", from (0, 0).

    The first threshold is ``+inf`` (nobody flagged); one point per distinct score follows
    (scikit-learn's curve without dropping collinear points). With no members (no non-members)
    the TPR (FPR) is 0 at every threshold.
    """
    p, n = _scores(pos, neg)
    if len(p) == 0 and len(n) == 0:
        return np.zeros(1), np.zeros(1), np.array([np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # one class only: NaN rates
        fpr, tpr, thresholds = _sk_roc_curve(*_labelled(p, n), drop_intermediate=False)
    return np.nan_to_num(fpr, nan=0.0), np.nan_to_num(tpr, nan=0.0), thresholds


def tpr_at_fpr(pos: ArrayLike, neg: ArrayLike, fpr: float, confidence: float = 0.95) -> Estimate:
    """The highest TPR of a threshold whose FPR is at most ``fpr``, with a Clopper-Pearson
    interval over the members (the threshold itself is read off the same data)."""
    p, n = _scores(pos, neg)
    if len(p) == 0 or len(n) == 0:
        return Estimate(math.nan, math.nan, math.nan, confidence, "clopper-pearson")
    f, t, _ = roc_curve(p, n)
    best = float(t[f <= fpr + 1e-12].max())
    return proportion_estimate(round(best * len(p)), len(p), confidence)


# -- empirical epsilon --------------------------------------------------------------------------
def epsilon_bounds(
    tp: float, n_pos: int, fp: float, n_neg: int, *, delta: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """``(point, lower, upper)`` epsilon implied by a test with ``tp/n_pos`` TPR, ``fp/n_neg`` FPR.

    ``lower`` holds with probability ``confidence`` (one-sided Clopper-Pearson ends at
    ``(1 - confidence) / 2`` for each rate); ``point`` uses rates smoothed by one half-count
    (finite even at FPR 0); ``upper`` uses the optimistic ends and may be infinite. All are
    floored at 0.
    """
    a = (1.0 - confidence) / 2
    tpr_lo = float(_cp_lower(np.array([tp]), np.array([n_pos]), a)[0])
    fpr_hi = float(_cp_upper(np.array([fp]), np.array([n_neg]), a)[0])
    tpr_hi = float(_cp_upper(np.array([tp]), np.array([n_pos]), a)[0])
    fpr_lo = float(_cp_lower(np.array([fp]), np.array([n_neg]), a)[0])
    tpr_s, fpr_s = (tp + 0.5) / (n_pos + 1), (fp + 0.5) / (n_neg + 1)
    return (
        _eps(tpr_s, fpr_s, delta),
        _eps(tpr_lo, fpr_hi, delta),
        _eps(tpr_hi, fpr_lo, delta),
    )


def _eps(tpr: float | np.ndarray, fpr: float | np.ndarray, delta: float) -> float | np.ndarray:
    """``max(log((TPR - d) / FPR), log((1 - FPR - d) / (1 - TPR)), 0)``, elementwise."""
    tpr, fpr = np.asarray(tpr, dtype="float64"), np.asarray(fpr, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(tpr - delta > 0, np.log(np.maximum(tpr - delta, 1e-300) / fpr), -np.inf)
        b = np.where(
            1 - fpr - delta > 0,
            np.log(np.maximum(1 - fpr - delta, 1e-300) / (1 - tpr)),
            -np.inf,
        )
    a, b = np.where(np.isnan(a), -np.inf, a), np.where(np.isnan(b), -np.inf, b)
    out = np.maximum(np.maximum(a, b), 0.0)
    return float(out) if out.ndim == 0 else out


def empirical_epsilon(
    pos: ArrayLike,
    neg: ArrayLike,
    *,
    delta: float,
    confidence: float = 0.95,
    random_state: int = 0,
) -> tuple[Estimate, dict[str, float]]:
    """Empirical epsilon of the rule "member when score >= t", t chosen on a separate half.

    Returns the estimate (``value`` the smoothed point figure, ``ci_low`` the lower bound that
    holds with ``confidence``, ``ci_high`` the optimistic end) and the rates behind it.
    """
    p, n = _scores(pos, neg)
    nan = Estimate(math.nan, math.nan, math.nan, confidence, "clopper-pearson")
    if len(p) < 2 or len(n) < 2:
        return nan, {}
    rng = np.random.default_rng(random_state)
    p, n = rng.permutation(p), rng.permutation(n)
    p_sel, p_eval = p[: len(p) // 2], p[len(p) // 2 :]
    n_sel, n_eval = n[: len(n) // 2], n[len(n) // 2 :]
    cands = np.unique(np.concatenate([p_sel, n_sel]))  # every distinct score is a threshold
    a = (1.0 - confidence) / 2
    tp = len(p_sel) - np.searchsorted(np.sort(p_sel), cands, side="left")  # scores >= t
    fp = len(n_sel) - np.searchsorted(np.sort(n_sel), cands, side="left")
    lows = _eps(
        _cp_lower(tp, np.full_like(tp, len(p_sel)), a),
        _cp_upper(fp, np.full_like(fp, len(n_sel)), a),
        delta,
    )
    smooth = _eps((tp + 0.5) / (len(p_sel) + 1), (fp + 0.5) / (len(n_sel) + 1), delta)
    best = int(np.lexsort((smooth, lows))[-1])  # highest bound, then highest point figure
    t = cands[best]
    tp_e, fp_e = int((p_eval >= t).sum()), int((n_eval >= t).sum())
    point, lo, hi = epsilon_bounds(
        tp_e, len(p_eval), fp_e, len(n_eval), delta=delta, confidence=confidence
    )
    rates = {
        "true_positive_rate": tp_e / len(p_eval),
        "false_positive_rate": fp_e / len(n_eval),
        "members": len(p_eval),
        "non_members": len(n_eval),
        "delta": delta,
    }
    return Estimate(point, lo, hi, confidence, "clopper-pearson"), rates


# -- copies and members beyond chance ----------------------------------------------------------
def _first_consistent(hi: int, consistent: Callable[[int], bool]) -> int:
    """The smallest ``c`` in ``[0, hi]`` with ``consistent(c)``, for a ``consistent`` that is
    False up to some point and True from there on (``consistent(hi)`` must be True)."""
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if consistent(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _beyond_chance(
    hits: int,
    expected: float,
    upper_tail: Callable[[int], float],
    lower_tail: Callable[[int], float],
    confidence: float,
    method: str,
) -> Estimate:
    """``c`` with the interval of the test inversion; ``upper_tail(c)`` is ``P(X >= hits - c)``
    and ``lower_tail(c)`` is ``P(X <= hits - c)`` under the null with ``c`` hits removed."""
    a = (1.0 - confidence) / 2
    low = _first_consistent(hits, lambda c: upper_tail(c) > a)
    if lower_tail(0) <= a:
        high = 0
    else:  # the largest c whose lower tail is above a: lower_tail falls as c grows
        high = hits - _first_consistent(hits, lambda j: lower_tail(hits - j) > a)
    value = min(max(hits - expected, 0.0), float(hits))
    return Estimate(float(value), float(low), float(max(high, low)), confidence, method)


def copies_beyond_chance(
    k_train: int, k_holdout: int, p_train: float, confidence: float = 0.95
) -> Estimate:
    """How many distinctive training records the synthetic data copied, beyond chance.

    Args:
        k_train: distinct synthetic records equal to a distinctive training record (one whose
            content occurs once among the training and holdout records together).
        k_holdout: the same for distinctive holdout records.
        p_train: the training share of the real records compared (0.5 for equal samples).
        confidence: the interval's coverage; each end is a one-sided bound at
            ``(1 + confidence) / 2`` (``confidence=0.9`` gives one-sided 95 % bounds).

    Returns:
        ``value``: ``k_train`` minus what chance puts there, ``k_holdout * p / (1 - p)``, at
        least 0; ``ci_low``: the smallest number of copies ``c`` for which ``k_train - c`` is
        consistent with ``Binomial(k_train - c + k_holdout, p_train)`` (exact one-sided test);
        ``ci_high``: the largest.

    Example:
        >>> copies_beyond_chance(5, 0, 0.5, 0.9).ci_low  # 0.5**5 = 0.031 < 0.05
        1.0
    """
    from scipy.stats import binom

    _check(k_train, k_train + k_holdout)
    if not 0.0 < p_train < 1.0:
        raise ValueError(f"p_train must be in (0, 1), got {p_train}")
    kt, kh = int(k_train), int(k_holdout)
    return _beyond_chance(
        kt,
        kh * p_train / (1.0 - p_train),
        lambda c: float(binom.sf(kt - c - 1, kt - c + kh, p_train)),
        lambda c: float(binom.cdf(kt - c, kt - c + kh, p_train)),
        confidence,
        "exact binomial test inversion",
    )


def members_beyond_chance(
    pos: ArrayLike, neg: ArrayLike, fpr: float = 0.01, confidence: float = 0.95
) -> tuple[Estimate, dict[str, float]]:
    """The share of members a membership attack flags beyond chance at a low FPR.

    The threshold is the score of the ``(k + 1)``-th highest non-member with
    ``k = floor(fpr * len(neg))``; members strictly above it are flagged (ties at the threshold
    are not, which keeps the test exact or conservative).

    Returns:
        The estimate, as a share of the members: ``value`` flagged members minus the number
        chance flags, ``(k + 1) * len(pos) / (len(neg) + 1)``, at least 0; ``ci_low`` and
        ``ci_high`` the smallest and largest number of surely recognised members consistent
        with the negative hypergeometric null (exact one-sided tests at ``(1 + confidence) /
        2`` each), divided by ``len(pos)``; and the counts behind it.
    """
    from scipy.stats import nhypergeom

    p, n = _scores(pos, neg)
    method = "exact negative hypergeometric test inversion"
    k = int(math.floor(fpr * len(n) + 1e-9))
    if len(p) == 0 or len(n) <= k:
        return Estimate(math.nan, math.nan, math.nan, confidence, method), {}
    threshold = float(np.sort(n)[::-1][k])
    hits = int((p > threshold).sum())
    m, r = len(p), k + 1

    def tail(c: int, upper: bool) -> float:
        dist = nhypergeom(m - c + len(n), m - c, r)
        return float(dist.sf(hits - c - 1) if upper else dist.cdf(hits - c))

    est = _beyond_chance(
        hits,
        r * m / (len(n) + 1),
        lambda c: tail(c, True),
        lambda c: tail(c, False),
        confidence,
        method,
    )
    share = Estimate(est.value / m, est.ci_low / m, est.ci_high / m, confidence, method)
    counts = {
        "members_flagged": hits,
        "non_members_flagged": int((n > threshold).sum()),
        "members_flagged_by_chance": r * m / (len(n) + 1),
        "members": m,
        "non_members": len(n),
    }
    return share, counts
