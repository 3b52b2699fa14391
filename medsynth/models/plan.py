"""Training hyper-parameters and the rule that chooses them from public quantities.

:class:`TrainConfig` groups every knob of :func:`medsynth.pipeline.train.train`. Its fields
left at ``None`` (expected batch, epochs, learning rate, pretraining patients) are filled by
:func:`resolve_config`, the documented rule of ``docs/training.md``: a pure function of the
number of patients N, the target epsilon (None for the non-private benchmark mode) and the
public schema. It never reads a record; delta enters through the noise calibration
(:func:`medsynth.privacy.planning.plan_privacy`), not here.

:func:`plan_schedule` turns a resolved configuration into the DP-SGD schedule: the Poisson
sample rate is ``1/k`` for a whole number ``k`` of steps per epoch (so Opacus' data loader,
accountant and ours agree exactly), and the step count is ``epochs * k``.
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
    "resolve_config",
    "resolve_pretraining",
    "rule_schedule",
    "rule_steps_per_epoch",
]

GRAD_SAMPLE_MODES = ("hooks", "functorch", "ew", "ghost")
# Simulated public patients for pretraining when the schema describes time series.
DEFAULT_PRETRAIN_PATIENTS = 2000


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults sized for small and mid cohorts)."""

    epochs: int | None = None  # None: the rule (rule_schedule)
    batch_size: int | None = None  # expected Poisson batch; None: the rule
    learning_rate: float | None = None  # None: the rule
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
        if self.epochs is not None and self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if self.learning_rate is not None and not (
            math.isfinite(self.learning_rate) and self.learning_rate > 0
        ):
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
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


# -- the rule ----------------------------------------------------------------------------------
# Every constant below is a public choice made once for all datasets (docs/training.md, "How
# the defaults are chosen"); none was fitted to a known dataset.
BATCH_SHARE = 4  # expected batch N / 4 ...
MAX_BATCH = 512  # ... up to this many patients
DP_EPOCHS = 20  # passes over the cohort in expectation under DP-SGD
DP_LEARNING_RATE = 1e-2
NONPRIVATE_MIN_STEPS = 1000  # the non-private ceiling trains at least this many steps ...
NONPRIVATE_EPOCHS = 20  # ... and at least this many epochs
NONPRIVATE_LEARNING_RATE = 1e-2


@dataclass(frozen=True)
class RuleChoice:
    """What :func:`rule_schedule` chose, with the reason of each figure (for ``--plan``)."""

    steps_per_epoch: int  # the Poisson sample rate is 1 / steps_per_epoch
    epochs: int
    learning_rate: float
    reasons: tuple[str, ...]


def rule_steps_per_epoch(n_patients: int) -> int:
    """The rule's steps per epoch ``k = max(4, ceil(N / 512))``: expected batch N / k."""
    if n_patients < 2:
        raise MedsynthError(f"training needs at least 2 patients, the cohort has {n_patients}")
    return max(BATCH_SHARE, math.ceil(n_patients / MAX_BATCH))


def rule_schedule(n_patients: int, epsilon: float | None) -> RuleChoice:
    """Sample rate, epochs and learning rate from N and epsilon alone.

    Args:
        n_patients: the cohort size N (the one figure of the data the rule reads; a DP-SGD
            sample rate is always derived from it).
        epsilon: the target epsilon; None for the non-private benchmark mode.
    """
    k = rule_steps_per_epoch(n_patients)
    reasons = [
        f"sample rate 1/{k}: expected batch N/{k} = {n_patients / k:.0f} patients "
        f"(N/{BATCH_SHARE}, at most {MAX_BATCH})"
    ]
    if epsilon is None:
        epochs = max(NONPRIVATE_EPOCHS, math.ceil(NONPRIVATE_MIN_STEPS / k))
        reasons.append(
            f"non-private: {epochs} epochs, at least {NONPRIVATE_MIN_STEPS} steps and "
            f"{NONPRIVATE_EPOCHS} epochs (without noise more steps only fit better)"
        )
        return RuleChoice(k, epochs, NONPRIVATE_LEARNING_RATE, tuple(reasons))
    reasons.append(f"{DP_EPOCHS} epochs under DP-SGD")
    return RuleChoice(k, DP_EPOCHS, DP_LEARNING_RATE, tuple(reasons))


def resolve_config(
    config: TrainConfig,
    *,
    n_patients: int,
    epsilon: float | None,
    schema: DatasetSchema,
) -> TrainConfig:
    """``config`` with epochs, learning rate and pretraining chosen by the rule where None.

    The expected batch stays None when not given: :func:`plan_schedule` then takes the rule's
    sample rate.
    """
    choice = rule_schedule(n_patients, epsilon)
    filled = replace(
        config,
        epochs=config.epochs or choice.epochs,
        learning_rate=config.learning_rate or choice.learning_rate,
    )
    return resolve_pretraining(filled, schema)


def plan_schedule(config: TrainConfig, n_patients: int) -> Schedule:
    """The schedule: ``k`` steps per epoch from the expected batch (``round(N / batch)``), or
    the rule's ``k`` when the batch is None; epochs from the configuration (default the DP
    rule's)."""
    if n_patients < 2:
        raise MedsynthError(f"training needs at least 2 patients, the cohort has {n_patients}")
    if config.batch_size:
        k = max(1, round(n_patients / min(config.batch_size, n_patients)))
    else:
        k = rule_steps_per_epoch(n_patients)
    return Schedule(steps_per_epoch=k, epochs=config.epochs or DP_EPOCHS)


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
