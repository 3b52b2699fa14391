"""The bottom layer: canonical JSON and hashing, shared by every record medsynth writes.

Privacy records, ledger lines, FHIR export manifests, model hashes and audit reports are all
written and hashed through :mod:`medsynth.core.canonical` and :mod:`medsynth.core.hashing`, so one
fact (a model's hash, a record's bytes) has one definition. Nothing here imports another part of
medsynth except :mod:`medsynth.errors`.
"""

from medsynth.core.canonical import (
    CANONICAL_FORMS,
    JCS,
    LEGACY,
    NotCanonicalError,
    canonical_form_of,
    canonical_json,
)
from medsynth.core.hashing import (
    digest_file,
    hash_file,
    hash_tree,
    sha256_hex,
    tree_digest,
    tree_files,
)

__all__ = [
    "CANONICAL_FORMS",
    "JCS",
    "LEGACY",
    "NotCanonicalError",
    "canonical_form_of",
    "canonical_json",
    "digest_file",
    "hash_file",
    "hash_tree",
    "sha256_hex",
    "tree_digest",
    "tree_files",
]
