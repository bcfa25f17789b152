"""Ops that act on each channel separately: activations, normalisation, pools, resizing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

from onnx_cswap.graph.rules.base import attr_or_input, node_label, normalize_axis, optional_input

if TYPE_CHECKING:
    from onnx_cswap.graph.walk import Walk


class PassThroughRule:
    """Unary elementwise ops: every axis of input 0 is the same axis of output 0.

    Other inputs (Clip bounds, Dropout ratio) are scalars and carry no channels.
    """

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        walk.link(node, (node.inputs[0], axis), (node.outputs[0], axis))


class BroadcastRule:
    """Elementwise ops with numpy broadcasting (Add, Mul, Sum, PRelu, Where, ...).

    Along an output axis, every operand whose aligned dim is not 1 shares the channel
    index: constants there are per-channel parameters, two activations are coupled
    (residual Adds, squeeze-and-excitation gates). An operand broadcast along the axis
    does not carry it.
    """

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        y = node.outputs[0]
        rank_y = walk.rank(y)
        rank_t = walk.rank(tensor)
        if rank_y is None or rank_t is None:
            walk.freeze(tensor, axis, f"{node.op} {node_label(node)}: operand rank unknown")
            return
        out_axis = axis + rank_y - rank_t
        if tensor is not y and walk.dim(tensor, axis) == 1 and walk.dim(y, out_axis) != 1:
            walk.freeze(
                tensor,
                axis,
                f"{node.op} {node_label(node)}: one channel is broadcast over "
                f"{walk.dim(y, out_axis)}",
            )
            return
        for operand in node.inputs:
            rank = walk.rank(operand)
            if rank is None:
                walk.freeze(y, out_axis, f"{node.op} {node_label(node)}: operand rank unknown")
                continue
            aligned = out_axis - (rank_y - rank)
            if aligned >= 0 and walk.dim(operand, aligned) != 1:
                walk.link(node, (operand, aligned), (y, out_axis))


class PerChannelNormRule:
    """BatchNormalization / InstanceNormalization: parameters indexed by channel (axis 1).

    BatchNorm is per element along the other axes too; InstanceNorm mixes spatial axes.
    """

    def __init__(self, mixes_spatial: bool) -> None:
        self.mixes_spatial = mixes_spatial

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, y = node.inputs[0], node.outputs[0]
        is_parameter = tensor is not x and tensor is not y
        if is_parameter or axis == 1:
            for parameter in node.inputs[1:]:
                if parameter.name:
                    walk.link(node, (y, 1), (parameter, 0))
            walk.link(node, (x, 1), (y, 1))
        elif self.mixes_spatial and axis >= 2:
            walk.freeze(tensor, axis, f"{node.op} {node_label(node)}: normalises over axis {axis}")
        else:
            walk.link(node, (x, axis), (y, axis))


class AxisMixingRule:
    """Ops that mix values along some axes (LayerNorm, Softmax, GroupNorm, LRN).

    Reached on a mixed axis they freeze; on any other axis they pass channels through.
    """

    def __init__(self, mixed_axes: Callable[[gs.Node, int, int], set[int]]) -> None:
        self.mixed_axes = mixed_axes  # (node, rank, opset) -> the axes it mixes

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, y = node.inputs[0], node.outputs[0]
        rank = walk.rank(x)
        if tensor is not x and tensor is not y:
            walk.freeze(tensor, axis, f"{node.op} {node_label(node)}: parameter of a mixing op")
            return
        if rank is None or axis in self.mixed_axes(node, rank, walk.opset):
            walk.freeze(
                tensor, axis, f"{node.op} {node_label(node)}: mixes values along axis {axis}"
            )
            return
        walk.link(node, (x, axis), (y, axis))


def layer_norm_axes(node: gs.Node, rank: int, opset: int) -> set[int]:
    return set(range(normalize_axis(int(node.attrs.get("axis", -1)), rank), rank))


def softmax_axes(node: gs.Node, rank: int, opset: int) -> set[int]:
    axis = normalize_axis(int(node.attrs.get("axis", -1 if opset >= 13 else 1)), rank)
    # Before opset 13, Softmax flattens every axis from `axis` on into one.
    return {axis} if opset >= 13 else set(range(axis, rank))


def channel_axes(node: gs.Node, rank: int, opset: int) -> set[int]:
    return {1}


class SpatialOpRule:
    """Pools, Resize, Upsample, Pad: channels and batch pass through, spatial axes mix.

    Resize and Pad pass an axis only if they leave its size unchanged.
    """

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, y = node.inputs[0], node.outputs[0]
        if tensor is not x and tensor is not y:
            walk.freeze(tensor, axis, f"{node.op} {node_label(node)}: channels in a size operand")
            return
        if axis >= 2:
            walk.freeze(tensor, axis, f"{node.op} {node_label(node)}: mixes spatial axis {axis}")
            return
        if node.op == "Pad" and not _pads_leave_axis(node, axis, walk):
            walk.freeze(tensor, axis, f"Pad {node_label(node)}: pads axis {axis}")
            return
        if walk.dim(x, axis) != walk.dim(y, axis) and axis == 1:
            walk.freeze(tensor, axis, f"{node.op} {node_label(node)}: changes the channel count")
            return
        walk.link(node, (x, axis), (y, axis))


def _pads_leave_axis(node: gs.Node, axis: int, walk: Walk) -> bool:
    pads = attr_or_input(node, "pads", 1, walk)
    if pads is None:
        return False
    pads = np.asarray(pads).reshape(-1)
    rank = len(pads) // 2
    axes_input = optional_input(node, 3)
    axes = None if axes_input is None else walk.constant(axes_input)
    if axes is not None:  # opset 18: pads only for the listed axes
        listed = [normalize_axis(int(a), walk.rank(node.inputs[0]) or 0) for a in axes]
        if axis not in listed:
            return True
        position = listed.index(axis)
        return pads[position] == 0 and pads[position + len(listed)] == 0
    return axis < rank and pads[axis] == 0 and pads[axis + rank] == 0


class ReduceRule:
    """Reduce*: freezes when reducing over the axis, else maps it past the removed axes."""

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, y = node.inputs[0], node.outputs[0]
        rank = walk.rank(x)
        axes = attr_or_input(node, "axes", 1, walk)
        label = f"{node.op} {node_label(node)}"
        if rank is None:
            walk.freeze(tensor, axis, f"{label}: rank unknown")
            return
        if axes is None or np.asarray(axes).size == 0:
            if node.attrs.get("noop_with_empty_axes", 0):
                walk.link(node, (x, axis), (y, axis))
            else:
                walk.freeze(tensor, axis, f"{label}: reduces over every axis")
            return
        reduced = {normalize_axis(int(a), rank) for a in np.asarray(axes).reshape(-1)}
        keepdims = bool(node.attrs.get("keepdims", 1))
        if tensor is x:
            if axis in reduced:
                walk.freeze(tensor, axis, f"{label}: reduces over axis {axis}")
                return
            out_axis = axis if keepdims else axis - sum(1 for r in reduced if r < axis)
            walk.link(node, (x, axis), (y, out_axis))
            return
        kept = list(range(rank)) if keepdims else [a for a in range(rank) if a not in reduced]
        in_axis = kept[axis]
        if in_axis in reduced:
            walk.freeze(tensor, axis, f"{label}: reduces over axis {in_axis}")
            return
        walk.link(node, (x, in_axis), (y, axis))
