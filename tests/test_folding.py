"""Fixed masks folded into weights compute what the masked model computes."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLE_NAMES, SAMPLES, sample
from graphs import Builder
from onnx_cswap.data import Dataset
from onnx_cswap.folding import fold_fixed_masks
from onnx_cswap.graph import GraphAnalysis, analyse
from onnx_cswap.masking import MASK_POINT_PREFIX, build_masked_model, mask_feeds, mask_input_name
from onnx_cswap.modelio import load_model
from onnx_cswap.runtime import Runner
from patterns import PATTERNS

SOURCES = [n for n in SAMPLE_NAMES if sample(n).exists()] + sorted(PATTERNS)


@functools.cache
def masked_model(source: str) -> tuple[GraphAnalysis, onnx.ModelProto, Dataset]:
    if source in PATTERNS:
        analysis = analyse(PATTERNS[source]())
        specs = analysis.model.graph.input[0].type.tensor_type.shape.dim
        shape = [4, *(d.dim_value for d in specs[1:])]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        name = analysis.model.graph.input[0].name
    else:
        analysis = analyse(load_model(sample(source)))
        x, name = np.load(SAMPLES / f"{source}.calib.npz")["x"][:4], "input"
    return analysis, build_masked_model(analysis), Dataset({name: x}, None, "test")


def mask_muls(model: onnx.ModelProto) -> int:
    return sum(
        n.op_type == "Mul" and n.name.startswith(MASK_POINT_PREFIX) for n in model.graph.node
    )


@pytest.mark.parametrize("source", SOURCES)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), fraction=st.floats(0.0, 0.9))
def test_folded_masks_compute_what_fed_masks_do(source: str, seed: int, fraction: float) -> None:
    """Every mask but one group's fixed (as while that group is tested): the same
    outputs as the masked model with every mask fed, for that group's masks too."""
    analysis, masked, data = masked_model(source)
    prunable = [g for g in analysis.groups if g.prunable]
    if not prunable:
        pytest.skip("no prunable group")
    rng = np.random.default_rng(seed)
    keep = {g.id: rng.random(g.size) >= fraction for g in prunable}
    varying = prunable[rng.integers(len(prunable))].id
    feeds = mask_feeds(analysis, keep)
    own = mask_input_name(varying)
    folded = fold_fixed_masks(masked, {name: mask for name, mask in feeds.items() if name != own})
    onnx.checker.check_model(folded, full_check=True)
    assert [value.name for value in folded.graph.input] == [*data.inputs, own]
    runner, reference = Runner(folded), Runner(masked)
    for unit in rng.choice(len(keep[varying]), 2):
        trial = keep[varying].copy()
        trial[unit] = not trial[unit]
        feeds[own] = trial.astype(np.float32)
        np.testing.assert_allclose(
            runner.logits(data, {own: feeds[own]}),
            reference.logits(data, feeds),
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.parametrize("name", [n for n in SAMPLE_NAMES if sample(n).exists()])
def test_every_fixed_mask_point_of_the_sample_models_folds_away(name: str) -> None:
    """Convolutions, transposed convolutions, Gemm and MatMul take the mask into their
    weights: no mask Mul left to run, and the outputs of the masked model."""
    analysis, masked, data = masked_model(name)
    rng = np.random.default_rng(0)
    feeds = mask_feeds(analysis, {g.id: rng.random(g.size) > 0.3 for g in analysis.groups})
    folded = fold_fixed_masks(masked, feeds)
    assert mask_muls(masked) > 0 and mask_muls(folded) == 0
    assert len(folded.graph.initializer) < len(masked.graph.initializer)  # indices gone
    np.testing.assert_allclose(
        Runner(folded).logits(data), Runner(masked).logits(data, feeds), rtol=1e-5, atol=1e-6
    )


def test_a_shared_weight_keeps_its_mask_muls() -> None:
    """Zeroing a weight two convolutions read would mask the other one too: such mask
    points keep their Mul (a constant mask now); mask points of ones go either way."""
    analysis, masked, data = masked_model("shared_weight")
    keep = {g.id: np.arange(g.size) % 2 == 0 for g in analysis.groups if g.prunable}
    feeds = mask_feeds(analysis, keep)
    shared = next(i for i in masked.graph.initializer if i.name == "shared_w")
    folded = fold_fixed_masks(masked, feeds)
    assert next(i for i in folded.graph.initializer if i.name == "shared_w") == shared
    assert mask_muls(folded) == 2  # the two inputs of the shared weight's convolutions
    np.testing.assert_allclose(
        Runner(folded).logits(data), Runner(masked).logits(data, feeds), rtol=1e-5, atol=1e-6
    )
    ones = mask_feeds(analysis, {g: np.ones_like(k) for g, k in keep.items()})
    assert mask_muls(fold_fixed_masks(masked, ones)) == 0


def test_the_input_model_is_left_as_it_was() -> None:
    analysis, masked, _ = masked_model("digits_cnn")
    before = masked.SerializeToString()
    fold_fixed_masks(
        masked, mask_feeds(analysis, {g.id: np.zeros(g.size, bool) for g in analysis.groups})
    )
    assert masked.SerializeToString() == before


def conv1d_model() -> onnx.ModelProto:
    """Conv1d (weights [out, in, k]) over [N, C, L]: the mask broadcasts over one axis."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.standard_normal((8, 4, 3)).astype(np.float32),
        "w2": rng.standard_normal((5, 8, 3)).astype(np.float32),
    }
    nodes = [
        onnx.helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1]),
        onnx.helper.make_node("Relu", ["a"], ["r"], name="relu"),
        onnx.helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", pads=[1, 1]),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "conv1d",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 16])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def gemm_model(trans_b: bool) -> onnx.ModelProto:
    """Flatten then Gemm, its weight [K, N] (or [N, K] with transB)."""
    b = Builder(channels=2, size=4)
    flat = b.flatten(b.relu(b.conv("x", 6)), 16)
    weight = b.weight(96, 10) if not trans_b else b.weight(10, 96)
    out = b.op("Gemm", [flat, b.init(weight)], channels=10, transB=int(trans_b))
    return b.model([out])


@pytest.mark.parametrize(
    "build", [conv1d_model, lambda: gemm_model(False), lambda: gemm_model(True)]
)
def test_masks_fold_along_the_summed_axis(build) -> None:
    """The weight axis a mask folds into: Conv1d's input channels (axis 1), Gemm's K
    (axis 0, or 1 with transB), each mask element repeated over the flattened pixels."""
    analysis = analyse(build())
    masked = build_masked_model(analysis)
    name = analysis.model.graph.input[0].name
    shape = [
        3,
        *(d.dim_value for d in analysis.model.graph.input[0].type.tensor_type.shape.dim[1:]),
    ]
    data = Dataset(
        {name: np.random.default_rng(1).standard_normal(shape).astype(np.float32)}, None, "t"
    )
    keep = {g.id: np.arange(g.size) % 3 != 1 for g in analysis.groups if g.prunable}
    assert keep
    feeds = mask_feeds(analysis, keep)
    folded = fold_fixed_masks(masked, feeds)
    assert mask_muls(masked) > 0 and mask_muls(folded) == 0
    np.testing.assert_allclose(
        Runner(folded).logits(data), Runner(masked).logits(data, feeds), rtol=1e-5, atol=1e-6
    )
