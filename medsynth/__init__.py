"""medsynth: privacy-first synthetic healthcare records.

medsynth learns generators of patient records and their time series from a real cohort under
patient-level differential privacy (DP-SGD via Opacus), tracks the epsilon spent on every source
dataset in a tamper-evident ledger, writes synthetic patients as HL7 FHIR R4, and audits the
result with membership-inference, attribute-disclosure and re-identification attacks.
"""

from importlib.metadata import PackageNotFoundError, version

from medsynth.cohort import Cohort, ConformanceReport, Source
from medsynth.errors import MedsynthError
from medsynth.schema import DatasetSchema, load_schema

try:
    __version__ = version("medsynth")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Cohort",
    "ConformanceReport",
    "DatasetSchema",
    "MedsynthError",
    "Source",
    "__version__",
    "load_schema",
]
