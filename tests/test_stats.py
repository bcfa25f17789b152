"""The statistics behind the decisions, against scipy and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from onnx_cswap.stats import (
    CRITICAL,
    DETRIMENTAL,
    NEUTRAL,
    categorize,
    causal_effect,
    holm,
    paired_pvalues,
    wilcoxon_pvalues,
)

RNG = np.random.default_rng(7)
BEFORE = RNG.uniform(0.5, 1.0, 32)
AFTER = BEFORE - RNG.uniform(-0.05, 0.15, 32)


def test_wilcoxon_pvalues_match_scipy() -> None:
    lower, higher = paired_pvalues(AFTER, BEFORE, "wilcoxon")
    assert lower == pytest.approx(stats.wilcoxon(AFTER, BEFORE, alternative="less").pvalue)
    assert higher == pytest.approx(stats.wilcoxon(AFTER, BEFORE, alternative="greater").pvalue)
    assert lower < 0.05 < higher


def differences(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    d = rng.normal(size=n) + rng.normal() * 0.5
    if kind == "zeros":
        d[rng.random(n) < 0.3] = 0.0
    if kind == "ties":
        d = np.round(d * 2) / 2
    return d


@pytest.mark.parametrize("kind", ["plain", "zeros", "ties"])
@pytest.mark.parametrize("n", [1, 5, 8, 13, 14, 32, 50, 51, 64])
def test_fast_wilcoxon_equals_scipy_in_each_regime(n: int, kind: str) -> None:
    """Exact null (no ties, ≤ 50 pairs), every sign assignment (ties or zeros, ≤ 13),
    normal approximation (the rest): the same p-values as scipy.stats.wilcoxon."""
    rng = np.random.default_rng(n * 3 + len(kind))
    for _ in range(2 if n == 13 else 20):  # scipy's own permutation test is slow at 13
        d = differences(n, kind, rng)
        if not np.any(d):
            continue
        with np.errstate(all="ignore"):
            expected = (
                stats.wilcoxon(d, alternative="less").pvalue,
                stats.wilcoxon(d, alternative="greater").pvalue,
            )
        assert wilcoxon_pvalues(d) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_ttest_pvalues_match_scipy() -> None:
    lower, higher = paired_pvalues(AFTER, BEFORE, "ttest")
    assert lower == pytest.approx(stats.ttest_rel(AFTER, BEFORE, alternative="less").pvalue)
    assert higher == pytest.approx(stats.ttest_rel(AFTER, BEFORE, alternative="greater").pvalue)


def test_sign_test_is_a_binomial_test_on_the_signs() -> None:
    after = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    before = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.5])  # five lower, one higher
    lower, higher = paired_pvalues(after, before, "sign")
    assert lower == pytest.approx(7 / 64)  # P(X >= 5), X ~ Binomial(6, 1/2)
    assert higher == pytest.approx(63 / 64)


def test_no_effect_at_all_is_neutral() -> None:
    for test in ("wilcoxon", "ttest", "sign"):
        assert paired_pvalues(BEFORE, BEFORE, test) == (1.0, 1.0)


def test_category_rule() -> None:
    assert categorize([0.5, 0.01], [0.001, 0.9], 0.05) == CRITICAL  # critical wins
    assert categorize([0.5, 0.3], [0.9, 0.01], 0.05) == DETRIMENTAL
    assert categorize([0.5, 0.3], [0.9, 0.2], 0.05) == NEUTRAL
    assert categorize([0.1], [0.9], 0.5) == CRITICAL  # a larger alpha keeps more


def test_holm_adjustment() -> None:
    adjusted = holm(np.array([0.01, 0.04, 0.03, 0.2]))
    np.testing.assert_allclose(adjusted, [0.04, 0.09, 0.09, 0.2])


def test_causal_effect_is_mean_relative_change() -> None:
    assert causal_effect(np.array([0.5, 1.5]), np.array([1.0, 1.0])) == pytest.approx(0.0)
    assert causal_effect(np.array([0.5, 0.5]), np.array([1.0, 0.5])) == pytest.approx(-0.25)


def test_sauce_on_hand_computed_curves() -> None:
    from onnx_cswap.sweep import sauce

    assert sauce([(0.5, 0.9)], 0.9, 0.5) == pytest.approx(1.0)  # no loss anywhere
    # linear drop from 0.8 to 0.4 over [0, 0.5]: mean 0.6, normalised by 0.8
    assert sauce([(0.5, 0.4)], 0.8, 0.5) == pytest.approx(0.75)
    # two segments: (0,1) -> (0.2,1) -> (0.4,0.5): area 0.2 + 0.15 = 0.35 over 0.4
    assert sauce([(0.2, 1.0), (0.4, 0.5)], 1.0, 0.4) == pytest.approx(0.875)
    # a point past r_max is cut at r_max by interpolation: value 0.75 at 0.4
    assert sauce([(0.8, 0.5)], 1.0, 0.4) == pytest.approx((1.0 + 0.75) / 2)
