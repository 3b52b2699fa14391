"""The parts of the rule-based simulator; the public entry is :mod:`medsynth.simulate`.

Each module holds one piece of public knowledge or one step: :mod:`.concepts` (diseases),
:mod:`.traits` (measurements), :mod:`.plan` (what a schema maps to), :mod:`.demographics`,
:mod:`.conditions`, :mod:`.visits` and :mod:`.physiology` (the steps), :mod:`.streams` (named
random streams) and :mod:`.block` (one block of patients, start to finish).
"""
