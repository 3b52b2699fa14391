"""The process group of a ``torchrun`` launch, or a single process when there is none.

Training under ``torchrun`` runs the same code in every process; :class:`Distributed` tells a
process its rank and carries the two collective calls the pipeline needs (broadcast of a
Python object from rank 0, and a barrier). Without ``WORLD_SIZE`` > 1 both are no-ops.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

__all__ = ["Distributed", "distributed_context"]


@dataclasses.dataclass(frozen=True)
class Distributed:
    """Rank, world size and local rank of this process (0, 1, 0 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """``obj`` from rank 0 on every rank (identity when not distributed)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def distributed_context(device: torch.device) -> Distributed:
    """Join the ``torchrun`` process group (NCCL on CUDA, Gloo otherwise) when there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return Distributed(
        torch.distributed.get_rank(),
        torch.distributed.get_world_size(),
        int(os.environ.get("LOCAL_RANK", "0")),
    )
