"""Device choice shared by training and generation: ``auto`` picks CUDA when present."""

from __future__ import annotations

import torch

from medsynth.errors import MedsynthError

__all__ = ["DEVICES", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; ``"cuda"`` fails clearly without a GPU."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MedsynthError(
                f"device {device!r} was asked for but no CUDA GPU is available; "
                "use --device cpu or --device auto"
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise MedsynthError(f"device {device!r} is not one of {', '.join(DEVICES)}")
