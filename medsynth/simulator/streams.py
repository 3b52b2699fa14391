"""Named, independent random streams for the simulator.

Every random draw of the simulator comes from a stream named after what it draws ("age",
"ou:bp", "noise:creatinine", ...) inside one block of patients. A stream depends only on the
seed, the block number and its name, so adding a channel to a schema leaves every other channel's
values unchanged, and the first patients of a large cohort are those of a smaller one.
"""

from __future__ import annotations

import zlib

import numpy as np


class Streams:
    """Factory of reproducible generators keyed by (seed, block, name)."""

    def __init__(self, seed: int, block: int) -> None:
        self.seed = seed
        self.block = block

    def rng(self, name: str) -> np.random.Generator:
        """A fresh generator for ``name``; the same name always gives the same draws."""
        key = (self.block, zlib.crc32(name.encode("utf-8")))
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    def normal(self, name: str, shape: int | tuple[int, ...]) -> np.ndarray:
        return self.rng(name).standard_normal(shape)

    def uniform(self, name: str, shape: int | tuple[int, ...]) -> np.ndarray:
        return self.rng(name).random(shape)
