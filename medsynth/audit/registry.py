"""The explicit registry of audit evaluators: one name, one class, no discovery.

Each entry maps a registry key (the name a policy file uses) to the dotted path of its class,
imported on first use so that a broken optional evaluator never stops the others from loading.
Names are unique: building the registry refuses a duplicate, and an unknown name is answered with
the list of valid ones. To add an evaluator, add one line to ``_ENTRIES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from medsynth.errors import MedsynthError

_ENTRIES: tuple[tuple[str, str], ...] = (
    # privacy attacks
    ("mia_dcr", "medsynth.audit.mia:DcrMembershipAttack"),
    ("mia_density", "medsynth.audit.mia:DensityRatioMembershipAttack"),
    ("mia_likelihood", "medsynth.audit.mia:LikelihoodMembershipAttack"),
    ("attribute_disclosure", "medsynth.audit.attribute:AttributeDisclosure"),
    ("singling_out", "medsynth.audit.reidentification:SinglingOut"),
    ("linkability", "medsynth.audit.reidentification:Linkability"),
    ("record_matches", "medsynth.audit.reidentification:RecordMatches"),
    ("dcr_share", "medsynth.audit.reidentification:DcrShare"),
    # fidelity and utility
    ("fidelity", "medsynth.audit.fidelity:FidelityEvaluator"),
    ("timeseries", "medsynth.audit.timeseries:TimeSeriesEvaluator"),
    ("utility", "medsynth.audit.utility:UtilityEvaluator"),
    ("subgroups", "medsynth.audit.subgroups:SubgroupEvaluator"),
)


class UnknownEvaluatorError(MedsynthError, KeyError):
    """An evaluator name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def build_registry(entries: Iterable[tuple[str, str]]) -> dict[str, str]:
    """A name -> dotted-path dict, refusing duplicate names.

    Raises:
        ValueError: a name appears twice.
    """
    registry: dict[str, str] = {}
    for name, target in entries:
        if name in registry:
            raise ValueError(
                f"audit evaluator {name!r} registered twice "
                f"({registry[name]} and {target}); rename one"
            )
        registry[name] = target
    return registry


REGISTRY: dict[str, str] = build_registry(_ENTRIES)


def names() -> list[str]:
    """Every registered evaluator name, sorted."""
    return sorted(REGISTRY)


def get_evaluator(name: str) -> type:
    """The evaluator class registered as ``name``.

    Raises:
        UnknownEvaluatorError: ``name`` is not registered; the message lists the valid names.
    """
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UnknownEvaluatorError(
            f"unknown audit evaluator {name!r}; valid: {', '.join(names())}"
        ) from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
