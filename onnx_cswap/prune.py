"""The whole job: analyse, select units with a criterion, rewrite, verify, measure."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnx_cswap.criteria import CRITERIA, NEEDS_DATA, PruneContext, PruneSettings, Selection, select
from onnx_cswap.data import Dataset, check_label_range
from onnx_cswap.errors import BadInputError
from onnx_cswap.graph.analysis import GraphAnalysis, analyse
from onnx_cswap.journal import Journal
from onnx_cswap.metrics import compute_metric, default_metric
from onnx_cswap.rewrite import rewrite
from onnx_cswap.rounding import round_up_keep
from onnx_cswap.runtime import Runner, RuntimeConfig
from onnx_cswap.stats import TESTS
from onnx_cswap.verify import check_equivalence

CHOICES = {
    "test": TESTS,
    "inference": ("per-class", "general"),
    "order": ("magnitude", "random"),
    "layer_order": ("forward", "reverse"),
    "scheme": ("progressive", "ranked", "greedy"),
    "correction": ("none", "holm"),
    "reference": ("current", "original"),
    "engine": ("downstream", "full"),
    "small_classes": ("error", "exclude"),
    "segmentation_score": ("miou", "probability"),
}


@dataclass
class PruneOutcome:
    analysis: GraphAnalysis
    selection: Selection
    pruned: onnx.ModelProto
    provider: str
    evaluations: int
    verification_error: float
    params: tuple[int, int]
    macs: tuple[int, int]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> before/after
    phases: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    samples_scored: int = 0

    @property
    def keep(self) -> dict[int, np.ndarray]:
        return self.selection.keep

    @property
    def removed_fraction(self) -> float:
        before, after = self.params
        return 1.0 - after / before if before else 0.0


def check_settings(settings: PruneSettings, has_data: bool) -> None:
    if settings.criterion not in CRITERIA:
        raise BadInputError(
            f"unknown criterion {settings.criterion!r} (choose from {', '.join(CRITERIA)})"
        )
    for name, allowed in CHOICES.items():
        if getattr(settings, name) not in allowed:
            raise BadInputError(f"{name} must be one of {', '.join(allowed)}")
    if settings.ratio is not None and not 0.0 <= settings.ratio < 1.0:
        raise BadInputError(f"--ratio must be in [0, 1), got {settings.ratio}")
    if not 0.0 <= settings.margin < 1.0:
        raise BadInputError(f"--margin must be in [0, 1), got {settings.margin}")
    if not 0.0 < settings.alpha < 1.0:
        raise BadInputError(f"--alpha must be in (0, 1), got {settings.alpha}")
    if settings.round_to < 1:
        raise BadInputError(f"--round-to must be at least 1, got {settings.round_to}")
    if settings.samples_per_class < 2:
        raise BadInputError("--samples-per-class must be at least 2")
    if settings.criterion in NEEDS_DATA and not has_data:
        raise BadInputError(
            f"criterion {settings.criterion!r} needs calibration data (--data, or a "
            "NAME.calib.npz beside the model)"
        )


def calibration_subset(data: Dataset, per_class: int, seed: int) -> Dataset:
    """At most ``per_class`` samples of each class (classification labels only)."""
    if data.labels is None or data.labels.ndim != 1:
        return data
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(data.labels):
        members = np.flatnonzero(data.labels == label)
        if len(members) > per_class:
            members = np.sort(rng.choice(members, per_class, replace=False))
        chosen.append(members)
    return data.subset(np.sort(np.concatenate(chosen)))


def prune(
    model: onnx.ModelProto,
    settings: PruneSettings,
    calib: Dataset | None = None,
    test: Dataset | None = None,
    config: RuntimeConfig | None = None,
    analysis: GraphAnalysis | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    journal: Journal | None = None,
) -> PruneOutcome:
    """Prune ``model``; raises before returning anything unverified.

    ``analysis`` may be passed in when one model is pruned many times; ``journal``
    records every evaluation (and replays them when resuming).
    """
    config = config or RuntimeConfig()
    context = prepare(model, settings, calib, config, analysis, progress)
    context.journal = journal
    if test is not None:  # bad test labels fail now, not after a long selection
        reference_logits(context, "test", test)
    clock = time.perf_counter()
    selection = select(context)
    phases = {**context.phases, "select": time.perf_counter() - clock}
    return finish(context, selection, test, phases)


def prepare(
    model: onnx.ModelProto,
    settings: PruneSettings,
    calib: Dataset | None,
    config: RuntimeConfig,
    analysis: GraphAnalysis | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> PruneContext:
    """Check the settings, analyse the graph, pick the calibration samples."""
    check_settings(settings, calib is not None)
    clock = time.perf_counter()
    analysis = analysis or analyse(model)
    if calib is not None:
        calib = calibration_subset(calib, settings.samples_per_class, settings.seed)
    context = PruneContext(analysis, settings, calib, config, progress)
    context.phases["analyse"] = time.perf_counter() - clock
    return context


def reference_logits(context: PruneContext, split: str, data: Dataset) -> np.ndarray:
    """The unpruned model's outputs on ``data``, computed once per split; the labels
    are checked against its classes then."""
    cached = context.reference_logits.get(split)
    if cached is None:
        cached = context.original_runner.logits(data)
        check_label_range(data, cached.shape[1])
        context.reference_logits[split] = cached
    return cached


def finish(
    context: PruneContext,
    selection: Selection,
    test: Dataset | None,
    phases: dict[str, float] | None = None,
) -> PruneOutcome:
    """Rewrite, verify and measure one selection."""
    analysis, settings, calib, config = (
        context.analysis,
        context.settings,
        context.calib,
        context.config,
    )
    phases = dict(phases or {})
    selection = round_up_keep(selection, settings.round_to)
    clock = time.perf_counter()
    pruned = rewrite(analysis, selection.keep)
    onnx.checker.check_model(pruned, full_check=True)
    error = check_equivalence(analysis, selection.keep, pruned, calib, config)
    phases["rewrite_and_verify"] = time.perf_counter() - clock

    clock = time.perf_counter()
    pruned_runner = Runner(pruned, config)
    metrics = {}
    for split, data in (("calib", calib), ("test", test)):
        if data is not None:
            name = default_metric(data.labels)
            reference = reference_logits(context, split, data)
            before = compute_metric(name, reference, data.labels, reference)
            after = compute_metric(name, pruned_runner.logits(data), data.labels, reference)
            metrics[split] = {"metric": name, "before": before.value, "after": after.value}
    phases["measure"] = time.perf_counter() - clock

    params = (analysis.params, analysis.count(analysis.param_terms, selection.keep))
    macs = (analysis.macs, analysis.count(analysis.mac_terms, selection.keep))
    outcome = PruneOutcome(
        analysis,
        selection,
        pruned,
        context.original_runner.provider,
        context.evaluations,
        error,
        params,
        macs,
        metrics,
        phases,
        samples_scored=context.samples_scored,
        warnings=context.engine_notes,
    )
    if settings.ratio is not None and outcome.removed_fraction + 1e-9 < settings.ratio:
        cause = (
            f"--round-to {settings.round_to} restored units"
            if settings.round_to > 1
            else "frozen groups, and every group keeps one unit"
        )
        message = (
            f"ratio {settings.ratio:g} not reached ({cause}); removed "
            f"{outcome.removed_fraction:.1%} of the parameters"
        )
        outcome.warnings.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return outcome
