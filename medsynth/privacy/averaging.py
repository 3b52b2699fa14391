"""An exponential moving average of the weights over DP-SGD steps (post-processing, free)."""

from __future__ import annotations

import torch

__all__ = ["WeightAverage"]


class WeightAverage:
    """Exponential moving average of the parameters over DP-SGD steps, bias-corrected.

    Averaging iterates is post-processing of the noisy updates, so it costs no privacy; it
    averages much of the injected noise out of the released weights. The decay gives a window
    of about a quarter of the run (at most 100 steps).
    """

    def __init__(self, net: torch.nn.Module, *, steps: int) -> None:
        self.decay = 1.0 - 1.0 / min(100.0, max(2.0, steps / 4))
        self.count = 0
        self.sums = {n: torch.zeros_like(p) for n, p in net.named_parameters()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        self.count += 1
        for name, p in net.named_parameters():
            self.sums[name].mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, net: torch.nn.Module) -> None:
        if self.count == 0:
            return
        correction = 1.0 - self.decay**self.count
        for name, p in net.named_parameters():
            p.copy_(self.sums[name] / correction)
