"""The built-in proof: the pruned model must compute what the masked model computes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from onnx_cswap.data import Dataset, input_specs
from onnx_cswap.errors import BadInputError, VerificationError
from onnx_cswap.graph.analysis import GraphAnalysis
from onnx_cswap.masking import build_masked_model, mask_feeds
from onnx_cswap.runtime import Runner, RuntimeConfig

#: Largest accepted |pruned - masked| relative to the largest |masked| output value.
TOLERANCE = 1e-4


def probe_inputs(
    model: onnx.ModelProto, data: Dataset | None, count: int = 8, seed: int = 0
) -> Dataset:
    """A few real samples when there is data, else seeded standard-normal inputs."""
    if data is not None:
        return data.subset(np.arange(min(count, len(data))))
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in input_specs(model):
        batch = spec.shape[0] if spec.shape else None
        # A fixed batch size b gets the multiple of b closest above ``count``.
        samples = count if not batch else batch * -(-count // batch)
        shape = [samples, *(1 if d is None else d for d in spec.shape[1:])]
        inputs[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return Dataset(inputs, None, "random probe")


def relative_error(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    worst = 0.0
    for a, b in zip(reference, candidate):
        scale = max(float(np.max(np.abs(a))), 1e-6)
        worst = max(worst, float(np.max(np.abs(a - b))) / scale)
    return worst


def check_equivalence(
    analysis: GraphAnalysis,
    keep: Mapping[int, np.ndarray],
    pruned: onnx.ModelProto,
    data: Dataset | None = None,
    config: RuntimeConfig | None = None,
) -> float:
    """Run masked and pruned models on the same inputs; raise if they disagree."""
    probe = probe_inputs(analysis.model, data)
    masked = Runner(build_masked_model(analysis), config).run(probe, mask_feeds(analysis, keep))
    try:
        rewritten = Runner(pruned, config).run(probe)
    except BadInputError as exc:  # the input model ran, so this is our fault
        raise VerificationError(f"the pruned model does not run: {exc}") from exc
    error = relative_error(masked, rewritten)
    if not error <= TOLERANCE:
        raise VerificationError(
            f"the pruned model differs from the masked model by {error:.3g} (relative; "
            f"tolerance {TOLERANCE}); nothing was written"
        )
    return error
