"""Attention heads and MLP neurons of the ViT sample, through both torch exporters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper
from test_rewrite import assert_pruned_equals_masked, random_keep

from conftest import SAMPLES, sample
from onnx_cswap.criteria import PruneSettings
from onnx_cswap.data import input_specs, load_npz
from onnx_cswap.graph import analyse
from onnx_cswap.modelio import load_model
from onnx_cswap.prune import prune
from onnx_cswap.rewrite import rewrite
from onnx_cswap.runtime import Runner

DYNAMO = sample("vit_tiny_fmnist")
LEGACY = Path(__file__).parent / "models" / "vit_tiny_fmnist_legacy.onnx"
EXPORTS = {"dynamo": DYNAMO, "legacy": LEGACY}

pytestmark = pytest.mark.skipif(not DYNAMO.exists(), reason="ViT sample not trained yet")


@pytest.mark.parametrize("exporter", sorted(EXPORTS))
def test_heads_and_neurons_found_through_both_exporters(exporter: str) -> None:
    analysis = analyse(load_model(EXPORTS[exporter]))
    heads = [g for g in analysis.groups if g.kind == "head"]
    neurons = [g for g in analysis.groups if g.kind == "neuron" and g.prunable]
    assert [g.size for g in heads] == [4, 4, 4, 4] and all(g.prunable for g in heads)
    assert [g.size for g in neurons] == [128, 128, 128, 128]
    # q, k, v: 3 x 16 columns of 64 weights and their biases; 16 rows of the projection.
    assert {g.params_per_unit for g in heads} == {3 * 16 * 64 + 48 + 16 * 64}
    frozen = [g for g in analysis.groups if not g.prunable]
    assert any("LayerNormalization" in (g.reason or "") for g in frozen)


@pytest.mark.parametrize("exporter", sorted(EXPORTS))
def test_random_head_and_neuron_masks_rewrite_exactly(exporter: str) -> None:
    analysis = analyse(load_model(EXPORTS[exporter]))
    for seed in range(3):
        assert_pruned_equals_masked(analysis, random_keep(analysis, seed, 0.5))


def test_the_two_exports_compute_the_same() -> None:
    data = load_npz(SAMPLES / "vit_tiny_fmnist.calib.npz", input_specs(load_model(DYNAMO)))
    subset = data.subset(np.arange(32))
    outputs = [Runner(load_model(path)).logits(subset) for path in (DYNAMO, LEGACY)]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-4)


def test_pruning_heads_rewrites_the_head_count_in_the_shapes() -> None:
    analysis = analyse(load_model(DYNAMO))
    heads = [g for g in analysis.groups if g.kind == "head"]
    keep = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    keep[heads[0].id][[0, 2]] = False  # layer 0 keeps 2 of its 4 heads
    pruned = rewrite(analysis, keep)
    constants = {init.name: init for init in pruned.graph.initializer}
    shapes = [
        numpy_helper.to_array(constants[node.input[1]]).tolist()
        for node in pruned.graph.node
        if node.op_type == "Reshape"
    ]
    # the fused qkv split, then the head merge, of each layer: only layer 0 changed
    assert shapes[1:5] == [[-1, 50, 3, 2, 16], [-1, 50, 32], [-1, 50, 3, 4, 16], [-1, 50, 64]]
    assert_pruned_equals_masked(analysis, keep)


def test_cswap_prunes_vit_heads_and_neurons() -> None:
    model = load_model(DYNAMO)
    specs = input_specs(model)
    calib = load_npz(SAMPLES / "vit_tiny_fmnist.calib.npz", specs)
    outcome = prune(model, PruneSettings(criterion="magnitude-l2", ratio=0.3), calib)
    kinds = {outcome.analysis.groups[g].kind for g, mask in outcome.keep.items() if not mask.all()}
    assert kinds <= {"head", "neuron"} and "neuron" in kinds
    assert outcome.removed_fraction >= 0.3
