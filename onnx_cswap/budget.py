"""Exact parameter accounting while units are removed one at a time.

Removing a unit shrinks every tensor it lives in, and a weight can shrink along two
axes at once (its rows in one group, its columns in another), so the count is kept
exactly, term by term, rather than by adding up per-unit estimates.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from onnx_cswap.graph.analysis import GraphAnalysis
from onnx_cswap.graph.spaces import Space


class ParamBudget:
    """Kept units per group and the exact parameter count that goes with them."""

    def __init__(self, analysis: GraphAnalysis) -> None:
        self.analysis = analysis
        self.keep = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
        self.initial = analysis.params
        self._counts: dict[Space, int] = {}
        self._terms_of: dict[Space, list[int]] = defaultdict(list)
        for index, term in enumerate(analysis.param_terms):
            for dim, space in zip(term.shape, term.spaces):
                if space is not None:
                    self._counts[space] = dim
                    self._terms_of[space].append(index)
        self._values = [self._term_value(i) for i in range(len(analysis.param_terms))]
        self.params = sum(self._values)
        # For every unit, how many elements it has in each space that a term uses.
        self._unit_spaces: dict[int, list[tuple[Space, int]]] = defaultdict(list)
        for space in self._counts:
            units = analysis.element_units[space]
            for unit, count in zip(*np.unique(units[units >= 0], return_counts=True)):
                self._unit_spaces[int(unit)].append((space, int(count)))
        self.checkpoints: list[float] = []  # ratios to snapshot the keep masks at
        self.snapshots: dict[float, dict[int, np.ndarray]] = {}
        self._global = {
            (int(g), int(i)): u
            for u, (g, i) in enumerate(zip(analysis.unit_group, analysis.unit_index))
            if g >= 0
        }

    def _term_value(self, index: int) -> int:
        term = self.analysis.param_terms[index]
        value = term.factor
        for dim, space in zip(term.shape, term.spaces):
            value *= self._counts[space] if space is not None else dim
        return value

    def can_remove(self, group_id: int, unit: int) -> bool:
        mask = self.keep.get(group_id)
        return mask is not None and bool(mask[unit]) and int(mask.sum()) > 1

    def remove(self, group_id: int, unit: int) -> None:
        self._apply(group_id, unit, -1)
        self.keep[group_id][unit] = False
        for ratio in self.checkpoints:
            if ratio not in self.snapshots and self.reached(ratio):
                self.snapshots[ratio] = self.snapshot()

    def watch(self, ratios: list[float]) -> None:
        """Snapshot the keep masks the moment each of ``ratios`` is first reached."""
        self.checkpoints = sorted(ratios)
        for ratio in self.checkpoints:
            if self.reached(ratio):
                self.snapshots[ratio] = self.snapshot()

    def restore(self, group_id: int, unit: int) -> None:
        self._apply(group_id, unit, +1)
        self.keep[group_id][unit] = True

    def _apply(self, group_id: int, unit: int, sign: int) -> None:
        touched: set[int] = set()
        for space, count in self._unit_spaces[self._global[(group_id, unit)]]:
            self._counts[space] += sign * count
            touched.update(self._terms_of[space])
        for index in touched:
            value = self._term_value(index)
            self.params += value - self._values[index]
            self._values[index] = value

    @property
    def removed_fraction(self) -> float:
        return 1.0 - self.params / self.initial if self.initial else 0.0

    def reached(self, ratio: float) -> bool:
        return self.params <= (1.0 - ratio) * self.initial

    def snapshot(self) -> dict[int, np.ndarray]:
        return {group_id: mask.copy() for group_id, mask in self.keep.items()}


def remove_in_order(
    analysis: GraphAnalysis, order: list[tuple[int, int]], ratio: float
) -> ParamBudget:
    """Remove units in ``order`` (group id, unit index) until ``ratio`` of the
    parameters is gone; a group always keeps its last unit."""
    budget = ParamBudget(analysis)
    for group_id, unit in order:
        if budget.reached(ratio):
            break
        if budget.can_remove(group_id, unit):
            budget.remove(group_id, unit)
    return budget
