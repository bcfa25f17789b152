"""Latency and throughput in onnxruntime, models measured side by side.

Runs of the models are interleaved (A, B, A, B, ...) so that both see the same
machine load; shared machines are noisy and only ratios measured together mean much.
The sessions' thread pools do not spin: an idle pool that spins takes the cores from
the session timed next (measured: a U-Net at batch 1 ran 1.8 or 14 ms depending on
which models were timed beside it).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import onnx

from onnx_cswap.data import Dataset, input_specs
from onnx_cswap.runtime import Runner, RuntimeConfig


@dataclass(frozen=True)
class Timing:
    model: str
    batch: int
    median_ms: float
    p90_ms: float

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return 1000.0 * self.batch / self.median_ms


def _inputs(model: onnx.ModelProto, batch: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    inputs = {
        spec.name: rng.standard_normal(
            [batch, *(1 if d is None else d for d in spec.shape[1:])]
        ).astype(spec.dtype)
        for spec in input_specs(model)
    }
    return Dataset(inputs, None, "bench")


def benchmark(
    models: dict[str, onnx.ModelProto],
    batches: list[int],
    runs: int = 50,
    warmup: int = 5,
    config: RuntimeConfig | None = None,
) -> list[Timing]:
    """Median and 90th-percentile latency of each model at each batch size."""
    config = dataclasses.replace(config or RuntimeConfig(), spinning=False)
    results = []
    for batch in batches:
        runners = {
            name: (Runner(model, config), _inputs(model, batch, seed=batch))
            for name, model in models.items()
        }
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for repeat in range(warmup + runs):
            for name, (runner, data) in runners.items():
                feed = next(data.batches(batch))
                start = time.perf_counter()
                runner.session.run(runner.output_names, feed)
                elapsed = (time.perf_counter() - start) * 1000.0
                if repeat >= warmup:
                    samples[name].append(elapsed)
        for name, values in samples.items():
            results.append(
                Timing(name, batch, float(np.median(values)), float(np.percentile(values, 90)))
            )
    return results
