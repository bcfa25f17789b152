"""Activation statistics at each group's mask points: mean |activation| and APoZ.

The tensors a group's mask would multiply are added as extra outputs of the unpruned
model and reduced batch by batch to one value per channel, then averaged per unit.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnx_cswap.criteria.base import PruneContext
from onnx_cswap.criteria.ranking import normalized
from onnx_cswap.errors import BadInputError
from onnx_cswap.graph.analysis import GraphAnalysis
from onnx_cswap.graph.spaces import Space
from onnx_cswap.runtime import Runner


def _channel_statistics(context: PruneContext) -> dict[Space, tuple[np.ndarray, np.ndarray]]:
    """Per mask-point space: mean |x| and fraction of zeros, per channel."""
    if context.calib is None:
        raise BadInputError(f"criterion {context.settings.criterion!r} needs calibration data")
    analysis = context.analysis
    points = sorted({Space(p.tensor, p.axis) for p in analysis.mask_points})
    model = onnx.ModelProto()
    model.CopyFrom(analysis.model)
    existing = {o.name for o in model.graph.output}
    for space in points:
        if space.tensor not in existing:
            model.graph.output.append(helper.make_empty_tensor_value_info(space.tensor))
    runner = Runner(model, context.config)
    names = [o.name for o in runner.session.get_outputs()]
    sums = {s: 0.0 for s in points}
    zeros = {s: 0.0 for s in points}
    counts = {s: 0 for s in points}
    for feed in context.calib.batches(runner.batch_size(context.calib)[0]):
        values = dict(zip(names, runner.session.run(names, feed)))
        for space in points:
            array = np.moveaxis(values[space.tensor], space.axis, 0)
            flat = array.reshape(array.shape[0], -1)
            sums[space] = sums[space] + np.abs(flat).sum(axis=1)
            zeros[space] = zeros[space] + (flat == 0).sum(axis=1)
            counts[space] += flat.shape[1]
    return {s: (sums[s] / counts[s], zeros[s] / counts[s]) for s in points}


def _per_unit(analysis: GraphAnalysis, per_space: dict[Space, np.ndarray]) -> dict[int, np.ndarray]:
    totals = {g.id: np.zeros(g.size) for g in analysis.groups if g.prunable}
    seen = {g.id: np.zeros(g.size) for g in analysis.groups if g.prunable}
    for space, values in per_space.items():
        units = analysis.element_units[space]
        for group_id in totals:
            inside = (units >= 0) & (analysis.unit_group[np.maximum(units, 0)] == group_id)
            index = analysis.unit_index[units[inside]]
            totals[group_id] += np.bincount(index, values[inside], minlength=len(totals[group_id]))
            seen[group_id] += np.bincount(index, minlength=len(seen[group_id]))
    return {g: totals[g] / np.maximum(seen[g], 1) for g in totals}


def activation_mean(context: PruneContext) -> dict[int, np.ndarray]:
    """Units whose activations are smallest on average go first."""
    stats = _channel_statistics(context)
    return normalized(_per_unit(context.analysis, {s: v[0] for s, v in stats.items()}))


def apoz(context: PruneContext) -> dict[int, np.ndarray]:
    """Average Percentage of Zeros: the units most often exactly zero go first."""
    stats = _channel_statistics(context)
    return _per_unit(context.analysis, {s: 1.0 - v[1] for s, v in stats.items()})
