"""Physical removal: the pruned model that computes exactly what the masked one does.

Parameters are sliced along every axis that is a channel space; the few node fields
that spell out a channel count (depthwise ``group``, Split sizes, Slice bounds, shape
constants of Reshape and Resize) are recomputed from the kept counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnx_cswap import __version__
from onnx_cswap.errors import BadInputError
from onnx_cswap.graph.analysis import GraphAnalysis
from onnx_cswap.graph.spaces import Space
from onnx_cswap.modelio import default_opset

METADATA_KEY = "onnx_cswap"


def check_keep(analysis: GraphAnalysis, keep: Mapping[int, np.ndarray]) -> None:
    """Masks must fit their groups, spare frozen groups, and leave every group a unit."""
    for group_id, mask in keep.items():
        if not 0 <= group_id < len(analysis.groups):
            raise BadInputError(f"no group {group_id}")
        group = analysis.groups[group_id]
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (group.size,):
            raise BadInputError(f"group {group_id}: mask of {mask.shape} for {group.size} units")
        if not mask.all() and not group.prunable:
            raise BadInputError(f"group {group_id} is frozen: {group.reason}")
        if not mask.any():
            raise BadInputError(f"group {group_id} would lose its last unit")


class _Context:
    def __init__(self, model: onnx.ModelProto, kept: dict[Space, np.ndarray]) -> None:
        self.model = model
        self.kept = kept
        self.opset = default_opset(model)
        self.initializers = {init.name: init for init in model.graph.initializer}
        graph = model.graph
        self.shapes: dict[str, list[int | None]] = {
            value.name: [
                d.dim_value if d.HasField("dim_value") else None
                for d in value.type.tensor_type.shape.dim
            ]
            for value in (*graph.value_info, *graph.input, *graph.output)
        }
        self.shapes.update({init.name: list(init.dims) for init in graph.initializer})
        self.producers = {out: node for node in graph.node for out in node.output}

    def kept_count(self, tensor: str, axis: int) -> int | None:
        """Channels left on ``axis`` of ``tensor``, or None if it lost none."""
        mask = self.kept.get(Space(tensor, axis))
        return None if mask is None or mask.all() else int(mask.sum())

    def constant(self, name: str) -> np.ndarray | None:
        init = self.initializers.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def replace_input(self, node: onnx.NodeProto, index: int, value: np.ndarray) -> None:
        """Give ``node`` its own constant (inputs like shapes may be shared)."""
        name = f"{node.name or node.output[0]}_cswap_in{index}"
        init = numpy_helper.from_array(np.asarray(value), name)
        if name in self.initializers:
            self.initializers[name].CopyFrom(init)
        else:
            self.model.graph.initializer.append(init)
            self.initializers[name] = self.model.graph.initializer[-1]
        while len(node.input) <= index:
            node.input.append("")
        node.input[index] = name


def rewrite(analysis: GraphAnalysis, keep: Mapping[int, np.ndarray]) -> onnx.ModelProto:
    """The canonical model with every unit that ``keep`` drops physically removed."""
    check_keep(analysis, keep)
    model = onnx.ModelProto()
    model.CopyFrom(analysis.model)
    context = _Context(model, analysis.element_keep(keep))
    for init in model.graph.initializer:
        _slice_parameter(init, context)
    for node in model.graph.node:
        fix = _NODE_FIXES.get(node.op_type)
        if fix is not None:
            fix(node, context)
    del model.graph.value_info[:]
    _record(model, analysis, keep)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _slice_parameter(init: onnx.TensorProto, context: _Context) -> None:
    array = numpy_helper.to_array(init)
    sliced = array
    for axis in range(array.ndim):
        mask = context.kept.get(Space(init.name, axis))
        if mask is not None and not mask.all():
            sliced = np.take(sliced, np.flatnonzero(mask), axis=axis)
    if sliced is not array:
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(sliced), init.name))


def _fix_conv(node: onnx.NodeProto, context: _Context) -> None:
    group = next((a for a in node.attribute if a.name == "group"), None)
    if group is None or group.i == 1:
        return
    weight = context.constant(node.input[1])
    per_group_in = weight.shape[1] if node.op_type == "Conv" else weight.shape[0] // group.i
    depthwise = per_group_in == 1
    kept = context.kept_count(node.input[0], 1)
    if depthwise and kept is not None:
        group.i = kept


def _fix_split(node: onnx.NodeProto, context: _Context) -> None:
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    rank = _rank_of(context, node.input[0])
    axis = axis + rank if axis < 0 else axis
    counts = [context.kept_count(out, axis) for out in node.output]
    if all(c is None for c in counts):
        return
    sizes = [
        c if c is not None else _dim(context, out, axis) for c, out in zip(counts, node.output)
    ]
    kept_attributes = [a for a in node.attribute if a.name not in ("split", "num_outputs")]
    del node.attribute[:]
    node.attribute.extend(kept_attributes)
    if context.opset >= 13:
        context.replace_input(node, 1, np.array(sizes, dtype=np.int64))
    else:
        node.attribute.append(helper.make_attribute("split", sizes))


def _fix_slice(node: onnx.NodeProto, context: _Context) -> None:
    starts = context.constant(node.input[1])
    ends = context.constant(node.input[2])
    rank = _rank_of(context, node.input[0])
    has_axes = len(node.input) > 3 and node.input[3]
    axes = context.constant(node.input[3]) if has_axes else np.arange(len(starts))
    starts, ends = starts.copy(), ends.copy()
    changed = False
    for k, axis in enumerate(axes):
        axis = int(axis) + rank if axis < 0 else int(axis)
        mask = context.kept.get(Space(node.input[0], axis))
        kept_out = context.kept_count(node.output[0], axis)
        if mask is None or mask.all():
            continue
        first = np.arange(len(mask))[slice(int(starts[k]), int(ends[k]), 1)]
        new_start = int(mask[: first[0]].sum()) if len(first) else 0
        starts[k] = new_start
        ends[k] = new_start + (kept_out if kept_out is not None else len(first))
        changed = True
    if changed:
        context.replace_input(node, 1, starts)
        context.replace_input(node, 2, ends)


def _fix_shape_operand(index: int) -> Callable[[onnx.NodeProto, _Context], None]:
    """Reshape's shape or Resize's sizes: entries of pruned axes become the kept counts.

    The shape is a constant, or a Concat of one-element pieces (a dynamic batch size
    next to constants): then the constant pieces of pruned axes are replaced.
    """

    def fix(node: onnx.NodeProto, context: _Context) -> None:
        if len(node.input) <= index or not node.input[index]:
            return
        output = node.output[0]
        kept = [context.kept_count(output, a) for a in range(_rank_of(context, output))]
        shape = context.constant(node.input[index])
        if shape is not None:
            shape = shape.copy()
            changed = False
            for axis, count in enumerate(kept):
                if count is not None and shape[axis] > 0:
                    shape[axis] = count
                    changed = True
            if changed:
                context.replace_input(node, index, shape)
            return
        concat = context.producers.get(node.input[index])
        if concat is None or concat.op_type != "Concat":
            return
        for axis, count in enumerate(kept):
            piece = context.constant(concat.input[axis]) if axis < len(concat.input) else None
            if count is not None and piece is not None and piece.reshape(-1)[0] > 0:
                context.replace_input(concat, axis, np.array([count], dtype=piece.dtype))

    return fix


_NODE_FIXES: dict[str, Callable[[onnx.NodeProto, _Context], None]] = {
    "Conv": _fix_conv,
    "ConvTranspose": _fix_conv,
    "Split": _fix_split,
    "Slice": _fix_slice,
    "Reshape": _fix_shape_operand(1),
    "Resize": _fix_shape_operand(3),
}


def _rank_of(context: _Context, tensor: str) -> int:
    return len(context.shapes[tensor])


def _dim(context: _Context, tensor: str, axis: int) -> int:
    return int(context.shapes[tensor][axis])


def _record(
    model: onnx.ModelProto, analysis: GraphAnalysis, keep: Mapping[int, np.ndarray]
) -> None:
    removed = {
        str(group_id): np.flatnonzero(~np.asarray(mask, dtype=bool)).tolist()
        for group_id, mask in sorted(keep.items())
        if not np.asarray(mask, dtype=bool).all()
    }
    summary = {"version": __version__, "removed_units": removed}
    entries = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(entries)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(summary, sort_keys=True))
