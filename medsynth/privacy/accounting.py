"""Privacy accounting for DP-SGD: epsilon from (sample rate, noise, steps), noise from a target.

medsynth does no privacy mathematics of its own: :func:`compute_epsilon` hands one immutable
:class:`DpSgdEvent` (Poisson-subsampled Gaussian mechanism repeated ``steps`` times) to one of
Opacus' accountants, under the names Opacus uses: ``"prv"`` (privacy random variables, Gopi et
al. 2021, the default: the tightest of the three, reported as its upper bound), ``"rdp"``
(Rényi DP, Mironov 2017; Mironov, Talwar and Zhang 2019) and ``"gdp"`` (Gaussian DP, Dong,
Roth and Su 2019; an asymptotic approximation that Opacus itself marks experimental).
:func:`calibrate_noise` searches the smallest noise multiplier whose recomputed epsilon does not
exceed a target. :func:`default_delta` is the delta used when none is given.
:class:`PrivacyRecord` is the ``privacy.json`` of a model artifact: everything needed to
recompute its epsilon. Opacus (and so torch) is imported only when an epsilon is computed, so
reading or writing records stays cheap.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from medsynth.errors import DataError, MedsynthError, Problem, ValidationError

__all__ = [
    "ACCOUNTANTS",
    "COMPOSITION",
    "DpSgdEvent",
    "PrivacyParameterError",
    "PrivacyRecord",
    "PrivacyRecordError",
    "calibrate_noise",
    "compute_epsilon",
    "default_delta",
]

ACCOUNTANTS: tuple[str, ...] = ("prv", "rdp", "gdp")
"""Opacus accountant names medsynth accepts."""

COMPOSITION = "basic"
"""How the ledger composes releases of one dataset: epsilons add, deltas add."""

_MAX_SIGMA = 1e4
_MIN_SIGMA = 0.05


# Fields of a model's privacy.json around the record itself (see medsynth.models.artifact).
DOCUMENT_FIELDS = frozenset({"format", "model_sha256", "releasable"})


class PrivacyParameterError(MedsynthError, ValueError):
    """A privacy parameter (epsilon, delta, sample rate, noise, steps) is out of range."""


class EpsilonOutOfReach(PrivacyParameterError):
    """The noise search cannot meet the target: even the largest noise multiplier spends more.

    ``smallest`` is the epsilon that largest multiplier gives with the same schedule (the
    smallest target the search can reach), or None when it could not be computed.
    """

    def __init__(self, message: str, smallest: float | None = None) -> None:
        super().__init__(message)
        self.smallest = smallest


class PrivacyRecordError(MedsynthError):
    """A privacy record whose stated epsilon is not what its own parameters give."""


# -- events and epsilon ----------------------------------------------------------------------
@dataclass(frozen=True)
class DpSgdEvent:
    """``steps`` Poisson-subsampled Gaussian steps: rate ``sample_rate``, noise ``sigma * C``.

    Args:
        sample_rate: probability q that each patient is in a step's batch, in (0, 1].
        noise_multiplier: sigma, the noise standard deviation over the clipping norm; > 0.
        steps: number of noisy gradient steps T; >= 1.
    """

    sample_rate: float
    noise_multiplier: float
    steps: int

    def __post_init__(self) -> None:
        _check_rate(self.sample_rate)
        _check_positive("noise_multiplier", self.noise_multiplier)
        _check_steps(self.steps)


def _check_rate(q: Any) -> None:
    if not _is_number(q) or not 0.0 < q <= 1.0:
        raise PrivacyParameterError(
            f"sample_rate must be a number in (0, 1], got {q!r}; it is expected batch size / N"
        )


def _check_positive(name: str, value: Any) -> None:
    if not _is_number(value) or not (value > 0 and math.isfinite(value)):
        raise PrivacyParameterError(f"{name} must be a finite number > 0, got {value!r}")


def _check_steps(steps: Any) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PrivacyParameterError(f"steps must be a whole number >= 1, got {steps!r}")


def _check_delta(delta: Any) -> None:
    if not _is_number(delta) or not 0.0 < delta < 1.0:
        raise PrivacyParameterError(
            f"delta must be a number in (0, 1), got {delta!r}; the default is default_delta(N)"
        )


def _check_accountant(accountant: Any) -> None:
    if accountant not in ACCOUNTANTS:
        raise PrivacyParameterError(
            f"unknown accountant {accountant!r}; choose one of {', '.join(ACCOUNTANTS)}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _opacus_accountant(name: str):
    """A fresh Opacus accountant; Opacus' warning that ``gdp`` is experimental is kept."""
    from opacus.accountants import create_accountant

    return create_accountant(mechanism=name)


