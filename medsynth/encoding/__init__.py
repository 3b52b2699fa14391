"""Schema-driven encoding of patients as token sequences; never fitted on data.

:func:`build_vocabulary` derives every token, bin edge and grammar rule from a dataset schema;
:func:`encode_cohort` turns a cohort into padded token matrices and :func:`decode_patients`
turns sampled tokens back into a cohort.
"""

from medsynth.encoding.decode import SampledPatients, decode_patients
from medsynth.encoding.encode import EncodedCohort, encode_cohort
from medsynth.encoding.vocabulary import EncodingConfig, Vocabulary, build_vocabulary

__all__ = [
    "EncodedCohort",
    "EncodingConfig",
    "SampledPatients",
    "Vocabulary",
    "build_vocabulary",
    "decode_patients",
    "encode_cohort",
]
