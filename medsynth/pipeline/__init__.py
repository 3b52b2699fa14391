"""The pipeline: the stages run in order, and the one place that owns the ledger sequence.

Every entry point of medsynth — the command line, the public Python API
(:class:`~medsynth.pipeline.api.Synthesizer`) and ``medsynth demo`` — goes through these
modules, which call the stages below them and nothing calls them from below:

* :mod:`~medsynth.pipeline.train`: plan, charge, pretrain, DP-SGD, write, settle;
* :mod:`~medsynth.pipeline.generate`: sample a model into cohort chunks, name the release;
* :mod:`~medsynth.pipeline.audit`: evaluate a policy, write and sign the report;
* :mod:`~medsynth.pipeline.provenance`: the model hash and the records that name it;
* :mod:`~medsynth.pipeline.demo`: the whole job on simulated data;
* :mod:`~medsynth.pipeline.api`: the scikit-learn-like :class:`Synthesizer`.

Submodules are imported where used, so importing this package loads neither torch nor Opacus.
"""