def compute_epsilon(event: DpSgdEvent, *, delta: float, accountant: str = "prv") -> float:
    """The epsilon of ``event`` at ``delta``, exactly as the named Opacus accountant gives it.

    The accountant's history is the single entry ``(noise_multiplier, sample_rate, steps)``,
    which is what Opacus' own ``step()`` builds over ``steps`` identical steps.

    Example:
        >>> compute_epsilon(DpSgdEvent(sample_rate=0.01, noise_multiplier=1.1, steps=100),
        ...                 delta=1e-5, accountant="rdp")  # doctest: +SKIP
        0.956...
    """
    if not isinstance(event, DpSgdEvent):
        raise PrivacyParameterError(f"event must be a DpSgdEvent, got {type(event).__name__}")
    _check_delta(delta)
    _check_accountant(accountant)
    acc = _opacus_accountant(accountant)
    acc.history = [(event.noise_multiplier, event.sample_rate, event.steps)]
    return float(acc.get_epsilon(delta=delta))


def calibrate_noise(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "prv",
    rel_tol: float = 2e-3,
) -> float:
    """The (near) smallest noise multiplier whose epsilon at ``delta`` is at most the target.

    A bisection on log(sigma): every candidate kept as the answer had its epsilon recomputed
    with :func:`compute_epsilon` and found ``<= target_epsilon``, so the guarantee never rests
    on the search's precision. The search stops once that epsilon is within ``rel_tol`` (0.2 %)
    below the target, so little budget is left unused.

    Raises:
        PrivacyParameterError: a parameter is out of range, or the target cannot be met even
            with noise multiplier 10,000 (too many steps for so small an epsilon).
    """
    _check_positive("target_epsilon", target_epsilon)
    _check_delta(delta)
    _check_rate(sample_rate)
    _check_steps(steps)
    _check_accountant(accountant)

    def eps(sigma: float) -> float:
        event = DpSgdEvent(sample_rate=sample_rate, noise_multiplier=sigma, steps=steps)
        try:
            return compute_epsilon(event, delta=delta, accountant=accountant)
        except PrivacyParameterError:
            raise
        except ValueError:  # Opacus' GDP root search fails when epsilon exceeds its range
            return math.inf

    with warnings.catch_warnings():  # one warning per search is enough, not one per probe
        warnings.simplefilter("ignore")
        lo, hi = _bracket(eps, target_epsilon)
        if lo is not None:
            hi = _refine(eps, target_epsilon, lo, hi, rel_tol)
        if eps(hi) > target_epsilon:  # recomputed, independent of the search's bookkeeping
            raise PrivacyRecordError(f"noise {hi} gives epsilon above the target {target_epsilon}")
    return hi


def _refine(eps, target: float, lo: float, hi: float, rel_tol: float) -> float:
    """Shrink ``[lo, hi]`` (eps(lo) > target >= eps(hi)) by regula falsi (Illinois variant)
    on log epsilon against log sigma, falling back to bisection; return the final ``hi``."""
    x_lo, x_hi = math.log(lo), math.log(hi)
    e_lo, e_hi = eps(lo), eps(hi)
    f_lo, f_hi = _log_ratio(e_lo, target), _log_ratio(e_hi, target)
    side = 0
    for _ in range(60):
        if e_hi >= target * (1.0 - rel_tol) or x_hi - x_lo <= 1e-12:
            break
        x = x_hi - f_hi * (x_hi - x_lo) / (f_hi - f_lo) if math.isfinite(f_lo) else math.nan
        if not x_lo < x < x_hi:
            x = (x_lo + x_hi) / 2
        sigma = math.exp(x)
        e = eps(sigma)
        f = _log_ratio(e, target)
        if e <= target:
            x_hi, f_hi, e_hi, hi = x, f, e, sigma
            f_lo, side = (f_lo / 2 if side == -1 else f_lo), -1
        else:
            x_lo, f_lo = x, f
            f_hi, side = (f_hi / 2 if side == 1 else f_hi), 1
    return hi


def _log_ratio(value: float, target: float) -> float:
    return math.log(value / target) if value > 0 else -math.inf


def _bracket(eps, target: float) -> tuple[float | None, float]:
    """``(lo, hi)`` with eps(lo) > target >= eps(hi); ``lo`` None when hi is the floor."""
    sigma = 1.0
    if eps(sigma) <= target:
        while sigma > _MIN_SIGMA:
            lower = sigma / 2
            if eps(lower) > target:
                return lower, sigma
            sigma = lower
        return None, sigma
    while sigma < _MAX_SIGMA:
        higher = sigma * 2
        if eps(higher) <= target:
            return sigma, higher
        sigma = higher
    smallest = eps(_MAX_SIGMA)
    raise EpsilonOutOfReach(
        f"target epsilon {target:g} is out of reach: even noise multiplier {_MAX_SIGMA:g} "
        f"gives {smallest:.3g}; raise --epsilon to at least that, or train fewer steps "
        "(fewer epochs, larger batches)",
        smallest=smallest,
    )


