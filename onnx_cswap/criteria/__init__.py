"""The criteria, by name.

C-SWAP follows a path of removals (``criteria/cswap.py``); every other criterion is a
*ranker*: it scores each unit once, and units go in ascending score until the ratio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from onnx_cswap.criteria.activations import activation_mean, apoz
from onnx_cswap.criteria.base import PruneContext, PruneSettings, Selection, UnitDecision
from onnx_cswap.criteria.cswap import cswap
from onnx_cswap.criteria.ranking import (
    bn_gamma,
    causal_ranked,
    magnitude,
    random_ranking,
    rank_and_prune,
    taylor,
)

RANKERS: dict[str, Callable[[PruneContext], dict[int, np.ndarray]]] = {
    "magnitude-l1": magnitude(1),
    "magnitude-l2": magnitude(2),
    "bn-gamma": bn_gamma,
    "random": random_ranking,
    "activation-mean": activation_mean,
    "apoz": apoz,
    "taylor": taylor,
    "causal-ranked": causal_ranked,
}

CRITERIA: tuple[str, ...] = ("cswap", *RANKERS)

#: Criteria that run the model on calibration data.
NEEDS_DATA = frozenset({"cswap", "taylor", "causal-ranked", "activation-mean", "apoz"})


def select(context: PruneContext) -> Selection:
    """Run the context's criterion at the context's ratio."""
    if context.settings.criterion == "cswap":
        return cswap(context)
    return rank_and_prune(context, RANKERS[context.settings.criterion](context))


def select_for_ratios(context: PruneContext, ratios: list[float]) -> dict[float, Selection]:
    """One selection per ratio, sharing the work: rankers score once; C-SWAP follows
    its path once to the largest ratio, since a smaller target only stops it earlier."""
    name = context.settings.criterion
    if name != "cswap":
        scores = RANKERS[name](context)
        return {ratio: rank_and_prune(context, scores, ratio) for ratio in ratios}
    context.settings = dataclasses.replace(context.settings, ratio=max(ratios))
    context.checkpoints = list(ratios)
    path = cswap(context)
    return {
        ratio: Selection(path.snapshots.get(ratio, path.keep), path.decisions, path.notes)
        for ratio in ratios
    }


__all__ = [
    "CRITERIA",
    "NEEDS_DATA",
    "RANKERS",
    "PruneContext",
    "PruneSettings",
    "Selection",
    "UnitDecision",
    "select",
    "select_for_ratios",
]
