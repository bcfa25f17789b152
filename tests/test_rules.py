"""Each op rule and each hard topology, on small graphs built in the test."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from graphs import Builder, run
from onnx_cswap.graph import GraphAnalysis, analyse
from onnx_cswap.graph.canonical import canonicalize
from onnx_cswap.graph.spaces import Space


def groups_by_producer(
    analysis: GraphAnalysis,
) -> dict[tuple[str, ...], tuple[int, bool, str | None]]:
    return {tuple(g.members["producers"]): (g.size, g.prunable, g.reason) for g in analysis.groups}


def prunable_sizes(analysis: GraphAnalysis) -> list[int]:
    return sorted(g.size for g in analysis.groups if g.prunable)


def test_chain_conv_bn_relu_gives_one_group_per_hidden_layer() -> None:
    b = Builder()
    first = b.conv("x", 8)
    out = b.conv(b.relu(b.bn(first)), 4)
    analysis = analyse(b.model([out]))
    groups = groups_by_producer(analysis)
    assert groups[(first,)] == (8, True, None)
    assert groups[(out,)][1] is False and "graph output" in groups[(out,)][2]
    hidden = next(g for g in analysis.groups if g.members["producers"] == [first])
    params = hidden.members["parameters"]
    assert len([p for p in params if "axis 0" in p]) == 6  # weight rows, bias, 4 BN vectors
    # Removing one channel: 3*3*3 weights + bias + 4 BN values + 9*4 weights of the consumer
    assert hidden.params_per_unit == 27 + 1 + 4 + 36


def test_concat_with_offsets_feeding_a_conv() -> None:
    b = Builder()
    a, c = b.conv("x", 4), b.conv("x", 6)
    out = b.conv(b.concat([b.relu(a), b.relu(c)]), 5)
    analysis = analyse(b.model([out]))
    groups = groups_by_producer(analysis)
    assert groups[(a,)] == (4, True, None)
    assert groups[(c,)] == (6, True, None)
    point = {p.tensor for p in analysis.mask_points}
    assert any(name.startswith("concat") for name in point)


def test_concat_then_split_follows_each_channel() -> None:
    b = Builder()
    a, c = b.conv("x", 4), b.conv("x", 6)
    split = [b.concat([a, c]), b.init(np.array([5, 5]))]
    first, second = b.op("Split", split, channels=5, outputs=2, axis=1)
    out = b.add(b.conv(first, 3), b.conv(second, 3))
    analysis = analyse(b.model([out]))
    sizes = sorted(g.size for g in analysis.groups if g.prunable and g.kind == "channel")
    # conv a's 4 channels; conv c's first channel joins split 0, its other 5 split 1
    assert sizes == [1, 4, 5]


def test_flatten_to_gemm_with_spatial_size_above_one() -> None:
    b = Builder(size=4)
    conv = b.conv("x", 5)
    logits = b.gemm(b.flatten(b.relu(conv), 16), 10)
    analysis = analyse(b.model([logits]))
    group = next(g for g in analysis.groups if g.members["producers"] == [conv])
    assert group.prunable and group.size == 5
    assert group.params_per_unit == 27 + 1 + 16 * 10  # conv row, bias, 16 Gemm columns


def test_depthwise_conv_passes_channels_through() -> None:
    b = Builder()
    first = b.conv("x", 8)
    depthwise = b.conv(b.relu(first), 8, group=8)
    dw = b.relu(depthwise)
    out = b.conv(dw, 4)
    analysis = analyse(b.model([out]))
    group = next(g for g in analysis.groups if first in g.members["producers"])
    assert set(group.members["producers"]) == {first, depthwise}
    assert group.size == 8 and group.prunable
    assert [p.node for p in analysis.mask_points if p.tensor == dw]  # masked after the dw conv


def test_grouped_conv_removes_one_channel_from_every_group() -> None:
    b = Builder()
    first = b.conv("x", 8)
    grouped = b.conv(b.relu(first), 8, group=4)
    out = b.conv(b.relu(grouped), 4)
    analysis = analyse(b.model([out]))
    groups = groups_by_producer(analysis)
    assert groups[(first,)] == (2, True, None)  # input j of each of the 4 groups together
    assert groups[(grouped,)] == (2, True, None)


def test_inverted_residual_couples_block_output_with_its_input() -> None:
    b = Builder()
    stem_conv = b.conv("x", 8)
    stem = b.relu(stem_conv)
    expand_conv = b.conv(stem, 32, kernel=1)
    expand = b.op("Clip", [expand_conv, b.init(np.float32(0)), b.init(np.float32(6))])
    dw_conv = b.conv(expand, 32, group=32)
    dw = b.op("Clip", [dw_conv, b.init(np.float32(0)), b.init(np.float32(6))])
    project = b.conv(dw, 8, kernel=1)
    out = b.conv(b.add(stem, project), 4)
    analysis = analyse(b.model([out]))
    producers = {tuple(sorted(g.members["producers"])): g for g in analysis.groups}
    coupled = producers[tuple(sorted((stem_conv, project)))]
    assert coupled.size == 8 and coupled.prunable  # stem and projection coupled
    expanded = producers[tuple(sorted((expand_conv, dw_conv)))]
    assert expanded.size == 32 and expanded.prunable  # expansion and its depthwise conv


def test_squeeze_and_excitation_gate_couples_fc2_with_the_gated_channels() -> None:
    b = Builder()
    conv = b.conv("x", 8)
    a = b.relu(conv)
    squeeze = b.op("GlobalAveragePool", [a])
    fc1 = b.conv(squeeze, 2, kernel=1)
    fc2 = b.conv(b.relu(fc1), 8, kernel=1)
    out = b.conv(b.op("Mul", [a, b.op("Sigmoid", [fc2])]), 4)
    analysis = analyse(b.model([out]))
    groups = {tuple(sorted(g.members["producers"])): g for g in analysis.groups}
    gated = groups[tuple(sorted((conv, fc2)))]
    assert gated.size == 8 and gated.prunable
    assert groups[(fc1,)].size == 2 and groups[(fc1,)].prunable


def test_residual_stage_with_downsample_shortcut() -> None:
    b = Builder(size=8)
    stem = b.relu(b.conv("x", 8))
    block1 = b.relu(b.add(stem, b.conv(b.relu(b.conv(stem, 8)), 8)))
    main = b.conv(b.relu(b.conv(block1, 16, stride=2)), 16)
    shortcut = b.conv(block1, 16, kernel=1, stride=2)
    block2 = b.relu(b.add(main, shortcut))
    block3 = b.relu(b.add(block2, b.conv(b.relu(b.conv(block2, 16)), 16)))
    out = b.conv(block3, 4)
    analysis = analyse(b.model([out]))
    by_size = sorted((g.size, len(g.members["producers"])) for g in analysis.groups if g.prunable)
    # stage 1: stem + block1.conv2 (8); stage 2: main, shortcut, block3.conv2 (16);
    # and the first conv of each of the three blocks on its own.
    assert by_size == [(8, 1), (8, 2), (16, 1), (16, 1), (16, 3)]


def test_channel_shuffle_pairs_the_channels_it_interleaves() -> None:
    """Shuffle 8 channels in 2 groups: output j reads input (j % 2) * 4 + j // 2. Removing
    a unit must remove one channel of each group and both places they land, which keeps
    the Reshape / Transpose / Reshape valid with 3 channels per group."""
    b = Builder()
    conv = b.conv("x", 8)
    grouped = b.op("Reshape", [b.relu(conv), b.init(np.array([0, 2, 4, 8, 8]))])
    shuffled = b.op("Transpose", [grouped], perm=[0, 2, 1, 3, 4])
    back = b.op("Reshape", [shuffled, b.init(np.array([0, 8, 8, 8]))], channels=8)
    analysis = analyse(b.model([b.conv(back, 4)]))
    group = next(g for g in analysis.groups if g.members["producers"] == [conv])
    assert group.prunable and group.size == 4
    units = analysis.unit_index
    produced = units[analysis.element_units[Space(conv, 1)]]
    consumed = units[analysis.element_units[Space(back, 1)]]
    assert produced.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert consumed.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_one_conv_feeding_two_heads() -> None:
    b = Builder()
    conv = b.conv("x", 8)
    trunk = b.relu(conv)
    head1, head2 = b.conv(trunk, 3), b.conv(trunk, 5)
    analysis = analyse(b.model([head1, head2]))
    groups = groups_by_producer(analysis)
    assert groups[(conv,)] == (8, True, None)
    assert not groups[(head1,)][1] and not groups[(head2,)][1]
    consumers = next(g for g in analysis.groups if g.name == conv).members["consumers"]
    assert sorted(consumers) == [f"{head1}:0", f"{head2}:0"]


def test_weight_tied_conv_used_twice_is_one_group() -> None:
    b = Builder()
    stem = b.relu(b.conv("x", 8))
    shared = b.init(b.weight(8, 8, 3, 3), "shared_w")
    once = b.relu(b.conv(stem, 8, weight=shared, bias=False))
    twice = b.relu(b.conv(once, 8, weight=shared, bias=False))
    out = b.conv(twice, 4)
    analysis = analyse(b.model([out]))
    tied = [g for g in analysis.groups if "shared_w[axis 0]" in g.members["parameters"]]
    assert len(tied) == 1
    assert tied[0].prunable and tied[0].size == 8
    assert "shared_w[axis 1]" in tied[0].members["parameters"]


def test_op_without_rule_freezes_only_the_groups_it_touches() -> None:
    b = Builder()
    touched, spared = b.conv("x", 8), b.conv("x", 6)
    odd = b.op("LpNormalization", [b.relu(touched)], axis=1)
    out = b.add(b.conv(odd, 4), b.conv(b.relu(spared), 4))
    analysis = analyse(b.model([out]))
    groups = groups_by_producer(analysis)
    assert not groups[(touched,)][1]
    assert "LpNormalization" in groups[(touched,)][2] and "no rule" in groups[(touched,)][2]
    assert groups[(spared,)] == (6, True, None)


def test_slice_of_channels_splits_the_group() -> None:
    b = Builder()
    conv = b.conv("x", 8)
    a = b.relu(conv)
    part = b.op(
        "Slice",
        [a, b.init(np.array([2])), b.init(np.array([6])), b.init(np.array([1]))],
        channels=4,
    )
    out = b.add(b.conv(part, 3), b.conv(a, 3))
    analysis = analyse(b.model([out]))
    assert sorted(g.size for g in analysis.groups if g.name == conv) == [4, 4]


def test_unknown_domain_op_freezes_with_domain_named() -> None:
    b = Builder()
    conv = b.conv("x", 8)
    a = b.relu(conv)
    node = helper.make_node("FancyOp", [a], ["fancy"], domain="com.example", name="fancy")
    b.nodes.append(node)
    b.channels["fancy"] = 8
    out = b.conv("fancy", 4)
    graph = helper.make_graph(
        b.nodes,
        "t",
        b.inputs,
        [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)],
        b.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    analysis = analyse(model)
    group = next(g for g in analysis.groups if g.name == conv)
    assert not group.prunable and "com.example.FancyOp" in group.reason


def _constant_node_model() -> onnx.ModelProto:
    """Weights stored as Constant nodes, an Identity chain and a shared initializer."""
    b = Builder()
    weight = b.weight(8, 3, 3, 3)
    b.nodes.append(
        helper.make_node("Constant", [], ["cw"], value=onnx.numpy_helper.from_array(weight))
    )
    ident = b.op("Identity", [b.op("Identity", ["cw"])])
    a = b.op("Conv", ["x", ident], channels=8, pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    scale = b.init(np.float32(2.0), "scale")
    h = b.op("Mul", [b.relu(a), scale])
    out = b.op("Mul", [b.conv(h, 4), scale])
    return b.model([out])


def test_canonical_form_computes_the_same_outputs() -> None:
    model = _constant_node_model()
    canonical = canonicalize(model)
    ops = [n.op_type for n in canonical.graph.node]
    assert "Constant" not in ops and "Identity" not in ops
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(canonical, x)[0], run(model, x)[0], rtol=1e-6, atol=1e-6)
    analysis = analyse(model)
    group = next(g for g in analysis.groups if g.name.startswith("conv"))
    assert group.prunable and group.size == 8


def test_every_tensor_has_a_channel_count_after_canonicalisation() -> None:
    model = _constant_node_model()
    canonical = canonicalize(model)
    shapes = {v.name: v for v in canonical.graph.value_info}
    for node in canonical.graph.node:
        for name in node.output:
            if name not in {o.name for o in canonical.graph.output}:
                assert shapes[name].type.tensor_type.shape.dim[1].dim_value > 0


@pytest.mark.parametrize("fused", [True, False], ids=["fused-qkv", "separate-qkv"])
def test_attention_heads_and_mlp_neurons(fused: bool) -> None:
    from patterns import _attention_model

    analysis = analyse(_attention_model(fused))
    prunable = {g.kind: g for g in analysis.groups if g.prunable}
    heads, neurons = prunable["head"], prunable["neuron"]
    assert heads.size == 2 and neurons.size == 16
    # A head: its q, k, v columns (3 x 4 x 8 weights + 12 biases) and 4 x 8 proj rows.
    assert heads.params_per_unit == 3 * 4 * 8 + 12 + 4 * 8
    assert neurons.params_per_unit == 8 + 1 + 8  # fc1 column and bias, fc2 row
    # The residual stream reaches the output: frozen.
    assert all(not g.prunable for g in analysis.groups if g.kind == "channel")
