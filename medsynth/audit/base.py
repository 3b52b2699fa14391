"""The shape every audit shares: its inputs, its estimates and its frozen result.

An evaluator (one per attack or fidelity figure) is built from :class:`AuditInputs` and keyword
parameters, runs in ``evaluate()`` (which returns the evaluator) and hands back an
:class:`AuditResult` from ``result()``. A result holds figures (plain numbers or
:class:`Estimate` values with a confidence interval), the figures a baseline or control attacker
reaches, the parameters used and small plot data. Results are plain data: ``to_dict()`` gives
JSON-able dictionaries and never any real record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsynth.cohort import Cohort
from medsynth.errors import NotFittedError
from medsynth.schema import DatasetSchema

KINDS = ("privacy", "fidelity", "utility")
STATUSES = ("ok", "not_run")


@dataclass(frozen=True)
class Estimate:
    """A rate or score with its confidence interval.

    Attributes:
        value: the point estimate.
        ci_low: lower end of the interval.
        ci_high: upper end of the interval.
        confidence: the interval's nominal coverage (0.95 = a 95 % interval).
        method: how the interval was made, e.g. ``"clopper-pearson"`` or ``"bootstrap"``.
    """

    value: float
    ci_low: float
    ci_high: float
    confidence: float = 0.95
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; non-finite numbers become ``None``."""
        return {
            "value": _finite(self.value),
            "ci_low": _finite(self.ci_low),
            "ci_high": _finite(self.ci_high),
            "confidence": float(self.confidence),
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Estimate:
        """Inverse of :meth:`to_dict` (``None`` reads back as NaN)."""

        def num(v: Any) -> float:
            return math.nan if v is None else float(v)

        return cls(
            value=num(d["value"]),
            ci_low=num(d["ci_low"]),
            ci_high=num(d["ci_high"]),
            confidence=float(d["confidence"]),
            method=str(d["method"]),
        )


@dataclass(frozen=True)
class AuditResult:
    """The frozen outcome of one evaluator.

    Attributes:
        name: registry key, e.g. ``"mia_dcr"``, ``"attribute_disclosure"``, ``"singling_out"``.
        kind: ``"privacy"``, ``"fidelity"`` or ``"utility"``.
        status: ``"ok"`` or ``"not_run"``.
        reason: why it did not run (empty when it ran).
        metrics: figures by name (an :class:`Estimate`, a number, a string or ``None``).
        baseline: what the control or baseline attacker reaches, by the same names.
        parameters: seeds, trial counts, quasi-identifiers and other settings used.
        details: small JSON-able plot data (ROC points, histograms); never real records.
    """

    name: str
    kind: str
    status: str
    reason: str = ""
    metrics: Mapping[str, Estimate | float | int | str | None] = field(default_factory=dict)
    baseline: Mapping[str, Estimate | float | None] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"AuditResult {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if self.status not in STATUSES:
            raise ValueError(
                f"AuditResult {self.name!r}: status {self.status!r} is not one of {STATUSES}"
            )
        if self.status == "not_run" and not self.reason:
            raise ValueError(f"AuditResult {self.name!r}: a not_run result needs a reason")

    @property
    def ok(self) -> bool:
        """True when the evaluator ran."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary: Estimates as dicts, NaN and infinities as ``None``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "metrics": _plain(self.metrics),
            "baseline": _plain(self.baseline),
            "parameters": _plain(self.parameters),
            "details": _plain(self.details),
        }


@dataclass(frozen=True)
class AuditInputs:
    """The three cohorts an audit compares, their schema and, optionally, the model artifact.

    Attributes:
        train: real patients the model was trained on (members).
        holdout: real patients the model never saw (non-members, the control).
        synthetic: the generated cohort under audit.
        schema: the public dataset schema all three conform to.
        model_dir: the model artifact folder, for likelihood attacks and the accounted epsilon.
        random_state: seed for every random choice of the audit.
    """

    train: Cohort
    holdout: Cohort
    synthetic: Cohort
    schema: DatasetSchema
    model_dir: Path | None = None
    random_state: int = 0


def not_run(
    name: str, kind: str, reason: str, parameters: Mapping[str, Any] | None = None
) -> AuditResult:
    """A ``not_run`` result with its reason."""
    return AuditResult(
        name=name, kind=kind, status="not_run", reason=reason, parameters=dict(parameters or {})
    )


class Evaluator:
    """Small base for evaluators: stores inputs, guards ``result()`` before ``evaluate()``.

    Subclasses set ``name`` and ``kind``, implement ``_run() -> AuditResult`` and keep their
    keyword parameters as attributes (scikit-learn style: ``__init__`` stores, nothing else).
    """

    name: str = ""
    kind: str = "privacy"

    def __init__(self, inputs: AuditInputs) -> None:
        self.inputs = inputs

    def _run(self) -> AuditResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self) -> Evaluator:
        """Run the evaluator; returns self."""
        self.result_ = self._run()
        return self

    def result(self) -> AuditResult:
        """The result of :meth:`evaluate`.

        Raises:
            NotFittedError: when ``evaluate()`` was not called.
        """
        if not hasattr(self, "result_"):
            raise NotFittedError(f"{type(self).__name__}: call evaluate() before result()")
        return self.result_


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _plain(value: Any) -> Any:
    """Recursively turn numpy scalars, tuples and Estimates into JSON-able values."""
    if isinstance(value, Estimate):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _plain(value.tolist())
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _finite(value)
    return value
