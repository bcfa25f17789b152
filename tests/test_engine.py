"""The downstream engine changes nothing: same scores (to float noise), same decisions,
same pruned bytes as running the whole model for every ablation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import SAMPLES, sample
from onnx_cswap.ablation import AblationEvaluator
from onnx_cswap.criteria import PruneSettings
from onnx_cswap.data import input_specs, load_npz
from onnx_cswap.graph import analyse
from onnx_cswap.modelio import load_model
from onnx_cswap.prune import calibration_subset, prune

MODELS = [n for n in ("digits_cnn", "resnet8_fmnist_bn", "mbv2_fmnist") if sample(n).exists()]


def load(name: str) -> tuple:
    model = load_model(sample(name))
    specs = input_specs(model)
    calib = load_npz(SAMPLES / f"{name}.calib.npz", specs)
    return model, calibration_subset(calib, 6, seed=0)  # 6 per class keeps CI quick


@pytest.mark.parametrize("name", MODELS)
def test_downstream_scores_equal_full_scores(name: str) -> None:
    model, calib = load(name)
    analysis = analyse(model)
    evaluator = AblationEvaluator(analysis, calib)
    keep = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    rng = np.random.default_rng(0)
    for group_id in keep:
        for unit in rng.choice(len(keep[group_id]), 2, replace=False):
            trial = {g: m.copy() for g, m in keep.items()}
            trial[group_id][unit] = False
            np.testing.assert_allclose(
                evaluator.scores(trial, varying=group_id), evaluator.scores(trial), atol=1e-5
            )


@pytest.mark.parametrize("name", [n for n in MODELS if n != "mbv2_fmnist"])
@pytest.mark.parametrize("criterion", ["cswap", "taylor"])
def test_downstream_engine_gives_the_same_model(name: str, criterion: str) -> None:
    model, calib = load(name)
    fast = PruneSettings(criterion=criterion, ratio=0.15 if criterion == "taylor" else None)
    plain = dataclasses.replace(fast, engine="full")
    outcomes = [prune(model, settings, calib) for settings in (fast, plain)]
    decisions = [
        [(d.group, d.unit, d.category, d.removed) for d in o.selection.decisions] for o in outcomes
    ]
    assert decisions[0] == decisions[1]
    assert outcomes[0].pruned.SerializeToString() == outcomes[1].pruned.SerializeToString()


@pytest.mark.parametrize("batch", [1, 4])
def test_a_model_with_a_fixed_batch_prunes_alike_with_both_engines(batch: int) -> None:
    """Class subsets are not multiples of a fixed batch: the last run is padded; the
    downstream region's mask inputs do not count as batch sizes."""
    model, calib = load("digits_cnn")
    for value in (*model.graph.input, *model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = batch
    del model.graph.value_info[:]
    outcomes = [prune(model, PruneSettings(engine=e), calib) for e in ("downstream", "full")]
    assert outcomes[0].pruned.SerializeToString() == outcomes[1].pruned.SerializeToString()
    assert outcomes[0].evaluations == outcomes[1].evaluations > 0
