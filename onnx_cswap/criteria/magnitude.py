"""Weight-magnitude scores: the norm of every weight slice a unit owns."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from onnx_cswap.graph.analysis import GraphAnalysis


def magnitude_scores(analysis: GraphAnalysis, power: int) -> dict[int, np.ndarray]:
    """L1 (power 1) or L2 (power 2) norm per unit over the group's weight tensors
    (rank ≥ 2: producer rows and consumer columns alike), per prunable group."""
    weights = {
        init.name: numpy_helper.to_array(init)
        for init in analysis.model.graph.initializer
        if len(init.dims) >= 2 and init.data_type == 1
    }
    scores = {}
    for group in analysis.groups:
        if not group.prunable:
            continue
        total = np.zeros(group.size)
        for space in group.spaces:
            weight = weights.get(space.tensor)
            if weight is None:
                continue
            others = tuple(a for a in range(weight.ndim) if a != space.axis)
            per_element = (np.abs(weight) ** power).sum(axis=others)
            units = analysis.element_units[space]
            inside = analysis.unit_group[units] == group.id
            total += np.bincount(
                analysis.unit_index[units[inside]], per_element[inside], minlength=group.size
            )
        scores[group.id] = total ** (1.0 / power)
    return scores


def bn_gamma_scores(analysis: GraphAnalysis) -> dict[int, np.ndarray]:
    """|γ| of the BatchNormalization layers in each group (groups without BN: none)."""
    scales = {
        node.input[1] for node in analysis.model.graph.node if node.op_type == "BatchNormalization"
    }
    values = {
        init.name: np.abs(numpy_helper.to_array(init))
        for init in analysis.model.graph.initializer
        if init.name in scales
    }
    scores = {}
    for group in analysis.groups:
        spaces = [s for s in group.spaces if s.tensor in values]
        if not group.prunable or not spaces:
            continue
        total = np.zeros(group.size)
        for space in spaces:
            units = analysis.element_units[space]
            total += np.bincount(
                analysis.unit_index[units], values[space.tensor], minlength=group.size
            )
        scores[group.id] = total
    return scores
