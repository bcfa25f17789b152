"""The criteria, by name. Each takes a PruneContext and returns a Selection."""

from __future__ import annotations

from collections.abc import Callable

from onnx_cswap.criteria.activations import activation_mean, apoz
from onnx_cswap.criteria.base import PruneContext, PruneSettings, Selection, UnitDecision
from onnx_cswap.criteria.cswap import cswap
from onnx_cswap.criteria.ranking import (
    bn_gamma,
    causal_ranked,
    magnitude,
    random_ranking,
    taylor,
)

CRITERIA: dict[str, Callable[[PruneContext], Selection]] = {
    "cswap": cswap,
    "magnitude-l1": magnitude(1),
    "magnitude-l2": magnitude(2),
    "bn-gamma": bn_gamma,
    "random": random_ranking,
    "activation-mean": activation_mean,
    "apoz": apoz,
    "taylor": taylor,
    "causal-ranked": causal_ranked,
}

#: Criteria that run the model on calibration data.
NEEDS_DATA = frozenset({"cswap", "taylor", "causal-ranked", "activation-mean", "apoz"})

__all__ = ["CRITERIA", "NEEDS_DATA", "PruneContext", "PruneSettings", "Selection", "UnitDecision"]
