"""Small graphs with the hard patterns, shared by the rule and rewrite tests."""

from __future__ import annotations

import numpy as np
import onnx

from graphs import Builder


def concat_then_split(opset: int = 17) -> onnx.ModelProto:
    b = Builder(opset=opset)
    a, c = b.relu(b.conv("x", 4)), b.relu(b.conv("x", 6))
    first, second = b.split(b.concat([a, c]), [5, 5])
    return b.model([b.add(b.conv(first, 3), b.conv(second, 3))])


def flatten_gemm() -> onnx.ModelProto:
    b = Builder(size=4)
    hidden = b.relu(b.gemm(b.flatten(b.relu(b.conv("x", 5)), 16), 12))
    return b.model([b.gemm(hidden, 10)])


def depthwise_and_grouped() -> onnx.ModelProto:
    b = Builder()
    a = b.relu(b.conv("x", 8))
    dw = b.relu(b.conv(a, 8, group=8))
    g4 = b.relu(b.conv(dw, 8, group=4))
    return b.model([b.conv(g4, 4)])


def inverted_residual_with_bn() -> onnx.ModelProto:
    b = Builder()
    stem = b.relu(b.bn(b.conv("x", 8)))
    bounds = [b.init(np.float32(0)), b.init(np.float32(6))]
    expand = b.op("Clip", [b.bn(b.conv(stem, 24, kernel=1)), *bounds])
    dw = b.op("Clip", [b.bn(b.conv(expand, 24, group=24)), *bounds])
    block = b.add(stem, b.bn(b.conv(dw, 8, kernel=1)))
    return b.model([b.conv(block, 4)])


def residual_stage() -> onnx.ModelProto:
    b = Builder()
    stem = b.relu(b.conv("x", 8))
    block1 = b.relu(b.add(stem, b.conv(b.relu(b.conv(stem, 8)), 8)))
    main = b.conv(b.relu(b.conv(block1, 16, stride=2)), 16)
    block2 = b.relu(b.add(main, b.conv(block1, 16, kernel=1, stride=2)))
    pooled = b.op("GlobalAveragePool", [block2])
    return b.model([b.gemm(b.flatten(pooled, 1), 10)])


def squeeze_excitation() -> onnx.ModelProto:
    b = Builder()
    a = b.relu(b.conv("x", 8))
    fc1 = b.relu(b.conv(b.op("GlobalAveragePool", [a]), 2, kernel=1))
    gate = b.op("Sigmoid", [b.conv(fc1, 8, kernel=1)])
    return b.model([b.conv(b.op("Mul", [a, gate]), 4)])


def concat_slice_resize(opset: int = 17) -> onnx.ModelProto:
    """A decoder-like skip: Slice of channels, Resize upsampling, Concat."""
    b = Builder(opset=opset)
    a = b.relu(b.conv("x", 8))
    down = b.relu(b.conv(a, 12, stride=2))
    part = b.op(
        "Slice",
        [down, b.init(np.array([2])), b.init(np.array([10])), b.init(np.array([1]))],
        channels=8,
    )
    up = b.resize2x(part)
    return b.model([b.conv(b.concat([a, up]), 4)])


def constant_nodes(opset: int = 17) -> onnx.ModelProto:
    """Weights as Constant nodes behind Identity chains, as older exporters write them."""
    b = Builder(opset=opset)
    weights = []
    for shape in ((8, 3, 3, 3), (6, 8, 3, 3)):
        name = f"const{len(weights)}"
        value = onnx.numpy_helper.from_array(b.weight(*shape))
        b.nodes.append(onnx.helper.make_node("Constant", [], [name], value=value, name=name))
        weights.append(b.op("Identity", [name]))
    first = b.op("Conv", ["x", weights[0]], channels=8, pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    second = b.op(
        "Conv",
        [b.relu(b.bn(first)), weights[1]],
        channels=6,
        pads=[1, 1, 1, 1],
        kernel_shape=[3, 3],
    )
    return b.model([b.conv(b.relu(second), 4)])


def squeeze_unsqueeze_gemm(opset: int = 17) -> onnx.ModelProto:
    """Global pooling, Squeeze to [N, C] and a Gemm head; axes move to inputs at 13."""
    b = Builder(opset=opset)
    pooled = b.op("GlobalAveragePool", [b.relu(b.conv("x", 8))])
    if opset >= 13:
        flat = b.op("Squeeze", [pooled, b.init(np.array([2, 3]))])
    else:
        flat = b.op("Squeeze", [pooled], axes=[2, 3])
    hidden = b.relu(b.gemm(flat, 12))
    return b.model([b.gemm(hidden, 10)])


def shared_weight() -> onnx.ModelProto:
    b = Builder()
    stem = b.relu(b.conv("x", 8))
    shared = b.init(b.weight(8, 8, 3, 3), "shared_w")
    once = b.relu(b.conv(stem, 8, weight=shared, bias=False))
    return b.model([b.conv(b.relu(b.conv(once, 8, weight=shared, bias=False)), 4)])


PATTERNS = {
    fn.__name__: fn
    for fn in (
        concat_then_split,
        flatten_gemm,
        depthwise_and_grouped,
        inverted_residual_with_bn,
        residual_stage,
        squeeze_excitation,
        concat_slice_resize,
        constant_nodes,
        squeeze_unsqueeze_gemm,
        shared_weight,
    )
}

#: Patterns whose op signatures change across opsets, built at each of these.
OPSET_PATTERNS = (
    "concat_then_split",
    "concat_slice_resize",
    "constant_nodes",
    "squeeze_unsqueeze_gemm",
)
OPSETS = (11, 13, 17, 21)
