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


def channel_shuffle() -> onnx.ModelProto:
    """ShuffleNet's channel shuffle: Reshape to groups, Transpose, Reshape back."""
    b = Builder()
    a = b.relu(b.conv("x", 8))
    grouped = b.op("Reshape", [a, b.init(np.array([0, 2, 4, 8, 8]))])
    shuffled = b.op("Transpose", [grouped], perm=[0, 2, 1, 3, 4])
    back = b.op("Reshape", [shuffled, b.init(np.array([0, 8, 8, 8]))], channels=8)
    return b.model([b.conv(b.relu(back), 4)])


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
        channel_shuffle,
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


def _attention_model(fused: bool, opset: int = 17) -> onnx.ModelProto:
    """One transformer block on x[N, 6, 8]: 2 heads of 4, then a GELU MLP (hidden 16)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    tokens, dim, heads, head_dim, hidden = 6, 8, 2, 4, 16
    inits, nodes = [], []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x: str, name: str, cin: int, cout: int) -> str:
        w = const(f"{name}_w", rng.standard_normal((cin, cout)).astype(np.float32) / 3)
        b = const(f"{name}_b", rng.standard_normal(cout).astype(np.float32) / 10)
        return node("Add", [node("MatMul", [x, w], f"{name}_mm"), b], name)

    def split_heads(x: str, name: str) -> str:
        shape = const(f"{name}_shape", np.array([0, tokens, heads, head_dim]))
        return node(
            "Transpose", [node("Reshape", [x, shape], f"{name}_r")], name, perm=[0, 2, 1, 3]
        )

    if fused:
        qkv = linear("x", "qkv", dim, 3 * dim)
        shape = const("qkv_shape", np.array([0, tokens, 3, heads, head_dim]))
        stacked = node(
            "Transpose", [node("Reshape", [qkv, shape], "qkv_r")], "qkv_t", perm=[2, 0, 3, 1, 4]
        )
        q, k, v = (
            node("Gather", [stacked, const(f"pick{i}", np.array(i))], f"{n}_h", axis=0)
            for i, n in enumerate("qkv")
        )
    else:
        q, k, v = (split_heads(linear("x", n, dim, dim), f"{n}_h") for n in "qkv")
    keys = node("Transpose", [k], "k_t", perm=[0, 1, 3, 2])
    scores = node("MatMul", [q, keys], "scores")
    scaled = node("Div", [scores, const("scale", np.float32(2.0))], "scaled")
    attention = node("Softmax", [scaled], "attention", axis=-1)
    mixed = node(
        "Transpose", [node("MatMul", [attention, v], "mixed_h")], "mixed_t", perm=[0, 2, 1, 3]
    )
    merged = node("Reshape", [mixed, const("merge_shape", np.array([0, tokens, dim]))], "merged")
    residual = node("Add", ["x", linear(merged, "proj", dim, dim)], "residual")
    fc1 = linear(residual, "fc1", dim, hidden)
    erf = node("Erf", [node("Div", [fc1, const("sqrt2", np.float32(np.sqrt(2)))], "fc1_s")], "erf")
    gate = node(
        "Mul",
        [const("half", np.float32(0.5)), node("Add", [erf, const("one", np.float32(1))], "erf1")],
        "gate",
    )
    gelu = node("Mul", [fc1, gate], "gelu")
    out = node("Add", [residual, linear(gelu, "fc2", hidden, dim)], "out")
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", tokens, dim])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def attention_fused_qkv() -> onnx.ModelProto:
    return _attention_model(fused=True)


def attention_separate_qkv() -> onnx.ModelProto:
    return _attention_model(fused=False)


PATTERNS.update({fn.__name__: fn for fn in (attention_fused_qkv, attention_separate_qkv)})
