"""pruned ≡ masked: for any mask, the rewritten model computes what the masked one does."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLE_NAMES, sample
from onnx_cswap.graph import GraphAnalysis, analyse
from onnx_cswap.modelio import load_model
from onnx_cswap.rewrite import rewrite
from onnx_cswap.verify import check_equivalence
from patterns import OPSET_PATTERNS, OPSETS, PATTERNS


@functools.cache
def analysis_of(source: str) -> GraphAnalysis:
    if source in PATTERNS:
        return analyse(PATTERNS[source]())
    return analyse(load_model(sample(source)))


def float_params(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(i.dims)) for i in model.graph.initializer if i.data_type == 1)


def random_keep(analysis: GraphAnalysis, seed: int, fraction: float) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    keep = {}
    for group in analysis.groups:
        if group.prunable:
            mask = rng.random(group.size) >= fraction
            mask[rng.integers(group.size)] = True  # a group never loses its last unit
            keep[group.id] = mask
    return keep


def assert_pruned_equals_masked(analysis: GraphAnalysis, keep: dict[int, np.ndarray]) -> None:
    pruned = rewrite(analysis, keep)
    onnx.checker.check_model(pruned, full_check=True)
    assert check_equivalence(analysis, keep, pruned) <= 1e-4  # runs both in onnxruntime
    assert float_params(pruned) == analysis.count(analysis.param_terms, keep)


AVAILABLE = [n for n in SAMPLE_NAMES if sample(n).exists()] + sorted(PATTERNS)


@pytest.mark.parametrize("source", AVAILABLE)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), fraction=st.floats(0.0, 0.95))
def test_random_masks_pruned_equals_masked(source: str, seed: int, fraction: float) -> None:
    analysis = analysis_of(source)
    assert_pruned_equals_masked(analysis, random_keep(analysis, seed, fraction))


@pytest.mark.parametrize("source", AVAILABLE)
def test_all_but_one_unit_removed(source: str) -> None:
    analysis = analysis_of(source)
    keep = {g.id: np.arange(g.size) == g.size - 1 for g in analysis.groups if g.prunable}
    assert_pruned_equals_masked(analysis, keep)


@pytest.mark.parametrize("source", AVAILABLE)
def test_params_drop_by_what_each_unit_accounts_for(source: str) -> None:
    analysis = analysis_of(source)
    for group in analysis.groups:
        if group.prunable and group.size > 1:
            keep = {group.id: np.arange(group.size) != 0}
            pruned = rewrite(analysis, keep)
            assert float_params(pruned) == analysis.params - group.params_per_unit


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("pattern", OPSET_PATTERNS)
def test_patterns_at_every_opset(pattern: str, opset: int) -> None:
    analysis = analyse(PATTERNS[pattern](opset=opset))
    assert any(g.prunable for g in analysis.groups)
    for seed in range(3):
        assert_pruned_equals_masked(analysis, random_keep(analysis, seed, 0.5))


def test_frozen_group_cannot_lose_units() -> None:
    analysis = analysis_of("flatten_gemm")
    frozen = next(g for g in analysis.groups if not g.prunable)
    with pytest.raises(Exception, match="frozen"):
        rewrite(analysis, {frozen.id: np.arange(frozen.size) != 0})
