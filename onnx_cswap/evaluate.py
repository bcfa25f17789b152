"""Evaluate a model on a data set with onnxruntime and a named metric."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnx_cswap.data import Dataset, check_label_range
from onnx_cswap.metrics import MetricResult, compute_metric, default_metric
from onnx_cswap.runtime import Runner, RuntimeConfig


@dataclass(frozen=True)
class Evaluation:
    metric: MetricResult
    provider: str


def evaluate_model(
    model: onnx.ModelProto,
    data: Dataset,
    metric: str | None = None,
    reference: onnx.ModelProto | None = None,
    config: RuntimeConfig | None = None,
) -> Evaluation:
    """Run ``model`` over ``data`` and compute ``metric`` (chosen from the labels if None)."""
    runner = Runner(model, config)
    logits = runner.logits(data)
    check_label_range(data, logits.shape[1])
    reference_logits = Runner(reference, config).logits(data) if reference is not None else None
    name = metric or default_metric(data.labels)
    return Evaluation(compute_metric(name, logits, data.labels, reference_logits), runner.provider)
