"""The patient generator: network, fitting helpers, sampler and the model artifact.

Training under DP-SGD lives in :mod:`medsynth.pipeline.train`; this package holds what it
trains (:class:`PatientNetwork`), how a trained model is stored and loaded
(:func:`load_model` returns a :class:`PatientModel` that samples and scores patients), and the
sampler with conditional generation.
"""

from medsynth.models.artifact import PatientModel, load_model, model_sha256
from medsynth.models.network import NetworkConfig, PatientNetwork
from medsynth.models.plan import TrainConfig

__all__ = [
    "NetworkConfig",
    "PatientModel",
    "PatientNetwork",
    "TrainConfig",
    "load_model",
    "model_sha256",
]
