"""Ops with a weight whose rows make output channels and whose columns consume input ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

from onnx_cswap.graph.rules.base import is_output, node_label, normalize_axis, optional_input

if TYPE_CHECKING:
    from onnx_cswap.graph.walk import Walk


def _constant_input(node: gs.Node, walk: Walk, index: int) -> gs.Tensor | None:
    tensor = optional_input(node, index)
    return tensor if tensor is not None and walk.constant(tensor) is not None else None


def _link_side(
    node: gs.Node,
    walk: Walk,
    data: gs.Tensor,
    weight: gs.Tensor,
    weight_axis: int,
    groups: int,
) -> None:
    """Join channel axis 1 of ``data`` with ``weight_axis`` of a (grouped) conv weight.

    The weight axis either spans every channel (size C) or one group (size C/groups);
    in the second case channel c meets weight index c % (C/groups), which also ties the
    j-th channel of every group together, as equal groups require.
    """
    channels = walk.dim(data, 1)
    size = walk.constant(weight).shape[weight_axis]
    if channels is None:
        walk.freeze(data, 1, f"{node.op} {node_label(node)}: channel count unknown")
        return
    index = np.arange(channels)
    walk.link(node, (data, 1), (weight, weight_axis), (index, index % size))
    if groups > 1 and size == channels:
        per_group = channels // groups
        walk.link_virtual(node, (data, 1), per_group, (index, index % per_group))


class _ConvFamily:
    """Conv and ConvTranspose; they differ only in which weight axis is the output."""

    out_weight_axis = 0

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        label = f"{node.op} {node_label(node)}"
        weight = walk.constant(w)
        if weight is None:
            for t in (x, y):
                walk.freeze(t, 1, f"{label}: weight is computed at run time")
            return
        if (tensor is x or is_output(node, tensor)) and axis != 1:
            walk.freeze(tensor, axis, f"{label}: mixes axis {axis}, which is not its channel axis")
            return
        groups = int(node.attrs.get("group", 1))
        in_weight_axis = 1 - self.out_weight_axis
        walk.producer(node, y, 1)
        bias = _constant_input(node, walk, 2)
        if bias is not None:
            walk.link(node, (y, 1), (bias, 0))
        in_channels = walk.dim(x, 1)
        if groups > 1 and in_channels == groups:
            # Depthwise: input channel c feeds outputs c*m .. c*m+m-1 and nothing else.
            multiplier = (walk.dim(y, 1) or 0) // groups
            outs = np.arange(groups * multiplier)
            walk.link(node, (x, 1), (y, 1), (outs // multiplier, outs))
            full_side = y if self.out_weight_axis == 0 else x
            walk.link(node, (full_side, 1), (w, 0))
            return
        _link_side(node, walk, y, w, self.out_weight_axis, groups)
        _link_side(node, walk, x, w, in_weight_axis, groups)
        walk.terminal(node, x, 1, 0)


class ConvRule(_ConvFamily):
    """Conv: W[Cout, Cin/g, k...]; depthwise convs pass channels through."""

    out_weight_axis = 0


class ConvTransposeRule(_ConvFamily):
    """ConvTranspose: W[Cin, Cout/g, k...]."""

    out_weight_axis = 1


class GemmRule:
    """Gemm: Y[M,N] = A[M,K] · B[K,N] + C, with B a weight (transposed when transB=1)."""

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
        label = f"Gemm {node_label(node)}"
        if walk.constant(b) is None or walk.constant(a) is not None:
            walk.freeze(tensor, axis, f"{label}: the weight is not a constant second input")
            return
        if node.attrs.get("transA", 0):
            walk.freeze(tensor, axis, f"{label}: transA=1 is not supported")
            return
        trans_b = bool(node.attrs.get("transB", 0))
        k_axis, n_axis = (1, 0) if trans_b else (0, 1)
        if (tensor is a and axis == 0) or (is_output(node, tensor) and axis == 0):
            walk.link(node, (a, 0), (y, 0))  # rows (samples) pass through
            return
        walk.producer(node, y, 1)
        walk.link(node, (y, 1), (b, n_axis))
        bias = _constant_input(node, walk, 2)
        if bias is not None and bias.values.ndim >= 1 and bias.values.shape[-1] > 1:
            walk.link(node, (y, 1), (bias, bias.values.ndim - 1))
        walk.link(node, (a, 1), (b, k_axis))
        walk.terminal(node, a, 1, 0)


class MatMulRule:
    """MatMul. With a 2-D constant second input it is a linear layer (last axis: K -> N);
    between two activations it passes batch and row/column axes and sums over K."""

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
        label = f"MatMul {node_label(node)}"
        ranks = [walk.rank(t) for t in (a, b, y)]
        if None in ranks or min(ranks) < 2:
            walk.freeze(tensor, axis, f"{label}: operand rank unknown or below 2")
            return
        rank_a, rank_b, rank_y = ranks
        weight = walk.constant(b)
        if walk.constant(a) is not None:
            walk.freeze(tensor, axis, f"{label}: a constant first operand is not supported")
            return
        if weight is not None and weight.ndim == 2:
            self._linear(node, tensor, axis, walk, rank_a)
            return
        # Two activations: axis -1 of A and -2 of B are summed over (mixed).
        if (tensor is a and axis == rank_a - 1) or (tensor is b and axis == rank_b - 2):
            walk.freeze(tensor, axis, f"{label}: sums over this axis between two activations")
            return
        out_axis = axis + rank_y - (rank_a if tensor is a else rank_b if tensor is b else rank_y)
        if out_axis == rank_y - 2:
            walk.link(node, (a, rank_a - 2), (y, out_axis))
        elif out_axis == rank_y - 1:
            walk.link(node, (b, rank_b - 1), (y, out_axis))
        else:
            walk.attention_axis(y, out_axis)
            for operand, rank in ((a, rank_a), (b, rank_b)):
                aligned = out_axis - (rank_y - rank)
                if aligned >= 0 and walk.dim(operand, aligned) != 1:
                    walk.link(node, (operand, aligned), (y, out_axis))

    @staticmethod
    def _linear(node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk, rank_a: int) -> None:
        a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
        last = rank_a - 1
        if tensor is b or (tensor is a and axis == last) or (tensor is y and axis == last):
            walk.producer(node, y, last)
            walk.link(node, (y, last), (b, 1))
            walk.link(node, (a, last), (b, 0))
            walk.terminal(node, a, last, 0)
        else:
            walk.link(node, (a, normalize_axis(axis, rank_a)), (y, axis))
