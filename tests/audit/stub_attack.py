"""A minimal privacy evaluator for the pipeline tests: the share of exact copies.

It stands in for the attack modules where a test needs a privacy check that runs: the share of
synthetic patients whose whole record (ids left out) equals a training patient's, with the same
share for holdout patients as the baseline. Registered per test through ``monkeypatch`` (the
``exact_copies`` fixture of ``tests/conftest.py``).
"""

from __future__ import annotations

from medsynth.audit.base import AuditResult, Evaluator, not_run
from medsynth.audit.timeseries import record_fingerprints

NAME = "exact_copies"
TARGET = "tests.audit.stub_attack:ExactCopies"

# A policy check on it: at most 5 % of the synthetic records copy a training record.
CHECK = {
    "name": "copies",
    "evaluator": NAME,
    "metric": "share",
    "op": "<=",
    "threshold": 0.05,
}


class ExactCopies(Evaluator):
    """Share of synthetic records that copy a training record, beside the holdout's share."""

    name = NAME
    kind = "privacy"

    def _run(self) -> AuditResult:
        train, holdout, synth = self.inputs.train, self.inputs.holdout, self.inputs.synthetic
        if synth.n_patients == 0 or train.n_patients == 0:
            return not_run(self.name, self.kind, "needs training and synthetic patients")
        known = set(record_fingerprints(train).tolist())
        mine = record_fingerprints(synth)
        base = record_fingerprints(holdout)
        return AuditResult(
            name=self.name,
            kind=self.kind,
            status="ok",
            metrics={"share": sum(f in known for f in mine) / len(mine)},
            baseline={"share": sum(f in known for f in base) / max(1, len(base))},
        )


def register(monkeypatch) -> None:
    """Add the evaluator to the registry for one test."""
    from medsynth.audit import registry

    monkeypatch.setitem(registry.REGISTRY, NAME, TARGET)
