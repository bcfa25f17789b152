"""The masked model: one 0/1 vector per prunable group, fed at run time.

Each group's mask is a graph input whose initializer (all ones) is its default, so one
onnxruntime session evaluates any mask. At every mask point (the input of an op that
sums over channels) a Mul zeroes the ablated channels. The multiplier for that tensor
is gathered from the concatenation of all masks, which handles tensors whose channels
come from several groups (Concat) or repeat per unit (Flatten).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_cswap.graph.analysis import GraphAnalysis
from onnx_cswap.graph.spaces import Space

MASK_PREFIX = "cswap_mask_"
MASK_POINT_PREFIX = "cswap_mp"  # the Concat, Gather and Mul of each mask point
_ONE = "cswap_one"


def mask_input_name(group_id: int) -> str:
    return f"{MASK_PREFIX}{group_id}"


def mask_feeds(analysis: GraphAnalysis, keep: Mapping[int, np.ndarray]) -> dict[str, np.ndarray]:
    """Feeds for the masked model: 1.0 for kept units, 0.0 for ablated ones."""
    return {
        mask_input_name(group_id): np.asarray(mask, dtype=np.float32)
        for group_id, mask in keep.items()
        if analysis.groups[group_id].prunable
    }


def build_masked_model(
    analysis: GraphAnalysis, keep: Mapping[int, np.ndarray] | None = None
) -> onnx.ModelProto:
    """A copy of the canonical model with a mask Mul at every prunable mask point.

    The masks default to all ones, or to ``keep`` where given (``--emit-masked``).
    Each mask point reads only the masks of the groups present in its tensor, so a
    group's mask reaches only what lies downstream of that group (the fast ablation
    engine relies on this).
    """
    model = onnx.ModelProto()
    model.CopyFrom(analysis.model)
    graph = model.graph
    prunable = {g.id: g for g in analysis.groups if g.prunable}
    if not prunable:
        return model
    for group in prunable.values():
        name = mask_input_name(group.id)
        default = np.ones(group.size, np.float32)
        if keep is not None and group.id in keep:
            default = np.asarray(keep[group.id], dtype=np.float32)
        graph.initializer.append(numpy_helper.from_array(default, name))
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [group.size]))
    graph.initializer.append(numpy_helper.from_array(np.ones(1, np.float32), _ONE))
    new_nodes = []
    consumers = {node.name: node for node in graph.node}
    for number, point in enumerate(analysis.mask_points):
        units = analysis.element_units[Space(point.tensor, point.axis)]
        groups = np.where(units >= 0, analysis.unit_group[np.maximum(units, 0)], -1)
        present = sorted({int(g) for g in groups if g in prunable})
        if not present:
            continue
        # Position of each present group's first unit in this point's mask vector; a
        # final 1.0 stands for the channels of no prunable group.
        start, total = {}, 0
        for group_id in present:
            start[group_id] = total
            total += prunable[group_id].size
        inside = np.isin(groups, present)
        index = np.full(len(units), total, dtype=np.int64)
        index[inside] = [start[g] for g in groups[inside]] + analysis.unit_index[units[inside]]
        rank = _rank(model, point.tensor)
        index = index.reshape([len(units)] + [1] * (rank - point.axis - 1))
        prefix = f"{MASK_POINT_PREFIX}{number}"
        graph.initializer.append(numpy_helper.from_array(index, f"{prefix}_index"))
        masks = [mask_input_name(g) for g in present]
        new_nodes += [
            helper.make_node(
                "Concat", [*masks, _ONE], [f"{prefix}_masks"], axis=0, name=f"{prefix}_concat"
            ),
            helper.make_node(
                "Gather",
                [f"{prefix}_masks", f"{prefix}_index"],
                [f"{prefix}_mask"],
                axis=0,
                name=f"{prefix}_gather",
            ),
            helper.make_node(
                "Mul", [point.tensor, f"{prefix}_mask"], [f"{prefix}_out"], name=f"{prefix}_mul"
            ),
        ]
        consumers[point.node].input[point.input_index] = f"{prefix}_out"
    _insert_sorted(graph, new_nodes)
    return model


def _rank(model: onnx.ModelProto, tensor: str) -> int:
    for value in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        if value.name == tensor:
            return len(value.type.tensor_type.shape.dim)
    for init in model.graph.initializer:
        if init.name == tensor:
            return len(init.dims)
    raise KeyError(f"no shape known for {tensor}")


def _insert_sorted(graph: onnx.GraphProto, new_nodes: list[onnx.NodeProto]) -> None:
    """Place each new node right before the first node that reads its output."""
    nodes = list(graph.node)
    by_output = {out: node for node in new_nodes for out in node.output}
    ordered: list[onnx.NodeProto] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        node = by_output.get(name)
        if node is None or node.name in placed:
            return
        for needed in node.input:
            place(needed)
        placed.add(node.name)
        ordered.append(node)

    for node in nodes:
        for name in node.input:
            place(name)
        ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)
