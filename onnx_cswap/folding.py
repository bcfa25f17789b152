"""Fixed masks folded into the weights that read them.

While one group's units are tested, every other group's mask is fixed. Fed as inputs,
those masks cost a Mul per mask point on every run, and the Muls keep onnxruntime from
chaining its blocked convolution kernels. ``fold_fixed_masks`` makes them constants: a mask
point read by one weighted op alone, whose weight no other op reads (Conv and
ConvTranspose without groups, Gemm without transA, MatMul with a 2-D weight), becomes
that weight with the masked input channels zeroed; a mask point of ones elsewhere is
dropped; any other keeps its Mul, by a constant now. The arithmetic is the same,
x·m·w = x·(m·w) for m in {0, 1}, though onnxruntime may choose other kernels for the
result, whose sums can differ in the last bits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from onnx_cswap.masking import MASK_POINT_PREFIX


def fold_fixed_masks(model: onnx.ModelProto, fixed: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` (the masked model or a sub-model of it) in which the mask
    inputs named in ``fixed`` are constants with those values, folded where exact."""
    model = _with_constant_masks(model, fixed)
    graph = model.graph
    inputs = {value.name for value in graph.input}  # an initializer there is a default
    constants = {init.name: init for init in graph.initializer if init.name not in inputs}
    producers = {out: node for node in graph.node for out in node.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    # Subgraphs' reads too (a weight read there is shared), and the graph's outputs.
    reads = Counter([*_all_reads(graph), *(value.name for value in graph.output)])
    dropped: set[int] = set()
    maybe_unread: set[str] = set()  # constants the dropped nodes read, masks included
    for mul in graph.node:
        if mul.op_type != "Mul" or not mul.name.startswith(MASK_POINT_PREFIX):
            continue
        vector = _constant_mask(mul, producers, constants)
        readers = users.get(mul.output[0], [])
        if vector is None or reads[mul.output[0]] != len(readers):
            continue  # still fed, or read where it cannot be rewired (a graph output)
        folded = len(readers) == 1 and _fold_into_weight(
            readers[0], mul.output[0], vector, constants, reads
        )
        if not folded and not np.all(vector == 1):
            continue
        for user in readers:  # read the unmasked tensor: the Mul is gone
            user.input[:] = [mul.input[0] if name == mul.output[0] else name for name in user.input]
        gather = producers[mul.input[1]]
        concat = producers[gather.input[0]]
        dropped.update({id(mul), id(gather), id(concat)})
        maybe_unread.update([gather.input[1], *concat.input])
    kept = [node for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    _drop_initializers(graph, maybe_unread - _read_names(graph))
    return model


def _with_constant_masks(
    model: onnx.ModelProto, fixed: Mapping[str, np.ndarray]
) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    names = {value.name for value in graph.input} & set(fixed)
    inputs = [value for value in graph.input if value.name not in names]
    del graph.input[:]
    graph.input.extend(inputs)
    initializers = [init for init in graph.initializer if init.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    for name in sorted(names):
        values = np.asarray(fixed[name], dtype=np.float32)
        graph.initializer.append(numpy_helper.from_array(values, name))
    return copy


def _constant_mask(
    mul: onnx.NodeProto,
    producers: Mapping[str, onnx.NodeProto],
    constants: Mapping[str, onnx.TensorProto],
) -> np.ndarray | None:
    """The mask point's multiplier (Concat of masks, then Gather) if every mask it
    reads is a constant now; None if one is still fed."""
    gather = producers.get(mul.input[1])
    if gather is None or gather.op_type != "Gather" or gather.input[1] not in constants:
        return None
    concat = producers.get(gather.input[0])
    if concat is None or concat.op_type != "Concat":
        return None
    if not all(name in constants for name in concat.input):
        return None
    masks = np.concatenate([numpy_helper.to_array(constants[name]) for name in concat.input])
    return masks[numpy_helper.to_array(constants[gather.input[1]])]


def _fold_into_weight(
    node: onnx.NodeProto,
    masked: str,
    vector: np.ndarray,
    constants: dict[str, onnx.TensorProto],
    reads: Mapping[str, int],
) -> bool:
    """Zero ``node``'s weight along the axis that sums over the masked input's
    channels, when the mask point is its data input and the weight is its own."""
    if len(node.input) < 2 or node.input[0] != masked:
        return False
    if node.input[1] not in constants or reads[node.input[1]] != 1:
        return False
    weight = numpy_helper.to_array(constants[node.input[1]])
    axis = _summed_axis(node, weight.ndim, vector.ndim)
    if axis is None or weight.shape[axis] != len(vector):
        return False
    shape = [1] * weight.ndim
    shape[axis] = len(vector)
    folded = weight * vector.reshape(-1).reshape(shape).astype(weight.dtype)
    constants[node.input[1]].CopyFrom(numpy_helper.from_array(folded, node.input[1]))
    return True


def _summed_axis(node: onnx.NodeProto, weight_rank: int, mask_rank: int) -> int | None:
    """The weight axis that meets the input's channel axis, for the ops whose channel
    axis a mask point of that rank can be on (mask_rank: the channel axis and the
    trailing axes it broadcasts over). The same axes the group rules link
    (graph/rules/producers.py), read here from a plain ONNX sub-model."""
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type in ("Conv", "ConvTranspose"):
        if attributes.get("group", 1) != 1 or mask_rank != weight_rank - 1:
            return None  # channels of a grouped convolution meet a slice of the weight
        return 1 if node.op_type == "Conv" else 0
    if node.op_type == "Gemm" and mask_rank == 1 and not attributes.get("transA", 0):
        return 1 if attributes.get("transB", 0) else 0
    if node.op_type == "MatMul" and mask_rank == 1 and weight_rank == 2:
        return 0
    return None


def _all_reads(graph: onnx.GraphProto) -> list[str]:
    """Every node input of ``graph`` and of the subgraphs inside its nodes, and the
    subgraphs' outputs (which may name a tensor of the outer graph)."""
    names = []
    for node in graph.node:
        names.extend(node.input)
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs]:
                names.extend(_all_reads(subgraph))
                names.extend(value.name for value in subgraph.output)
    return names


def _read_names(graph: onnx.GraphProto) -> set[str]:
    inputs = {value.name for value in graph.input}  # an input's default stays with it
    return {*_all_reads(graph), *(value.name for value in graph.output), *inputs}


def _drop_initializers(graph: onnx.GraphProto, names: set[str]) -> None:
    kept = [init for init in graph.initializer if init.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(kept)
