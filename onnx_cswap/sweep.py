"""Accuracy against parameters removed, per criterion, and SAUCE to sum each curve up.

SAUCE (Sparsity AUC Estimator): the area under metric(fraction of parameters removed)
over [0, r_max], divided by r_max × the unpruned metric, so 1.0 means no loss at all
over the range. Points sit at the fraction each run really removed.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from onnx_cswap.criteria import NEEDS_DATA, PruneSettings, select_for_ratios
from onnx_cswap.data import Dataset
from onnx_cswap.errors import BadInputError
from onnx_cswap.graph.analysis import analyse
from onnx_cswap.prune import finish, prepare
from onnx_cswap.runtime import RuntimeConfig


def sauce(points: list[tuple[float, float]], unpruned: float, r_max: float) -> float:
    """Trapezoid area of (removed fraction, metric) over [0, r_max], normalised.

    The curve starts at (0, unpruned); past its last point it stays at the last metric.
    """
    if r_max <= 0 or unpruned <= 0:
        raise ValueError("r_max and the unpruned metric must be positive")
    curve = sorted([(0.0, unpruned), *points])
    xs = np.array([x for x, _ in curve])
    ys = np.array([y for _, y in curve])
    grid = np.unique(np.concatenate([xs[xs <= r_max], [r_max]]))
    values = np.interp(grid, xs, ys)
    area = float(np.sum((grid[1:] - grid[:-1]) * (values[1:] + values[:-1]) / 2))
    return area / (r_max * unpruned)


@dataclass
class Curve:
    criterion: str
    points: list[dict[str, float]] = field(default_factory=list)  # target, removed, metric
    sauce: float = 0.0
    evaluations: int = 0  # model runs spent on ablations for the whole curve


@dataclass
class SweepResult:
    metric: str
    unpruned: float
    ratios: list[float]
    r_max: float
    curves: list[Curve]
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "unpruned": self.unpruned,
            "ratios": self.ratios,
            "r_max": self.r_max,
            "settings": self.settings,
            "criteria": {
                c.criterion: {
                    "points": c.points,
                    "sauce": round(c.sauce, 6),
                    "evaluations": c.evaluations,
                }
                for c in self.curves
            },
        }


def sweep(
    model: onnx.ModelProto,
    criteria: list[str],
    ratios: list[float],
    calib: Dataset,
    test: Dataset,
    base: PruneSettings | None = None,
    config: RuntimeConfig | None = None,
    r_max: float | None = None,
    on_point: Callable[[str, float, float, float], None] | None = None,
) -> SweepResult:
    """Prune to every ratio with every criterion and measure the test metric."""
    if not ratios or any(not 0.0 < r < 1.0 for r in ratios):
        raise BadInputError("--ratios must be fractions in (0, 1), e.g. 0.1,0.2,0.3")
    base = base or PruneSettings()
    config = config or RuntimeConfig()
    analysis = analyse(model)
    grid = sorted(ratios)
    curves = []
    metric, unpruned = "", 0.0
    for criterion in criteria:
        settings = dataclasses.replace(base, criterion=criterion, ratio=max(grid))
        context = prepare(model, settings, calib, config, analysis)
        selections = select_for_ratios(context, grid)
        curve = Curve(criterion)
        for ratio in grid:
            context.settings = dataclasses.replace(settings, ratio=ratio)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # unreachable: visible in x
                outcome = finish(context, selections[ratio], test)
            values = outcome.metrics["test"]
            metric, unpruned = values["metric"], values["before"]
            curve.points.append(
                {
                    "target": ratio,
                    "removed": round(outcome.removed_fraction, 6),
                    "metric": values["after"],
                }
            )
            if on_point is not None:
                on_point(criterion, ratio, outcome.removed_fraction, values["after"])
        curve.evaluations = context.evaluations
        curves.append(curve)
    limit = r_max if r_max is not None else max(ratios)
    for curve in curves:
        curve.sauce = sauce([(p["removed"], p["metric"]) for p in curve.points], unpruned, limit)
    settings = dataclasses.asdict(base)
    settings.pop("criterion")
    settings.pop("ratio")
    return SweepResult(metric, unpruned, sorted(ratios), limit, curves, settings)


def needs_data(criteria: list[str]) -> bool:
    return any(c in NEEDS_DATA for c in criteria)


def plot(result: SweepResult, path: str, title: str) -> None:
    """One line per criterion against % of parameters removed; dashed: unpruned."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BadInputError("--plot needs matplotlib: install onnx-cswap[plot]") from exc
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    for curve in result.curves:
        xs = [0.0] + [100 * p["removed"] for p in curve.points]
        ys = [result.unpruned] + [p["metric"] for p in curve.points]
        axes.plot(xs, ys, marker="o", markersize=3, label=f"{curve.criterion} ({curve.sauce:.3f})")
    axes.axhline(result.unpruned, linestyle="--", color="grey", linewidth=1, label="unpruned")
    axes.set_xlabel("% of parameters removed")
    axes.set_ylabel(result.metric)
    axes.set_title(title)
    axes.legend(fontsize=7, title="criterion (SAUCE)", title_fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
