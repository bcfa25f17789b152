"""Fast ablation: run only the part of the graph that one group's mask can change.

While the units of one group are tested, everything upstream of that group's mask
points is fixed. The activations entering the downstream region (its *boundary*) are
computed once per state of the other groups' masks, by a probe sub-model holding only
what lies upstream, and each ablation then runs only the region, extracted as a
sub-model too. Decisions are unchanged: the region computes the same function of the
same inputs (tests compare both paths). The other groups' masks, fixed meanwhile, are
folded into the region's weights (``folding``). The evaluator keeps one group's
boundary at a time, runs a group whose boundary would exceed ``BOUNDARY_BUDGET`` on
the whole model, and keeps the sessions of recently tested groups up to
``SESSION_BUDGET``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnx.utils

from onnx_cswap.data import Dataset, SubsetCache
from onnx_cswap.folding import fold_fixed_masks
from onnx_cswap.masking import MASK_PREFIX, mask_input_name
from onnx_cswap.runtime import Runner, RuntimeConfig

#: Bytes of activations one group's region may cache for the calibration set. The
#: per-class subsets cut from them add as much again for class labels, more where
#: classes share samples (segmentation). A group past it is run on the whole model:
#: slower, same decisions.
BOUNDARY_BUDGET = 2 << 30
#: Bytes of sub-models (mostly weights) kept for the groups' next visits: each region
#: counts twice (its model, from which the other masks are folded anew when they
#: change, and its session's copy), its probe once. Past it the least recently used
#: group's are closed, and rebuilt (the same sub-models) when it is tested again.
SESSION_BUDGET = 1 << 30
#: Fold the other groups' masks into each region's weights; False feeds them on every
#: run instead, as before folding (tools/bench_fold.py measures the difference).
FOLD_FIXED_MASKS = True


def downstream_region(model: onnx.ModelProto, source: str, data_inputs: set[str]) -> list[str]:
    """The per-sample tensors that enter the region ``source`` can change.

    The region is every node downstream of ``source``, plus whatever computes its
    data-independent inputs (mask vectors, constants), so that only per-sample
    activations cross the cut; graph inputs it reads are fed directly.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    affected, data_dependent = {source}, set(data_inputs)
    region: set[int] = set()
    for node in model.graph.node:  # topological order
        if any(name in affected for name in node.input):
            region.add(id(node))
            affected.update(node.output)
        if any(name in data_dependent for name in node.input):
            data_dependent.update(node.output)
    boundary: list[str] = []
    pending = [name for node in model.graph.node if id(node) in region for name in node.input]
    while pending:
        name = pending.pop(0)
        if not name or name in affected or name in boundary:
            continue
        if name in data_dependent:
            boundary.append(name)
        elif name in producers and id(producers[name]) not in region:
            region.add(id(producers[name]))  # data-independent: compute it inside
            pending.extend(producers[name].input)
    return boundary


class GroupRegion:
    """The sub-model downstream of one group's mask, and the cache feeding it."""

    def __init__(
        self, extractor: onnx.utils.Extractor, group_id: int, config: RuntimeConfig | None
    ) -> None:
        masked = extractor.model
        self.mask = mask_input_name(group_id)
        masks = {value.name for value in masked.graph.input if value.name.startswith(MASK_PREFIX)}
        data_inputs = [v.name for v in masked.graph.input if v.name not in masks]
        boundary = downstream_region(masked, self.mask, set(data_inputs))
        self.fed = [name for name in boundary if name in data_inputs]
        self.cached = [name for name in boundary if name not in data_inputs]
        self.masks = sorted(masks)
        outputs = [output.name for output in masked.graph.output]
        self.config = config
        self.region = extractor.extract_model([*boundary, *self.masks], outputs)
        self.runner: Runner | None = None  # the region with the other masks folded in
        self._runner_key: bytes | None = None  # ... as they were then
        self._runner_masks: list[str] = []  # the masks its session is fed
        read = {name for node in self.region.graph.node for name in node.input}
        # The other masks that the region's nodes read: a change elsewhere (upstream,
        # which only the boundary sees) leaves the folded region as it was.
        self._folded = [name for name in self.masks if name in read and name != self.mask]
        self.model_bytes = 2 * self.region.ByteSize()
        self.probe = None
        if self.cached:  # only what lies upstream of the region: for an early group, little
            upstream = extractor.extract_model([*data_inputs, *self.masks], self.cached)
            self.probe = Runner(upstream, config)
            self.model_bytes += upstream.ByteSize()
        self._boundary_key: bytes | None = None
        self._boundary: SubsetCache | None = None  # the activations entering the region

    def boundary_bytes(self, data: Dataset, feeds: Mapping[str, np.ndarray]) -> int:
        """What caching the activations entering the region costs for all of ``data``,
        from one sample run through the probe (graph inputs it reads are not copied)."""
        if self.probe is None:
            return 0
        one = data.subset(np.arange(1))
        per_sample = sum(array.nbytes for array in self.probe.run(one, feeds))
        return per_sample * len(data)

    def logits(
        self,
        data: Dataset,
        feeds: Mapping[str, np.ndarray],
        others_key: bytes,
        samples: np.ndarray | None = None,
    ) -> np.ndarray:
        """The model output for ``feeds`` (on the ``samples`` indexed, if given); the
        boundary is made anew if the other masks changed, the region with the other
        masks folded in if those it reads did."""
        if self._boundary_key != others_key or self._boundary is None:
            arrays = dict(zip(self.cached, self.probe.run(data, feeds))) if self.probe else {}
            for name in self.fed:
                if name in data.inputs:
                    arrays[name] = data.inputs[name]
            self._boundary = SubsetCache(Dataset(arrays, None, "boundary"))
            self._boundary_key = others_key
            self._refresh_runner(feeds)  # the other masks may have changed: only then
        fed_masks = {name: feeds[name] for name in self._runner_masks}
        return self.runner.logits(self._boundary.get(samples), fed_masks)

    def _refresh_runner(self, feeds: Mapping[str, np.ndarray]) -> None:
        """The region's session, built anew if a mask folded into it changed."""
        key = b"".join(feeds[name].tobytes() for name in self._folded if name in feeds)
        if self.runner is not None and (not FOLD_FIXED_MASKS or self._runner_key == key):
            return
        fixed = {}
        if FOLD_FIXED_MASKS:
            others = [name for name in self.masks if name != self.mask and name in feeds]
            fixed = {name: feeds[name] for name in others}
        region = fold_fixed_masks(self.region, fixed) if fixed else self.region
        self.runner = Runner(region, self.config)
        self._runner_key = key
        self._runner_masks = [name for name in self.masks if name in feeds and name not in fixed]

    def release(self) -> None:
        """Drop the cached activations. The sessions stay: the next visit reuses the
        region's if none of the masks folded into it changed meanwhile."""
        self._boundary_key = self._boundary = None
