"""Audits of a synthetic cohort against the real training and holdout patients.

Privacy attacks (membership inference, attribute disclosure, re-identification) and fidelity and
utility figures share one shape (:mod:`medsynth.audit.base`) and one registry
(:mod:`medsynth.audit.registry`). This package stays light: import the submodules you need.
"""

from __future__ import annotations

from medsynth.audit.base import AuditInputs, AuditResult, Estimate

__all__ = ["AuditInputs", "AuditResult", "Estimate"]
