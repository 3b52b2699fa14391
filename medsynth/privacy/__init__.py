"""Differential privacy in medsynth: accounting, the budget ledger, and DP-SGD training.

:mod:`medsynth.privacy.accounting` turns DP-SGD parameters into epsilon (and a target epsilon
into a noise multiplier) with Opacus' accountants and defines the ``privacy.json`` record;
:mod:`medsynth.privacy.ledger` is the per-dataset, append-only, tamper-evident budget ledger;
:mod:`medsynth.privacy.planning` calibrates a run's noise before it starts;
:mod:`medsynth.privacy.dpsgd` is the DP-SGD loop itself (with :mod:`~medsynth.privacy.averaging`
and :mod:`~medsynth.privacy.distributed`). Importing this package is cheap: Opacus and torch
load only when an epsilon is computed or a model trained.
"""

from medsynth.privacy.accounting import (
    DpSgdEvent,
    PrivacyRecord,
    calibrate_noise,
    compute_epsilon,
    default_delta,
)
from medsynth.privacy.ledger import Ledger, LedgerEvent, default_ledger_path

__all__ = [
    "DpSgdEvent",
    "Ledger",
    "LedgerEvent",
    "PrivacyRecord",
    "calibrate_noise",
    "compute_epsilon",
    "default_delta",
    "default_ledger_path",
]
