"""Reports: canonical JSON, hashing, Ed25519 signing and verification, and HTML rendering.

The submodules are imported where used, so importing :mod:`medsynth.report` stays cheap:
:mod:`medsynth.report.canonical` (canonical JSON and SHA-256 hashes),
:mod:`medsynth.report.signing` (keys, signature envelopes, verification) and
:mod:`medsynth.report.html` (the self-contained HTML page).
"""