def default_delta(n_patients: int) -> float:
    """The delta used when none is given: ``min(1e-5, 1/(10 N))`` rounded down to a power of 10.

    Well below 1/N, so the failure probability cannot be "publish one patient's record".
    Examples: N = 500 -> 1e-5; N = 20,000 -> 1e-6; N = 100,000 -> 1e-6; N = 100,001 -> 1e-7.
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, int) or n_patients < 1:
        raise PrivacyParameterError(f"n_patients must be a whole number >= 1, got {n_patients!r}")
    exponent = max(5, len(str(10 * n_patients - 1)))  # smallest k >= 5 with 10**k >= 10 N
    return float(f"1e-{exponent}")


# -- the privacy record of a model artifact ----------------------------------------------------
_FLOATS = ("sample_rate", "noise_multiplier", "max_grad_norm", "delta", "epsilon")
_TYPES: dict[str, tuple[type, ...]] = {
    "mechanism": (str,),
    "unit": (str,),
    "accountant": (str,),
    "sample_rate": (int, float),
    "noise_multiplier": (int, float),
    "max_grad_norm": (int, float),
    "steps": (int,),
    "delta": (int, float),
    "epsilon": (int, float),
    "target_epsilon": (int, float, type(None)),
    "opacus_version": (str,),
    "poisson_sampling": (bool,),
    "world_size": (int,),
    "composition": (str,),
}


@dataclass(frozen=True, kw_only=True)
class PrivacyRecord:
    """What a DP-SGD run spent, with everything needed to recompute it (``privacy.json``).

    Attributes:
        mechanism: ``"dp-sgd"``: Poisson-subsampled Gaussian gradient steps with clipping.
        unit: ``"patient"``: one training example is one patient's whole record.
        accountant: the Opacus accountant that computed ``epsilon`` (``prv``, ``rdp``, ``gdp``).
        sample_rate: Poisson sampling rate q of the global batch (expected batch / N).
        noise_multiplier: sigma; the noise standard deviation is ``sigma * max_grad_norm``.
        max_grad_norm: per-patient gradient clipping norm C (does not enter epsilon).
        steps: number of noisy steps T actually charged.
        delta: the delta of the guarantee.
        epsilon: the accountant's epsilon for (q, sigma, T) at ``delta``.
        target_epsilon: the epsilon asked for (``epsilon <= target_epsilon``), or None.
        opacus_version: the Opacus version that computed ``epsilon``.
        poisson_sampling: always True: the accountants assume Poisson sampling.
        world_size: number of training processes (q and T are those of the global batch).
        composition: how the ledger adds this release to others of the same dataset
            (``"basic"``: epsilons add and deltas add).
    """

    mechanism: str = "dp-sgd"
    unit: str = "patient"
    accountant: str
    sample_rate: float
    noise_multiplier: float
    max_grad_norm: float
    steps: int
    delta: float
    epsilon: float
    target_epsilon: float | None = None
    opacus_version: str
    poisson_sampling: bool = True
    world_size: int = 1
    composition: str = COMPOSITION

    def __post_init__(self) -> None:
        for name in (*_FLOATS, "target_epsilon"):  # JSON may give 1 for 1.0
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        problems = _record_problems(self)
        if problems:
            raise ValidationError("privacy record", problems)

    @property
    def event(self) -> DpSgdEvent:
        """The DP-SGD event this record accounts."""
        return DpSgdEvent(
            sample_rate=self.sample_rate, noise_multiplier=self.noise_multiplier, steps=self.steps
        )

    def recompute_epsilon(self) -> float:
        """Epsilon recomputed from this record's own parameters with its accountant."""
        return compute_epsilon(self.event, delta=self.delta, accountant=self.accountant)

    def verify(self, *, rel_tol: float = 1e-9) -> float:
        """Recompute epsilon; raise if the record understates it or exceeds its target.

        Returns:
            The recomputed epsilon.

        Raises:
            PrivacyRecordError: recomputed epsilon above the stated one (beyond ``rel_tol``,
                which allows for another Opacus version's rounding), or stated epsilon above
                ``target_epsilon``.
        """
        again = self.recompute_epsilon()
        if again > self.epsilon * (1.0 + rel_tol):
            raise PrivacyRecordError(
                f"privacy record states epsilon {self.epsilon!r} but its parameters give "
                f"{again!r} with accountant {self.accountant!r} (Opacus {self.opacus_version} "
                "wrote it); the record understates the privacy cost and must not be trusted"
            )
        if self.target_epsilon is not None and self.epsilon > self.target_epsilon:
            raise PrivacyRecordError(
                f"privacy record states epsilon {self.epsilon!r} above its target "
                f"{self.target_epsilon!r}"
            )
        return again

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (the content of ``privacy.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "privacy record") -> PrivacyRecord:
        """Validate and build a record; every problem is collected and raised at once.

        The fields a model's ``privacy.json`` adds around the record (:data:`DOCUMENT_FIELDS`:
        its format, the model hash it names, whether it is releasable) are not part of the
        record and are skipped.

        Raises:
            ValidationError: unknown or missing fields, wrong types, values out of range.
        """
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k not in DOCUMENT_FIELDS}
        if not isinstance(data, dict):
            raise ValidationError(
                where, [Problem("$", f"expected an object, got {type(data).__name__}")]
            )
        known = {f.name for f in fields(cls)}
        required = {
            "accountant",
            "sample_rate",
            "noise_multiplier",
            "max_grad_norm",
            "steps",
            "delta",
            "epsilon",
            "opacus_version",
        }
        problems = [
            Problem(f"$.{k}", "unknown field; remove it") for k in sorted(set(data) - known)
        ]
        problems += [
            Problem(f"$.{k}", "required field is missing") for k in sorted(required - set(data))
        ]
        problems += [p for key, value in sorted(data.items()) if (p := _type_problem(key, value))]
        if problems:
            raise ValidationError(where, problems)
        try:
            return cls(**data)
        except ValidationError as exc:
            raise ValidationError(where, exc.problems) from None

    def save(self, path: str | Path) -> Path:
        """Write the record as canonical JSON (sorted keys, no whitespace), atomically."""
        from medsynth._io import atomic_write_bytes
        from medsynth.core.canonical import canonical_json

        target = Path(path)
        atomic_write_bytes(target, canonical_json(self.to_dict()))
        return target

    @classmethod
    def load(cls, path: str | Path) -> PrivacyRecord:
        """Read and validate a ``privacy.json``.

        Raises:
            DataError: the file cannot be read or is not JSON.
            ValidationError: the content is not a valid record (problems listed with JSON paths).
        """
        source = Path(path)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{source}: cannot read the privacy record: {exc}") from None
        return cls.from_dict(data, where=str(source))


