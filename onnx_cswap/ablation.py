"""Scoring ablations: run the masked model on calibration data for a given mask.

σ, the per-sample score, depends on the data: the true-class probability for class
labels; for segmentation labels the true-class probability averaged over the image's
pixels (a smooth pixel accuracy; the per-image mIoU is an option); without labels the
probability of the class the unpruned model predicted (agreement with it).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import onnx
import onnx.utils

from onnx_cswap.data import Dataset, SubsetCache, check_label_range
from onnx_cswap.downstream import BOUNDARY_BUDGET, SESSION_BUDGET, GroupRegion
from onnx_cswap.graph.analysis import GraphAnalysis
from onnx_cswap.journal import Journal, mask_key
from onnx_cswap.masking import build_masked_model, mask_feeds
from onnx_cswap.metrics import per_image_miou, true_class_probability
from onnx_cswap.runtime import Runner, RuntimeConfig


def sample_scores(
    logits: np.ndarray, targets: np.ndarray, segmentation_score: str = "probability"
) -> np.ndarray:
    """σ per sample from the model output and its targets (N labels, or N×H×W)."""
    if targets.ndim == 3 and segmentation_score == "miou":
        return per_image_miou(logits, targets)
    if targets.ndim == 3:  # mean over pixels of the true class's probability
        return true_class_probability(logits, targets).reshape(len(logits), -1).mean(1)
    return true_class_probability(logits, targets)


class AblationEvaluator:
    """One session of the masked model; each call scores one mask on the data."""

    def __init__(
        self,
        analysis: GraphAnalysis,
        data: Dataset,
        config: RuntimeConfig | None = None,
        downstream: bool = True,
        journal: Journal | None = None,
        segmentation_score: str = "probability",
        boundary_budget: int | None = None,
        session_budget: int | None = None,
    ) -> None:
        self.analysis = analysis
        self.journal = journal
        self.segmentation_score = segmentation_score
        self.data = data
        self.config = config
        self.downstream = downstream
        # Shapes for every tensor: the downstream engine cuts sub-models out of it.
        self.masked = onnx.shape_inference.infer_shapes(build_masked_model(analysis))
        self.runner = Runner(self.masked, config)
        self._extractor = onnx.utils.Extractor(self.masked)
        self._regions: OrderedDict[int, GroupRegion] = OrderedDict()  # least recent first
        self._current_region: GroupRegion | None = None
        self.boundary_budget = BOUNDARY_BUDGET if boundary_budget is None else boundary_budget
        self.session_budget = SESSION_BUDGET if session_budget is None else session_budget
        # Groups whose region's inputs are too large to cache: run on the whole model.
        self.notes: list[str] = []
        self._whole_model: set[int] = set()
        self.evaluations = 0
        self.samples_scored = 0  # evaluations weighted by the samples each one ran
        self._subsets = SubsetCache(data)
        reference = self.runner.logits(data)
        check_label_range(data, reference.shape[1])
        self.reference_logits = reference
        # Without labels, the unpruned model's predictions are the targets: N×H×W
        # for a segmentation model, so per-image scores and classes as for labels.
        self.targets = data.labels if data.labels is not None else reference.argmax(axis=1)
        self.segmentation = self.targets.ndim == 3
        self.class_members = self._class_members()

    @property
    def provider(self) -> str:
        return self.runner.provider

    def logits(
        self,
        keep: Mapping[int, np.ndarray],
        varying: int | None = None,
        samples: np.ndarray | None = None,
        continued: bool = False,
    ) -> np.ndarray:
        """Model output under ``keep`` for all samples, or the ``samples`` indexed. Naming
        the one group that ``varying`` between calls lets the downstream engine reuse
        everything upstream of that group. ``continued``: these samples extend the
        previous call's evaluation (one ablation scored a class at a time counts once)."""
        self._count(samples, continued)
        feeds = mask_feeds(self.analysis, keep)
        region = None if varying is None or not self.downstream else self._region(varying, feeds)
        if region is None:
            return self.runner.logits(self._subsets.get(samples), feeds)
        others = b"".join(
            np.asarray(keep[g], dtype=bool).tobytes() for g in sorted(keep) if g != varying
        )
        return region.logits(self.data, feeds, others, samples)

    def _region(self, group: int, feeds: Mapping[str, np.ndarray]) -> GroupRegion | None:
        """The downstream region of ``group``, from now on the only one holding cached
        activations; None for a group whose activations would not fit the budget."""
        region = self._regions.get(group)
        if region is not None:
            self._regions.move_to_end(group)
        elif group not in self._whole_model:
            region = self._new_region(group, feeds)
        if region is not self._current_region:
            if self._current_region is not None:
                self._current_region.release()
            self._current_region = region
        return region

    def _new_region(self, group: int, feeds: Mapping[str, np.ndarray]) -> GroupRegion | None:
        region = GroupRegion(self._extractor, group, self.config)
        size = region.boundary_bytes(self.data, feeds)
        if size <= self.boundary_budget:
            self._regions[group] = region
            while len(self._regions) > 1 and self._session_bytes() > self.session_budget:
                self._regions.popitem(last=False)  # the least recently tested group's
            return region
        self._whole_model.add(group)
        note = (
            f"group {group}: the activations entering its downstream region take "
            f"{size / 2**20:,.1f} MiB for the calibration set, over the "
            f"{self.boundary_budget / 2**20:,.1f} MiB cache budget; "
            "ablated on the whole model (slower, same decisions)"
        )
        self.notes.append(note)
        warnings.warn(note, RuntimeWarning, stacklevel=5)
        return None

    def _session_bytes(self) -> int:
        return sum(region.model_bytes for region in self._regions.values())

    def scores(
        self,
        keep: Mapping[int, np.ndarray],
        varying: int | None = None,
        samples: np.ndarray | None = None,
        continued: bool = False,
    ) -> np.ndarray:
        """σ under ``keep`` for every sample, or the ``samples`` indexed (see ``logits``);
        replayed from the journal when resuming."""
        if self.journal is None:
            return self.sigma(self.logits(keep, varying, samples, continued), samples)
        key = mask_key(keep, varying, samples)
        recalled = self.journal.recall(key)
        if recalled is not None:
            self._count(samples, continued)
            if varying is not None and self.downstream:  # notes as a fresh run's logits make
                self._region(varying, mask_feeds(self.analysis, keep))
            return recalled
        logits = self.logits(keep, varying, samples, continued)
        scores = self.sigma(logits, samples).astype(np.float64)
        self.journal.record(key, scores)
        return scores

    def _count(self, samples: np.ndarray | None, continued: bool) -> None:
        self.evaluations += 0 if continued else 1
        self.samples_scored += len(self.data) if samples is None else len(samples)

    def sigma(self, logits: np.ndarray, samples: np.ndarray | None = None) -> np.ndarray:
        targets = self.targets if samples is None else self.targets[samples]
        return sample_scores(logits, targets, self.segmentation_score)

    def _class_members(self) -> dict[int, np.ndarray]:
        """The samples each class is tested on (per-class inference).

        Classification: the samples of that class. Segmentation: every image in which
        the class appears (background, label 0, excepted), so an image counts for each
        object class it shows.
        """
        if not self.segmentation:
            labels = np.asarray(self.targets)
            return {int(k): np.flatnonzero(labels == k) for k in np.unique(labels)}
        classes = self.reference_logits.shape[1]
        present = np.stack(
            [np.bincount(t.reshape(-1), minlength=classes) > 0 for t in self.targets]
        )
        return {k: np.flatnonzero(present[:, k]) for k in range(1, classes) if present[:, k].any()}
