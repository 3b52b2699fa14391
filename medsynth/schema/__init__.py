"""Dataset schemas: the public description of a cohort.

A dataset schema names every patient attribute, condition code and time-series channel a cohort
may hold, with categories, bounds, units and FHIR homes, plus the per-patient limits. It is the
only source of domains in medsynth: encoders, bins and limits are derived from it, never from
data. :func:`load_schema` validates a file against ``schemas/dataset.schema.json`` and a set of
semantic rules, collecting every problem with its JSON path before raising once.
"""

from medsynth.schema.load import (
    load_json_schema,
    load_schema,
    parse_schema,
    schemas_dir,
    shipped_schemas,
)
from medsynth.schema.model import (
    Attribute,
    Category,
    Channel,
    ConditionCode,
    DatasetSchema,
    Limits,
    MeasurementGroup,
    Panel,
    TimeSpec,
)

__all__ = [
    "Attribute",
    "Category",
    "Channel",
    "ConditionCode",
    "DatasetSchema",
    "Limits",
    "MeasurementGroup",
    "Panel",
    "TimeSpec",
    "load_json_schema",
    "load_schema",
    "parse_schema",
    "schemas_dir",
    "shipped_schemas",
]
