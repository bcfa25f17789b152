"""The JSON report of a prune run (contract: method.md §4)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from onnx_cswap import __version__
from onnx_cswap.criteria import PruneSettings
from onnx_cswap.prune import PruneOutcome
from onnx_cswap.stats import CRITICAL, DETRIMENTAL, NEUTRAL


def build_report(
    outcome: PruneOutcome,
    settings: PruneSettings,
    model_bytes: bytes,
    wall_time_s: float,
    device: str,
) -> dict[str, Any]:
    analysis = outcome.analysis
    decisions: dict[int, list[dict[str, Any]]] = {}
    for decision in outcome.selection.decisions:
        decisions.setdefault(decision.group, []).append(decision.to_json())
    groups = []
    for group in analysis.groups:
        keep = outcome.keep.get(group.id, np.ones(group.size, dtype=bool))
        tested = decisions.get(group.id, [])
        groups.append(
            {
                **group.to_json(),
                "kept": np.flatnonzero(keep).tolist(),
                "removed": np.flatnonzero(~keep).tolist(),
                "counts": {
                    category: sum(d.get("category") == category for d in tested)
                    for category in (CRITICAL, NEUTRAL, DETRIMENTAL)
                },
                "units": tested,
            }
        )
    return {
        "tool": "onnx-cswap",
        "version": __version__,
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "settings": dataclasses.asdict(settings),
        "device": device,
        "provider": outcome.provider,
        "params_before": outcome.params[0],
        "params_after": outcome.params[1],
        "macs_before": outcome.macs[0],
        "macs_after": outcome.macs[1],
        "removed_fraction": round(outcome.removed_fraction, 6),
        "metrics": outcome.metrics,
        "verification_max_relative_error": outcome.verification_error,
        "wall_time_s": round(wall_time_s, 3),
        "phases_s": {k: round(v, 3) for k, v in outcome.phases.items()},
        "evaluations": outcome.evaluations,
        "samples_scored": outcome.samples_scored,
        "notes": outcome.selection.notes + outcome.warnings,
        "groups": groups,
    }
