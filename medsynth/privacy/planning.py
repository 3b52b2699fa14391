"""The privacy record of a DP-SGD run before it starts: noise calibrated to a target epsilon.

:func:`plan_privacy` is what gets charged to the ledger. It depends only on public quantities
(the schedule's sample rate and steps, the target epsilon and delta, the accountant), never on
the data, so it can run before any record is encoded.
"""

from __future__ import annotations

import math

from medsynth.errors import MedsynthError
from medsynth.models.plan import Schedule, TrainConfig
from medsynth.privacy.accounting import (
    DpSgdEvent,
    EpsilonOutOfReach,
    PrivacyRecord,
    calibrate_noise,
    compute_epsilon,
    default_delta,
)

__all__ = ["check_targets", "plan_privacy"]


def check_targets(epsilon: float, delta: float, n_patients: int | None = None) -> None:
    """Refuse an epsilon or delta that no DP-SGD run may be planned for.

    delta is the probability that the guarantee fails outright; above ``1 / N`` a mechanism
    that publishes one whole random patient's record would satisfy it, so it is refused (the
    default, :func:`medsynth.privacy.accounting.default_delta`, is at most ``1 / (10 N)``).
    """
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise MedsynthError(f"epsilon must be > 0, got {epsilon}; pass --epsilon 1 for example")
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise MedsynthError(f"delta must lie in (0, 1), got {delta}")
    if n_patients is not None and n_patients > 0 and delta > 1.0 / n_patients:
        raise MedsynthError(
            f"delta {delta:g} is above 1/N = {1.0 / n_patients:.3g} for {n_patients} patients: "
            "a release that leaked one whole patient would meet it. Use delta much smaller "
            f"than 1/N, e.g. {default_delta(n_patients):g} (the default when --delta is not given)"
        )


def plan_privacy(
    *, epsilon: float, delta: float, schedule: Schedule, config: TrainConfig, world_size: int = 1
) -> PrivacyRecord:
    """The privacy record of a run before it starts: noise calibrated to ``epsilon``.

    Returns:
        A :class:`PrivacyRecord` whose epsilon (recomputed from its own fields) is at most
        ``epsilon``.
    """
    import opacus

    check_targets(epsilon, delta)
    try:
        noise = calibrate_noise(
            target_epsilon=epsilon,
            delta=delta,
            sample_rate=schedule.sample_rate,
            steps=schedule.steps,
            accountant=config.accountant,
        )
    except EpsilonOutOfReach as exc:
        n = round(1.0 / schedule.sample_rate)  # steps per epoch, for the message only
        raise EpsilonOutOfReach(
            f"epsilon {epsilon:g} is too small for this cohort and schedule ({schedule.steps} "
            f"steps at sample rate {schedule.sample_rate:.3g}, {n} per epoch): the smallest "
            f"epsilon it allows at delta {delta:g} is {exc.smallest:.3g}; nothing was charged",
            smallest=exc.smallest,
        ) from None
    event = DpSgdEvent(
        sample_rate=schedule.sample_rate, noise_multiplier=noise, steps=schedule.steps
    )
    spent = compute_epsilon(event, delta=delta, accountant=config.accountant)
    if spent > epsilon:
        raise MedsynthError(f"noise calibration gave epsilon {spent} above the target {epsilon}")
    return PrivacyRecord(
        accountant=config.accountant,
        sample_rate=schedule.sample_rate,
        noise_multiplier=noise,
        max_grad_norm=config.max_grad_norm,
        steps=schedule.steps,
        delta=delta,
        epsilon=spent,
        target_epsilon=epsilon,
        opacus_version=opacus.__version__,
        poisson_sampling=True,
        world_size=world_size,
    )
