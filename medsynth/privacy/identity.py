"""Who is in a dataset, without naming anyone: keyed hashes of each patient's source id.

A dataset's budget must follow its patients, not its files: the same patients exported and
ingested again, written to CSV and read back, reordered, or read with a schema that drops a
channel or widens a bound are the same dataset. So the ledger recognises a cohort by the set of
its patients' **identity keys**: the first 16 hex digits of HMAC-SHA256, under the installation
key (:mod:`medsynth.privacy.installation`), of each patient's source id (the id the hospital's
export gave the patient, which ingest keeps and ``medsynth export`` writes back as an
identifier). No raw id reaches the ledger; without the key the keys cannot be tested against a
list of ids. :func:`recognise` is the rule the ledger applies before a charge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from medsynth.privacy.installation import installation_key, mac

__all__ = ["SAME_DATASET_SHARE", "Overlap", "identity_keys", "recognise"]

# A cohort whose patients are mostly (this share of them, or of the other dataset's) another
# dataset's patients is that dataset.
SAME_DATASET_SHARE = 0.5
_KEY_HEX = 16


def identity_keys(patient_ids: Iterable[str]) -> list[str]:
    """The sorted, distinct identity keys of ``patient_ids`` (surrounding spaces ignored)."""
    key = installation_key()
    return sorted({mac(key, b"patient:" + str(p).strip().encode())[:_KEY_HEX] for p in patient_ids})


@dataclass(frozen=True)
class Overlap:
    """How many of a cohort's patients a registered dataset already holds."""

    dataset: str
    shared: int
    cohort_patients: int
    dataset_patients: int

    @property
    def same(self) -> bool:
        """Whether the cohort is, by the rule, this dataset's patients."""
        return self.shared > 0 and (
            self.shared >= SAME_DATASET_SHARE * self.cohort_patients
            or self.shared >= SAME_DATASET_SHARE * self.dataset_patients
        )


def recognise(keys: Iterable[str], registered: Mapping[str, set[str]]) -> list[Overlap]:
    """The registered datasets that hold some of ``keys``, most shared first."""
    mine = set(keys)
    found = [
        Overlap(name, len(mine & theirs), len(mine), len(theirs))
        for name, theirs in registered.items()
        if mine & theirs
    ]
    return sorted(found, key=lambda o: (-o.shared, o.dataset))
