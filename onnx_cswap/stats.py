"""Paired one-sided tests and the Critical / Neutral / Detrimental rule."""

from __future__ import annotations

import numpy as np
from scipy import stats

TESTS = ("wilcoxon", "ttest", "sign")
CRITICAL, NEUTRAL, DETRIMENTAL = "critical", "neutral", "detrimental"


def paired_pvalues(
    after: np.ndarray, before: np.ndarray, test: str, margin: float = 0.0
) -> tuple[float, float]:
    """One-sided p-values that ``after`` is lower, and that it is higher, than ``before``
    by more than ``margin`` × ``before`` (0: any change at all).

    Identical scores (an ablation with no effect at all) give (1, 1).
    """
    before = np.asarray(before, dtype=np.float64)
    change = np.asarray(after, dtype=np.float64) - before
    if not np.any(change):
        return 1.0, 1.0
    if margin:
        lower, _ = _one_sided(change + margin * before, test)
        _, higher = _one_sided(change - margin * before, test)
        return lower, higher
    return _one_sided(change, test)


def _one_sided(difference: np.ndarray, test: str) -> tuple[float, float]:
    """p-values for 'difference is below 0' and 'difference is above 0'."""
    if not np.any(difference):
        return 1.0, 1.0
    if test == "wilcoxon":
        lower = stats.wilcoxon(difference, alternative="less").pvalue
        higher = stats.wilcoxon(difference, alternative="greater").pvalue
    elif test == "ttest":
        if np.allclose(difference, difference[0]):  # zero variance: the sign decides
            return (0.0, 1.0) if difference[0] < 0 else (1.0, 0.0)
        lower = stats.ttest_1samp(difference, 0.0, alternative="less").pvalue
        higher = stats.ttest_1samp(difference, 0.0, alternative="greater").pvalue
    elif test == "sign":
        negatives, positives = int(np.sum(difference < 0)), int(np.sum(difference > 0))
        total = negatives + positives
        lower = stats.binomtest(negatives, total, 0.5, alternative="greater").pvalue
        higher = stats.binomtest(positives, total, 0.5, alternative="greater").pvalue
    else:
        raise ValueError(f"unknown test {test!r}")
    return float(lower), float(higher)


def minimum_samples(test: str, alpha: float) -> int:
    """Fewest pairs with which a one-sided test can reach p < alpha at all."""
    if test == "ttest":
        return 3
    # Wilcoxon and sign tests: the smallest p-value on n pairs is 2**-n.
    return int(np.floor(np.log2(1.0 / alpha))) + 1


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (family-wise error over the classes)."""
    pvalues = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(pvalues)
    scaled = pvalues[order] * (len(pvalues) - np.arange(len(pvalues)))
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    result = np.empty_like(adjusted)
    result[order] = adjusted
    return result


def categorize(p_lower: np.ndarray, p_higher: np.ndarray, alpha: float) -> str:
    """Critical if critical for one class; else Detrimental if detrimental for one."""
    if np.any(np.asarray(p_lower) < alpha):
        return CRITICAL
    if np.any(np.asarray(p_higher) < alpha):
        return DETRIMENTAL
    return NEUTRAL


def causal_effect(after: np.ndarray, before: np.ndarray) -> float:
    """ξ: the mean relative change of the score, (σ* − σ) / σ."""
    before = np.asarray(before, dtype=np.float64)
    return float(np.mean((np.asarray(after) - before) / np.maximum(before, 1e-12)))
