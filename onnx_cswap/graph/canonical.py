"""Canonicalisation: the forms real exports take, turned into one form the rules expect.

Every step preserves what the model computes: weights stored as Constant nodes become
initializers, Identity chains disappear, constant sub-graphs (transposed weights, shape
arithmetic on static dims) are folded, and shapes are inferred so that every tensor the
rules look at has a channel count.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from onnx_cswap.errors import ModelLoadError, first_line

_CONSTANT_VALUE_ATTRIBUTES = {
    "value",
    "value_float",
    "value_floats",
    "value_int",
    "value_ints",
}


def canonicalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` in canonical form, with inferred shapes."""
    graph = gs.import_onnx(_infer_shapes(model))
    _constants_to_initializers(graph)
    _remove_identities(graph)
    _fold_constants(graph)
    _untie_shared_vectors(graph)
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    folded = gs.export_onnx(graph, do_type_check=False)
    _copy_model_fields(model, folded)
    # Stale shapes from before folding would mislead; infer everything afresh.
    del folded.graph.value_info[:]
    return _infer_shapes(folded)


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises several unrelated types for bad graphs
        raise ModelLoadError(f"shape inference failed: {first_line(exc)}") from exc


def _constants_to_initializers(graph: gs.Graph) -> None:
    for node in graph.nodes:
        if node.op != "Constant" or node.domain not in (None, "", "ai.onnx"):
            continue
        attribute = next((a for a in node.attrs if a in _CONSTANT_VALUE_ATTRIBUTES), None)
        if attribute is None:  # sparse or string constants stay nodes
            continue
        output = node.outputs[0]
        if any(output is t for t in graph.outputs):
            continue
        value = node.attrs[attribute]
        values = value.values if isinstance(value, gs.Constant) else _attribute_array(value)
        _redirect(output, gs.Constant(output.name, values))
        node.outputs.clear()


def _attribute_array(value: object) -> np.ndarray:
    if isinstance(value, float):
        return np.array(value, dtype=np.float32)
    if isinstance(value, int):
        return np.array(value, dtype=np.int64)
    if isinstance(value, list) and value and isinstance(value[0], float):
        return np.array(value, dtype=np.float32)
    return np.array(value, dtype=np.int64)


def _remove_identities(graph: gs.Graph) -> None:
    graph_outputs = {tensor.name for tensor in graph.outputs}
    for node in graph.nodes:
        if node.op not in ("Identity", "Dropout") or node.outputs[0].name in graph_outputs:
            continue
        if node.op == "Dropout" and (len(node.outputs) > 1 and node.outputs[1].outputs):
            continue  # the Dropout mask is used
        source, result = node.inputs[0], node.outputs[0]
        _redirect(result, source)
        node.inputs.clear()
        node.outputs.clear()


def _redirect(old: gs.Tensor, new: gs.Tensor) -> None:
    """Make every consumer of ``old`` read ``new`` instead."""
    for consumer in list(old.outputs):
        for index, tensor in enumerate(consumer.inputs):
            if tensor is old:
                consumer.inputs[index] = new


def _fold_constants(graph: gs.Graph) -> None:
    # Graph Surgeon and onnxruntime warn about every op they cannot fold; expected here.
    import onnxruntime

    previous = gs.logger.G_LOGGER.severity
    gs.logger.G_LOGGER.severity = gs.logger.G_LOGGER.ERROR
    onnxruntime.set_default_logger_severity(3)
    try:
        graph.fold_constants(error_ok=True)
    finally:
        gs.logger.G_LOGGER.severity = previous


def _untie_shared_vectors(graph: gs.Graph) -> None:
    """Give each node its own copy of a shared 1-D float initializer.

    Exporters de-duplicate equal constants (freshly initialised BatchNorm vectors of
    the same width are all equal), which would tie the channels of unrelated layers.
    Shared weights of rank 2 and more are left shared: that is real weight tying.
    """
    for tensor in list(graph.tensors().values()):
        if not isinstance(tensor, gs.Constant) or tensor.values.ndim != 1:
            continue
        if not np.issubdtype(tensor.values.dtype, np.floating) or len(tensor.outputs) < 2:
            continue
        for copy_number, consumer in enumerate(list(tensor.outputs)[1:], start=1):
            copy = gs.Constant(f"{tensor.name}__{copy_number}", tensor.values.copy())
            for index, operand in enumerate(consumer.inputs):
                if operand is tensor:
                    consumer.inputs[index] = copy


def _copy_model_fields(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    target.ir_version = source.ir_version
    target.producer_name = source.producer_name
    target.producer_version = source.producer_version
    target.domain = source.domain
    target.model_version = source.model_version
    target.doc_string = source.doc_string
    del target.metadata_props[:]
    target.metadata_props.extend(source.metadata_props)
    del target.opset_import[:]
    target.opset_import.extend(source.opset_import)
    del target.functions[:]
    target.functions.extend(source.functions)


def initializer_arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers by name, as numpy arrays."""
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