def _type_problem(key: str, value: Any) -> Problem | None:
    types = _TYPES.get(key)
    if types is None or (
        isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    ):
        return None
    expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
    return Problem(f"$.{key}", f"{value!r} has type {type(value).__name__}, expected {expected}")


def _record_problems(rec: PrivacyRecord) -> list[Problem]:
    """Every out-of-range value of a record (types are checked by ``from_dict``)."""
    checks: list[tuple[str, bool, str]] = [
        ("mechanism", rec.mechanism == "dp-sgd", "must be 'dp-sgd'"),
        ("unit", rec.unit == "patient", "must be 'patient' (patient-level privacy)"),
        ("accountant", rec.accountant in ACCOUNTANTS, f"must be one of {', '.join(ACCOUNTANTS)}"),
        ("sample_rate", _in(rec.sample_rate, 0.0, 1.0, high_ok=True), "must lie in (0, 1]"),
        ("noise_multiplier", _in(rec.noise_multiplier, 0.0, math.inf), "must be > 0"),
        ("max_grad_norm", _in(rec.max_grad_norm, 0.0, math.inf), "must be > 0"),
        ("steps", _whole(rec.steps, 1), "must be a whole number >= 1"),
        ("delta", _in(rec.delta, 0.0, 1.0), "must lie in (0, 1)"),
        ("epsilon", _in(rec.epsilon, 0.0, math.inf), "must be a finite number > 0"),
        (
            "target_epsilon",
            rec.target_epsilon is None or _in(rec.target_epsilon, 0.0, math.inf),
            "must be a finite number > 0 or null",
        ),
        (
            "opacus_version",
            isinstance(rec.opacus_version, str) and bool(rec.opacus_version),
            "must name the Opacus version",
        ),
        (
            "poisson_sampling",
            rec.poisson_sampling is True,
            "must be true: the accountants hold only for Poisson sampling",
        ),
        ("world_size", _whole(rec.world_size, 1), "must be a whole number >= 1"),
        ("composition", rec.composition == COMPOSITION, f"must be {COMPOSITION!r}"),
    ]
    return [
        Problem(f"$.{name}", f"{getattr(rec, name)!r} {why}") for name, ok, why in checks if not ok
    ]


def _in(value: Any, low: float, high: float, *, high_ok: bool = False) -> bool:
    if not _is_number(value) or not math.isfinite(value) or not value > low:
        return False
    return value <= high if high_ok else value < high


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low
