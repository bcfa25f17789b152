"""Channel spaces and the element-level union-find the walk fills.

A *space* is one axis of one tensor (an activation or a parameter). Each index along it
is an *element*. Two elements are joined when removing one forces removing the other
(a conv's output channel c and row c of its weight; channel c of both inputs of a
residual Add; channel c of a Concat input and channel offset+c of its output). The
equivalence classes are the prunable *units*.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, order=True)
class Space:
    """Axis ``axis`` (non-negative) of tensor ``tensor``."""

    tensor: str
    axis: int

    def __str__(self) -> str:
        return f"{self.tensor}[axis {self.axis}]"


@dataclass
class SpaceInfo:
    space: Space
    size: int | None
    offset: int
    is_parameter: bool
    is_virtual: bool = False
    frozen: list[str] = field(default_factory=list)
    order: int = 0  # discovery order, for deterministic listings


class UnionFind:
    """Union-find over integer ids with path halving and union by size."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.weight: list[int] = []

    def grow(self, count: int) -> int:
        """Add ``count`` singletons; return the id of the first."""
        first = len(self.parent)
        self.parent.extend(range(first, first + count))
        self.weight.extend([1] * count)
        return first

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.weight[ra] < self.weight[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.weight[ra] += self.weight[rb]

    def roots(self) -> np.ndarray:
        return np.fromiter((self.find(i) for i in range(len(self.parent))), dtype=np.int64)
