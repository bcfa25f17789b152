"""Small graphs with the hard patterns, shared by the rule and rewrite tests."""

from __future__ import annotations

import numpy as np
import onnx

from graphs import Builder


def concat_then_split() -> onnx.ModelProto:
    b = Builder()
    a, c = b.relu(b.conv("x", 4)), b.relu(b.conv("x", 6))
    split = [b.concat([a, c]), b.init(np.array([5, 5]))]
    first, second = b.op("Split", split, channels=5, outputs=2, axis=1)
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


def concat_slice_resize() -> onnx.ModelProto:
    """A decoder-like skip: Slice of channels, Resize upsampling, Concat."""
    b = Builder()
    a = b.relu(b.conv("x", 8))
    down = b.relu(b.conv(a, 12, stride=2))
    part = b.op(
        "Slice",
        [down, b.init(np.array([2])), b.init(np.array([10])), b.init(np.array([1]))],
        channels=8,
    )
    up = b.op("Resize", [part, "", b.init(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    return b.model([b.conv(b.concat([a, up]), 4)])


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
        shared_weight,
    )
}
