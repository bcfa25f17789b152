"""Ops that move channels between axes or tensors: the index maps.

Concat, Split and Slice shift channel indices; Transpose, Squeeze and Unsqueeze move the
channel axis; Reshape and Flatten fold it with other axes (C×H×W -> one axis in front of
a Gemm), so channel c becomes a block of elements of the output axis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx_graphsurgeon as gs

from onnx_cswap.graph.rules.base import attr_or_input, node_label, normalize_axis

if TYPE_CHECKING:
    from onnx_cswap.graph.walk import Walk


class TransposeRule:
    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, y = node.inputs[0], node.outputs[0]
        rank = walk.rank(x)
        if rank is None:
            walk.freeze(tensor, axis, f"Transpose {node_label(node)}: rank unknown")
            return
        perm = [int(p) for p in node.attrs.get("perm", list(range(rank))[::-1])]
        if tensor is x:
            walk.link(node, (x, axis), (y, perm.index(axis)))
        else:
            walk.link(node, (x, perm[axis]), (y, axis))


class SqueezeRule:
    """Squeeze and Unsqueeze: axes of size 1 disappear or appear; the others keep order."""

    def __init__(self, inserts: bool) -> None:
        self.inserts = inserts

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, y = node.inputs[0], node.outputs[0]
        in_rank, out_rank = walk.rank(x), walk.rank(y)
        label = f"{node.op} {node_label(node)}"
        if in_rank is None or out_rank is None:
            walk.freeze(tensor, axis, f"{label}: rank unknown")
            return
        axes = attr_or_input(node, "axes", 1, walk)
        wide_rank = out_rank if self.inserts else in_rank
        if axes is None:
            shape = walk.shape(x) or ()
            changed = {a for a, d in enumerate(shape) if d == 1}
        else:
            changed = {normalize_axis(int(a), wide_rank) for a in np.asarray(axes).reshape(-1)}
        kept = [a for a in range(wide_rank) if a not in changed]  # axes of the wider tensor
        narrow, wide = (x, y) if self.inserts else (y, x)
        if tensor is wide:
            if axis in changed:
                walk.freeze(tensor, axis, f"{label}: axis {axis} is squeezed")
                return
            walk.link(node, (narrow, kept.index(axis)), (wide, axis))
        else:
            walk.link(node, (narrow, axis), (wide, kept[axis]))


def align_blocks(
    source: tuple[int | None, ...], target: tuple[int | None, ...]
) -> list[tuple[list[int], list[int]]] | None:
    """Pair up runs of axes with equal products, e.g. [N,64,7,7] -> [N,3136] gives
    ([0],[0]) and ([1,2,3],[1]). None where dynamic dims make it ambiguous."""
    blocks: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(source) and j < len(target):
        a, b = source[i], target[j]
        if a is None or b is None:
            if a is None and b is None:
                blocks.append(([i], [j]))
                i, j = i + 1, j + 1
                continue
            return None
        if a == b:
            blocks.append(([i], [j]))
            i, j = i + 1, j + 1
            continue
        if a == 1:
            blocks.append(([i], []))
            i += 1
            continue
        if b == 1:
            blocks.append(([], [j]))
            j += 1
            continue
        left, right, product_left, product_right = [i], [j], a, b
        i, j = i + 1, j + 1
        while product_left != product_right:
            if product_left < product_right:
                if i >= len(source) or source[i] is None:
                    return None
                product_left *= source[i]
                left.append(i)
                i += 1
            else:
                if j >= len(target) or target[j] is None:
                    return None
                product_right *= target[j]
                right.append(j)
                j += 1
        blocks.append((left, right))
    if any(d != 1 for d in source[i:]) or any(d != 1 for d in target[j:]):
        return None
    blocks.extend(([k], []) for k in range(i, len(source)))
    blocks.extend(([], [k]) for k in range(j, len(target)))
    return blocks


def merged_index(dims: list[int], position: int) -> tuple[np.ndarray, np.ndarray]:
    """Element pairs (channel, merged index) when axis ``position`` of ``dims`` is folded
    with its neighbours into one axis (row-major)."""
    outer = int(np.prod(dims[:position], dtype=np.int64))
    size = dims[position]
    inner = int(np.prod(dims[position + 1 :], dtype=np.int64))
    grid = np.arange(outer * size * inner).reshape(outer, size, inner)
    channels = np.broadcast_to(np.arange(size)[None, :, None], grid.shape)
    return channels.reshape(-1), grid.reshape(-1)


def split_index(dims: list[int], position: int) -> tuple[np.ndarray, np.ndarray]:
    """Element pairs (index along the folded axis, index along axis ``position`` of
    ``dims``) when one axis is unfolded into ``dims`` (row-major): e.g. the fused qkv
    axis 3·H·d unfolded into (3, H, d) maps channel k to head (k // d) % H."""
    inner = int(np.prod(dims[position + 1 :], dtype=np.int64))
    folded = np.arange(int(np.prod(dims, dtype=np.int64)))
    return folded, (folded // inner) % dims[position]


def shape_entries(node: gs.Node, walk: Walk) -> list[int | None] | None:
    """The target shape of a Reshape, entry by entry (None: computed at run time), from
    a constant or from a Concat of one-element pieces (exporters build the dynamic batch
    size that way). None if neither."""
    operand = node.inputs[1]
    value = walk.constant(operand)
    if value is not None:
        return [int(v) for v in np.asarray(value).reshape(-1)]
    producer = operand.inputs[0] if operand.inputs else None
    if producer is None or producer.op != "Concat":
        return None
    entries: list[int | None] = []
    for piece in producer.inputs:
        shape = walk.shape(piece)
        if shape is None or len(shape) != 1 or shape[0] != 1:
            return None
        constant = walk.constant(piece)
        entries.append(None if constant is None else int(np.asarray(constant).reshape(-1)[0]))
    return entries


class ReshapeRule:
    """Reshape and Flatten, from the inferred input and output shapes.

    An axis that keeps its size passes through. Folded axes (C×H×W -> one axis before
    a Gemm; heads × head_dim -> hidden) map each channel to a block of the folded axis.
    An unfolded axis (hidden -> heads × head_dim) maps each channel to its index along
    the one unfolded axis that carries channels, which only the other side can tell.
    """

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, y = node.inputs[0], node.outputs[0]
        label = f"{node.op} {node_label(node)}"
        if tensor is not x and tensor is not y:
            walk.freeze(tensor, axis, f"{label}: channels in the shape operand")
            return
        in_shape, out_shape = walk.shape(x), walk.shape(y)
        blocks = (
            None if in_shape is None or out_shape is None else align_blocks(in_shape, out_shape)
        )
        if blocks is None:
            walk.freeze(tensor, axis, f"{label}: cannot match input and output axes")
            return
        left, right = next(block for block in blocks if axis in block[0 if tensor is x else 1])
        if node.op == "Reshape" and not self._rewritable(node, right, walk):
            walk.freeze(tensor, axis, f"{label}: target shape computed at run time")
            return
        if len(left) == 1 and len(right) == 1:
            walk.link(node, (x, left[0]), (y, right[0]))
        elif len(right) == 1:
            self._fold(node, tensor, axis, walk, left, right[0], in_shape)
        elif len(left) == 1:
            self._unfold(node, tensor, axis, walk, left[0], right, out_shape)
        else:
            walk.freeze(tensor, axis, f"{label}: regroups axes {left} into {right}")

    @staticmethod
    def _rewritable(node: gs.Node, out_axes: list[int], walk: Walk) -> bool:
        """The shape entries of these output axes are constants we can rewrite."""
        entries = shape_entries(node, walk)
        return entries is not None and all(
            a < len(entries) and entries[a] is not None for a in out_axes
        )

    @staticmethod
    def _fold(
        node: gs.Node,
        tensor: gs.Tensor,
        axis: int,
        walk: Walk,
        left: list[int],
        out_axis: int,
        in_shape: tuple[int | None, ...],
    ) -> None:
        x, y = node.inputs[0], node.outputs[0]
        dims = [in_shape[a] for a in left]
        channel_axes = [axis] if tensor is x else [a for a in left if walk.known(x, a)]
        if not channel_axes and walk.fallback_allowed:
            # Nothing else tells which folded axis carries channels: the outermost does
            # in channels-first layouts (C×H×W, heads × head_dim).
            channel_axes = [next(a for a in left if (in_shape[a] or 0) > 1)]
        if not channel_axes:
            walk.defer(
                node,
                tensor,
                axis,
                f"{node.op} {node_label(node)}: no channel axis among the folded axes",
            )
            return
        for channel_axis in channel_axes:
            pairs = merged_index(dims, left.index(channel_axis))
            walk.link(node, (x, channel_axis), (y, out_axis), pairs)

    @staticmethod
    def _unfold(
        node: gs.Node,
        tensor: gs.Tensor,
        axis: int,
        walk: Walk,
        in_axis: int,
        right: list[int],
        out_shape: tuple[int | None, ...],
    ) -> None:
        x, y = node.inputs[0], node.outputs[0]
        dims = [out_shape[a] for a in right]
        channel_axes = [axis] if tensor is y else [a for a in right if walk.known(y, a)]
        if not channel_axes:
            walk.defer(
                node,
                tensor,
                axis,
                f"{node.op} {node_label(node)}: splits axis "
                f"{in_axis} into several axes, none known to carry channels",
            )
            return
        for channel_axis in channel_axes:
            pairs = split_index(dims, right.index(channel_axis))
            walk.link(node, (x, in_axis), (y, channel_axis), pairs)


class ConcatRule:
    """Concat: along its axis, input j's channel c is output channel offset_j + c."""

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        y = node.outputs[0]
        rank = walk.rank(y)
        if rank is None:
            walk.freeze(tensor, axis, f"Concat {node_label(node)}: rank unknown")
            return
        concat_axis = normalize_axis(int(node.attrs["axis"]), rank)
        if axis != concat_axis:
            for operand in node.inputs:
                walk.link(node, (operand, axis), (y, axis))
            return
        sizes = [walk.dim(operand, axis) for operand in node.inputs]
        if None in sizes:
            walk.freeze(y, axis, f"Concat {node_label(node)}: input size unknown")
            return
        offset = 0
        for operand, size in zip(node.inputs, sizes):
            if size:
                index = np.arange(size)
                walk.link(node, (operand, axis), (y, axis), (index, offset + index))
            offset += size


class SplitRule:
    """Split: along its axis, output j's channel c is input channel offset_j + c."""

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x = node.inputs[0]
        rank = walk.rank(x)
        if rank is None:
            walk.freeze(tensor, axis, f"Split {node_label(node)}: rank unknown")
            return
        split_axis = normalize_axis(int(node.attrs.get("axis", 0)), rank)
        if axis != split_axis:
            for output in node.outputs:
                walk.link(node, (x, axis), (output, axis))
            return
        sizes = [walk.dim(output, axis) for output in node.outputs]
        if None in sizes:
            walk.freeze(x, axis, f"Split {node_label(node)}: output size unknown")
            return
        offset = 0
        for output, size in zip(node.outputs, sizes):
            index = np.arange(size)
            walk.link(node, (x, axis), (output, axis), (offset + index, index))
            offset += size


class SliceRule:
    """Slice with constant bounds: output channel i is input channel start + i."""

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, y = node.inputs[0], node.outputs[0]
        label = f"Slice {node_label(node)}"
        rank = walk.rank(x)
        starts = attr_or_input(node, "starts", 1, walk)
        ends = attr_or_input(node, "ends", 2, walk)
        if rank is None or starts is None or ends is None:
            walk.freeze(tensor, axis, f"{label}: bounds computed at run time")
            return
        axes = attr_or_input(node, "axes", 3, walk)
        axes = (
            list(range(len(starts)))
            if axes is None
            else [normalize_axis(int(a), rank) for a in axes]
        )
        steps = attr_or_input(node, "steps", 4, walk)
        steps = [1] * len(axes) if steps is None else [int(s) for s in steps]
        if axis not in axes:
            walk.link(node, (x, axis), (y, axis))
            return
        k = axes.index(axis)
        size = walk.dim(x, axis)
        if steps[k] != 1 or size is None:
            walk.freeze(tensor, axis, f"{label}: step {steps[k]} on axis {axis} is not supported")
            return
        selected = np.arange(size)[slice(int(starts[k]), int(ends[k]), 1)]
        walk.link(node, (x, axis), (y, axis), (selected, np.arange(len(selected))))


class GatherRule:
    """Gather: axes other than the gathered one pass through (e.g. the class token)."""

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, indices, y = node.inputs[0], node.inputs[1], node.outputs[0]
        label = f"Gather {node_label(node)}"
        rank, index_rank = walk.rank(x), walk.rank(indices)
        if rank is None or index_rank is None or tensor is indices:
            walk.freeze(tensor, axis, f"{label}: cannot follow channels through the indices")
            return
        gathered = normalize_axis(int(node.attrs.get("axis", 0)), rank)
        if tensor is x:
            if axis == gathered:
                walk.freeze(tensor, axis, f"{label}: picks entries along axis {axis}")
                return
            out_axis = axis if axis < gathered else axis + index_rank - 1
            walk.link(node, (x, axis), (y, out_axis))
            return
        if gathered <= axis < gathered + index_rank:
            walk.freeze(tensor, axis, f"{label}: axis {axis} comes from the indices")
            return
        in_axis = axis if axis < gathered else axis - index_rank + 1
        walk.link(node, (x, in_axis), (y, axis))


class ExpandRule:
    """Expand: an axis passes when the target shape leaves it as it is (entry 1)."""

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        x, y = node.inputs[0], node.outputs[0]
        label = f"Expand {node_label(node)}"
        shape = walk.constant(node.inputs[1])
        rank_x, rank_y = walk.rank(x), walk.rank(y)
        if shape is None or rank_x is None or rank_y is None or tensor is node.inputs[1]:
            walk.freeze(tensor, axis, f"{label}: target shape computed at run time")
            return
        out_axis = axis + rank_y - rank_x if tensor is x else axis
        in_axis = out_axis - (rank_y - rank_x)
        entry = (
            int(shape[out_axis - (rank_y - len(shape))]) if out_axis >= rank_y - len(shape) else 1
        )
        if in_axis < 0 or entry != 1 or walk.dim(x, in_axis) == 1:
            walk.freeze(tensor, axis, f"{label}: sets axis {out_axis} to a fixed size")
            return
        walk.link(node, (x, in_axis), (y, out_axis))


class ShapeRule:
    """Shape reads sizes. Harmless if only other axes' sizes are used (dynamic batch)."""

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        start = int(node.attrs.get("start", 0))
        end = node.attrs.get("end")
        rank = walk.rank(tensor) or 0
        read = range(normalize_axis(start, rank), normalize_axis(int(end), rank) if end else rank)
        if axis not in read:
            return
        position = axis - read.start
        for consumer in node.outputs[0].outputs:
            indices = walk.constant(consumer.inputs[1]) if consumer.op == "Gather" else None
            if indices is None or position in np.asarray(indices).reshape(-1).tolist():
                walk.freeze(tensor, axis, f"Shape {node_label(node)}: size read at run time")
                return
