"""Paired one-sided tests and the Critical / Neutral / Detrimental rule."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import special, stats

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
        lower, higher = wilcoxon_pvalues(difference)
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


def wilcoxon_pvalues(difference: np.ndarray) -> tuple[float, float]:
    """One-sided Wilcoxon signed-rank p-values ('less', 'greater') of paired differences.

    The same numbers as ``scipy.stats.wilcoxon`` (1.17, default arguments: zeros dropped,
    no continuity correction), computed without its generic machinery, which cost C-SWAP
    more time than running the model: up to 50 pairs, the exact null distribution when
    there are no ties or zeros, else every sign assignment when there are at most 13
    pairs; otherwise the normal approximation with tie correction.
    """
    difference = np.asarray(difference, dtype=np.float64)
    pairs = len(difference)
    nonzero = difference[difference != 0]
    count = len(nonzero)
    if count == 0:
        return float("nan"), float("nan")
    ranks, ties = _average_ranks(np.abs(nonzero))
    r_plus = float(np.sum(ranks[nonzero > 0]))
    if pairs <= 50 and count == pairs and not np.any(ties > 1):
        pmf = _signed_rank_pmf(count)
        mean = count * (count + 1) / 4
        low, high = int(np.ceil(r_plus)), int(np.floor(r_plus))
        lower = pmf[: low + 1].sum() if low <= mean else 1 - pmf[low + 1 :].sum()
        higher = pmf[high:].sum() if high <= mean else 1 - pmf[:high].sum()
        return float(np.clip(lower, 0, 1)), float(np.clip(higher, 0, 1))
    if pairs <= 13:
        # Every sign assignment of the nonzero differences (a zero's sign changes
        # nothing, so each of these stands for 2**zeros equally likely ones).
        signs = (np.arange(2**count)[:, None] >> np.arange(count)) & 1
        null = signs @ ranks
        tolerance = abs(np.finfo(np.float64).eps * 100 * r_plus)
        lower = np.count_nonzero(null <= r_plus + tolerance) / len(null)
        higher = np.count_nonzero(null >= r_plus - tolerance) / len(null)
        return float(min(lower, 1.0)), float(min(higher, 1.0))
    mean = count * (count + 1.0) * 0.25
    spread = count * (count + 1.0) * (2.0 * count + 1.0)
    se = np.sqrt((spread - np.sum(ties.astype(np.float64) ** 3 - ties) / 2) / 24)
    z = (r_plus - mean) / se
    return float(special.ndtr(z)), float(special.ndtr(-z))


def _average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks from 1, ties sharing their average (``scipy.stats.rankdata``'s default,
    and the same numbers: halves are exact), and the size of every group of ties."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    bounds = np.r_[starts, len(values)]
    average = (bounds[:-1] + bounds[1:] + 1) / 2.0  # mean of ranks start+1 … end
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(average, np.diff(bounds))
    return ranks, np.diff(bounds)


@lru_cache(maxsize=64)
def _signed_rank_pmf(n: int) -> np.ndarray:
    """P(W+ = k), k = 0 … n(n+1)/2, under the null, for n pairs without ties."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts / 2.0**n
