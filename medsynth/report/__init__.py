"""Reports: Ed25519 signing and verification, and HTML rendering.

The submodules are imported where used, so importing :mod:`medsynth.report` stays cheap:
:mod:`medsynth.report.signing` (keys, signature envelopes, verification) and
:mod:`medsynth.report.html` (the self-contained HTML page).
"""
