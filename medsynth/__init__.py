"""medsynth: privacy-first synthetic healthcare records.

medsynth learns generators of patient records and their time series from a real cohort under
patient-level differential privacy (DP-SGD via Opacus), tracks the epsilon spent on every source
dataset in a tamper-evident ledger, writes synthetic patients as HL7 FHIR R4, and audits the
result with membership-inference, attribute-disclosure and re-identification attacks.

The public API, pandas or FHIR in and out::

    from medsynth import Ledger, Synthesizer, load_schema, read_fhir

    schema = load_schema("general-adult")
    real = read_fhir(["export/"], schema).cohort           # or medsynth.simulate.simulate(...)
    synth = Synthesizer(epsilon=3.0, ledger=Ledger.create("ledger.jsonl")).fit(real)
    fake = synth.sample(1000)                              # fake.patients, fake.events: DataFrames
    synth.sample_fhir(1000, "synthetic-fhir/")             # bulk ndjson with a manifest

Names are imported lazily, so ``import medsynth`` loads neither torch nor Opacus.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from medsynth.cohort import Cohort, ConformanceReport, Source
from medsynth.errors import MedsynthError
from medsynth.schema import DatasetSchema, load_schema

if TYPE_CHECKING:
    from medsynth.audit.base import AuditInputs
    from medsynth.audit.policy import load_policy
    from medsynth.fhir.read import read_fhir
    from medsynth.fhir.write import write_fhir
    from medsynth.models.plan import TrainConfig
    from medsynth.pipeline.api import Synthesizer
    from medsynth.pipeline.audit import AuditReport, run_audit
    from medsynth.pipeline.provenance import check_chain
    from medsynth.privacy.accounting import PrivacyRecord
    from medsynth.privacy.ledger import Ledger
    from medsynth.report.signing import verify_report

try:
    __version__ = version("medsynth")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# name -> module that defines it (imported on first use)
_LAZY = {
    "AuditInputs": "medsynth.audit.base",
    "AuditReport": "medsynth.pipeline.audit",
    "Ledger": "medsynth.privacy.ledger",
    "PrivacyRecord": "medsynth.privacy.accounting",
    "Synthesizer": "medsynth.pipeline.api",
    "TrainConfig": "medsynth.models.plan",
    "check_chain": "medsynth.pipeline.provenance",
    "load_policy": "medsynth.audit.policy",
    "read_fhir": "medsynth.fhir.read",
    "run_audit": "medsynth.pipeline.audit",
    "verify_report": "medsynth.report.signing",
    "write_fhir": "medsynth.fhir.write",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medsynth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AuditInputs",
    "AuditReport",
    "Cohort",
    "ConformanceReport",
    "DatasetSchema",
    "Ledger",
    "MedsynthError",
    "PrivacyRecord",
    "Source",
    "Synthesizer",
    "TrainConfig",
    "__version__",
    "check_chain",
    "load_policy",
    "load_schema",
    "read_fhir",
    "run_audit",
    "verify_report",
    "write_fhir",
]
