"""Classical rank-then-prune criteria: score every unit once, remove the lowest first.

Scores whose scale differs from layer to layer (weight norms, BN γ, activations) are
divided by their group's mean so that layers compete fairly; scores that measure the
effect on the output (ξ, Taylor) or a fraction (APoZ) are compared as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnx_cswap.budget import remove_in_order
from onnx_cswap.criteria.base import PruneContext, Selection, UnitDecision
from onnx_cswap.criteria.magnitude import bn_gamma_scores, magnitude_scores
from onnx_cswap.errors import BadInputError
from onnx_cswap.stats import causal_effect

Scores = dict[int, np.ndarray]


def normalized(scores: Scores) -> Scores:
    """Each group's scores divided by the group's mean (for positive, scale-bound scores)."""
    return {g: values / (float(np.mean(values)) or 1.0) for g, values in scores.items()}


def rank_and_prune(context: PruneContext, scores: Scores, ratio: float | None = None) -> Selection:
    """Remove the lowest-scoring units until ``ratio`` (default: the settings') is reached."""
    ratio = context.settings.ratio if ratio is None else ratio
    if ratio is None:
        raise BadInputError(f"criterion {context.settings.criterion!r} needs --ratio")
    ranked: list[tuple[float, int, int]] = []
    for group_id, values in scores.items():
        ranked.extend((float(v), group_id, unit) for unit, v in enumerate(values))
    ranked.sort()
    budget = remove_in_order(context.analysis, [(g, u) for _, g, u in ranked], ratio)
    decisions = [
        UnitDecision(g, u, score=float(scores[g][u]), removed=not budget.keep[g][u])
        for _, g, u in ranked
    ]
    return Selection(budget.snapshot(), decisions)


def _ablation_scores(
    context: PruneContext, effect: Callable[[np.ndarray, np.ndarray], float], level: float
) -> Scores:
    """Score each unit by ``effect(σ with the unit's mask at ``level``, σ unpruned)``."""
    evaluator = context.evaluator
    full = {g.id: np.ones(g.size, dtype=np.float32) for g in context.analysis.groups if g.prunable}
    baseline = evaluator.scores(full)
    scores = {}
    groups = context.prunable_groups()
    total, done = sum(context.analysis.groups[g].size for g in groups), 0
    for group_id in groups:
        values = np.empty(context.analysis.groups[group_id].size)
        for unit in range(len(values)):
            done += 1
            context.report_progress(context.settings.criterion, done, total)
            trial = dict(full)
            trial[group_id] = full[group_id].copy()
            trial[group_id][unit] = level
            values[unit] = effect(evaluator.scores(trial, varying=group_id), baseline)
        scores[group_id] = values
    return scores


def causal_ranked(context: PruneContext) -> Scores:
    """ξ measured once on the unpruned model; the most harmful removal is kept longest."""
    xi = _ablation_scores(context, causal_effect, 0.0)
    return {group_id: -values for group_id, values in xi.items()}


#: Step of the finite difference on the mask for the first-order Taylor score.
TAYLOR_STEP = 1e-2


def taylor(context: PruneContext) -> Scores:
    """|dσ/dm| at m = 1 by a finite difference on the mask, averaged over samples."""

    def slope(after: np.ndarray, before: np.ndarray) -> float:
        return float(np.mean(np.abs(before - after))) / TAYLOR_STEP

    return _ablation_scores(context, slope, 1.0 - TAYLOR_STEP)


def magnitude(power: int) -> Callable[[PruneContext], Scores]:
    def scores(context: PruneContext) -> Scores:
        return normalized(magnitude_scores(context.analysis, power))

    return scores


def bn_gamma(context: PruneContext) -> Scores:
    scores = bn_gamma_scores(context.analysis)
    if not scores:
        raise BadInputError(
            "criterion 'bn-gamma' needs BatchNormalization nodes; this model has none "
            "(BN folded into the convolutions)"
        )
    return normalized(scores)


def random_ranking(context: PruneContext) -> Scores:
    return {g.id: context.rng.random(g.size) for g in context.analysis.groups if g.prunable}
