"""What every criterion receives and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from onnx_cswap.ablation import AblationEvaluator
from onnx_cswap.data import Dataset
from onnx_cswap.errors import BadInputError
from onnx_cswap.graph.analysis import GraphAnalysis
from onnx_cswap.journal import Journal
from onnx_cswap.runtime import Runner, RuntimeConfig


@dataclass(frozen=True)
class PruneSettings:
    """Every choice a run makes; all of it goes into the report."""

    criterion: str = "cswap"
    ratio: float | None = None
    alpha: float = 0.05
    margin: float = 0.0  # practical significance: relative drop of σ that counts
    reference: str = "current"  # σ compared with the current model's, or the "original"'s
    test: str = "wilcoxon"
    inference: str = "per-class"  # or "general": one test over all samples
    order: str = "magnitude"  # or "random": unit order inside a layer
    layer_order: str = "forward"  # or "reverse"
    scheme: str = "progressive"  # or "ranked", "greedy"
    correction: str = "none"  # or "holm" over the classes
    samples_per_class: int = 32
    small_classes: str = "error"  # or "exclude": classes too small for the test
    round_to: int = 1  # keep channel counts multiples of this where the group allows
    engine: str = "downstream"  # or "full": run the whole model for every ablation
    # Score every class for every unit tested. Off by default: once one class shows a
    # unit Critical it stays whatever the other classes show, so they are not scored
    # (same decisions and bytes; the report then has those classes' p-values as null
    # and ξ over the classes scored).
    complete_tests: bool = False
    # σ for segmentation: the per-pixel true-class probability averaged over the image
    # (a smooth pixel accuracy), or the per-image mIoU, which moves only when pixels
    # change class and so hides small but real harm from the tests.
    segmentation_score: str = "probability"
    seed: int = 0


@dataclass
class UnitDecision:
    """What a criterion measured for one unit, and whether the unit was removed."""

    group: int
    unit: int
    score: float | None = None
    xi: float | None = None
    # Per class; None for a class not scored (the unit was settled before it).
    p_lower: list[float | None] | None = None
    p_higher: list[float | None] | None = None
    category: str | None = None
    removed: bool = False

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Selection:
    keep: dict[int, np.ndarray]
    decisions: list[UnitDecision] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Keep masks at the moment each checkpoint ratio was reached (sweeps).
    snapshots: dict[float, dict[int, np.ndarray]] = field(default_factory=dict)


@dataclass
class PruneContext:
    analysis: GraphAnalysis
    settings: PruneSettings
    calib: Dataset | None
    config: RuntimeConfig
    #: Called as progress(phase, done, total) while units are tested.
    progress: Callable[[str, int, int], None] | None = None
    #: Ratios at which a path-following criterion snapshots its keep masks.
    checkpoints: list[float] = field(default_factory=list)
    #: Seconds spent per phase so far (analysis, selection, ...), for the report.
    phases: dict[str, float] = field(default_factory=dict)
    #: Where evaluations are recorded, and replayed from when resuming.
    journal: Journal | None = None
    #: The unpruned model's outputs per data split, computed once (sweeps reuse them).
    reference_logits: dict[str, np.ndarray] = field(default_factory=dict)

    @cached_property
    def original_runner(self) -> Runner:
        return Runner(self.analysis.model, self.config)

    def report_progress(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)

    @cached_property
    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.settings.seed)

    @cached_property
    def evaluator(self) -> AblationEvaluator:
        if self.calib is None:
            raise BadInputError(
                f"criterion {self.settings.criterion!r} needs calibration data (--data)"
            )
        downstream = self.settings.engine == "downstream"
        return AblationEvaluator(
            self.analysis,
            self.calib,
            self.config,
            downstream,
            self.journal,
            self.settings.segmentation_score,
        )

    @property
    def evaluations(self) -> int:
        return self.evaluator.evaluations if "evaluator" in self.__dict__ else 0

    @property
    def samples_scored(self) -> int:
        """Samples run through the model over all evaluations (a unit settled by one
        class has fewer scored than every class)."""
        return self.evaluator.samples_scored if "evaluator" in self.__dict__ else 0

    @property
    def engine_notes(self) -> list[str]:
        """What the evaluator had to do differently (groups run on the whole model)."""
        return list(self.evaluator.notes) if "evaluator" in self.__dict__ else []

    def prunable_groups(self) -> list[int]:
        """Prunable groups with more than one unit, in the configured layer order."""
        ids = [g.id for g in self.analysis.groups if g.prunable and g.size > 1]
        return ids[::-1] if self.settings.layer_order == "reverse" else ids
