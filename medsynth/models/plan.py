"""Training hyper-parameters and how their defaults follow from public facts.

:class:`TrainConfig` groups every knob of :func:`medsynth.pipeline.train.train`.
:func:`plan_schedule` turns it and the cohort size into the DP-SGD schedule: the Poisson sample
rate is ``1/k`` for a whole number ``k`` of steps per epoch (so Opacus' data loader, accountant
and ours agree exactly), and the step count is ``epochs * k``. Only the number of patients is
read from the data, as in every DP-SGD implementation that derives a sample rate from a batch
size; nothing else about the cohort shapes the schedule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from medsynth.encoding.vocabulary import EncodingConfig
from medsynth.errors import MedsynthError
from medsynth.models.network import NetworkConfig

if TYPE_CHECKING:
    from medsynth.schema import DatasetSchema

__all__ = [
    "DEFAULT_PRETRAIN_PATIENTS",
    "GRAD_SAMPLE_MODES",
    "Schedule",
    "TrainConfig",
    "plan_schedule",
    "resolve_pretraining",
]

GRAD_SAMPLE_MODES = ("hooks", "functorch", "ew", "ghost")
# Simulated public patients for pretraining when the schema describes time series.
DEFAULT_PRETRAIN_PATIENTS = 2000


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults sized for small and mid cohorts)."""

    epochs: int = 20
    batch_size: int | None = None  # expected Poisson batch; None: min(N/4, 512)
    learning_rate: float = 1e-2  # 3e-3 measured worse on flchain and pbcseq (docs/benchmarks.md)
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = "ew"  # fastest measured on CPU; see docs/performance.md
    prefix_shuffle: float = 0.5
    average_weights: bool = True  # release an exponential moving average of the DP iterates
    # None: DEFAULT_PRETRAIN_PATIENTS when the schema holds repeated measurements, else none
    # (see resolve_pretraining).
    pretrain_patients: int | None = None
    pretrain_epochs: int = 12
    pretrain_learning_rate: float = 3e-3
    pretrain_batch_size: int = 64
    network: NetworkConfig = field(default_factory=NetworkConfig)
    encoding: EncodingConfig = field(default_factory=EncodingConfig)

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            problems.append(
                f"grad_sample_mode {self.grad_sample_mode!r} is not one of "
                f"{', '.join(GRAD_SAMPLE_MODES)}"
            )
        if not 0.0 <= self.prefix_shuffle <= 1.0:
            problems.append(f"prefix_shuffle must lie in [0, 1], got {self.prefix_shuffle}")
        if (self.pretrain_patients or 0) < 0 or self.pretrain_epochs < 0:
            problems.append("pretrain_patients and pretrain_epochs must be >= 0")
        if problems:
            raise MedsynthError("invalid training configuration: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["network"] = self.network.to_dict()
        doc["encoding"] = self.encoding.to_dict()
        return doc


@dataclass(frozen=True)
class Schedule:
    """The DP-SGD schedule: ``steps_per_epoch`` Poisson batches of rate ``1/steps_per_epoch``."""

    steps_per_epoch: int
    epochs: int

    @property
    def sample_rate(self) -> float:
        return 1.0 / self.steps_per_epoch

    @property
    def steps(self) -> int:
        return self.steps_per_epoch * self.epochs


def plan_schedule(config: TrainConfig, n_patients: int) -> Schedule:
    """Steps per epoch from the expected batch size (default ``min(N/4, 512)``)."""
    if n_patients < 2:
        raise MedsynthError(f"training needs at least 2 patients, the cohort has {n_patients}")
    batch = config.batch_size or min(max(1, n_patients // 4), 512)
    batch = min(batch, n_patients)
    return Schedule(steps_per_epoch=max(1, round(n_patients / batch)), epochs=config.epochs)


def resolve_pretraining(config: TrainConfig, schema: DatasetSchema) -> TrainConfig:
    """Fix ``pretrain_patients`` when it is None, from the public schema alone.

    Simulated patients teach what the simulator knows in general: visit timing, how many
    measurements a record holds, how a lab value persists from one visit to the next. A schema
    whose channels hold at most one event each (a cross-sectional table: every record is one
    visit) has none of that to learn, and the only thing pretraining would leave behind is the
    simulator's invented relations between attribute and lab values, which the noisy DP steps
    must then undo (docs/benchmarks.md: flchain without pretraining). So the default is
    :data:`DEFAULT_PRETRAIN_PATIENTS` when ``max_events_per_channel > 1`` and 0 otherwise.
    """
    if config.pretrain_patients is not None:
        return config
    repeated = schema.limits.max_events_per_channel > 1
    return replace(config, pretrain_patients=DEFAULT_PRETRAIN_PATIENTS if repeated else 0)


def default_batch_note(n_patients: int) -> str:
    """Human-readable account of the default batch for ``n_patients`` (for docs and logs)."""
    s = plan_schedule(TrainConfig(), n_patients)
    return (
        f"{n_patients} patients: {s.steps_per_epoch} steps per epoch, sample rate "
        f"{s.sample_rate:.4g}, expected batch {math.floor(n_patients * s.sample_rate)}"
    )
