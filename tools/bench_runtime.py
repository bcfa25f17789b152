#!/usr/bin/env python
"""onnxruntime settings for ablation runs, and what several ablations per run could gain.

One evaluation scores the calibration set (32 samples per class). Measured, per sample
model, the median time of one evaluation:

- batch size per run (64, 256, all samples at once) and intra-op threads (1, 2), with
  the thread pool spinning (onnxruntime's default) or not;
- K = 8 ablations in one call of K × N samples, against K calls of N: the most that
  masks with a batch axis could gain (the masks themselves would cost more on top).

Runs are interleaved so that every configuration sees the same machine load.

    python tools/bench_runtime.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _docs import load_sample, machine, write_section  # noqa: E402

from onnx_cswap.data import Dataset  # noqa: E402
from onnx_cswap.prune import calibration_subset  # noqa: E402

MODELS = ["digits_cnn", "resnet8_fmnist", "mbv2_fmnist", "vit_tiny_fmnist", "seg_fmnist"]
STACKED = 8


def session(model_bytes: bytes, threads: int, spinning: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def evaluation(s: ort.InferenceSession, x: np.ndarray, batch: int) -> Callable[[], None]:
    name = s.get_inputs()[0].name

    def run() -> None:
        for start in range(0, len(x), batch):
            s.run(None, {name: x[start : start + batch]})

    return run


def medians(candidates: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {label: [] for label in candidates}
    for run in candidates.values():
        run()  # warm-up
    for _ in range(repeats):
        for label, run in candidates.items():
            started = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - started)
    return {label: float(np.median(values)) for label, values in times.items()}


def measure(data: Dataset, model_bytes: bytes, repeats: int) -> tuple[dict[str, float], float]:
    x = next(iter(data.inputs.values()))
    n = len(x)
    candidates = {}
    for threads in (1, 2):
        for spinning in (True, False):
            s = session(model_bytes, threads, spinning)
            for batch, label in ((64, "64"), (256, "256"), (n, "all")):
                key = f"{threads}/{'spin' if spinning else 'nospin'}/{label}"
                candidates[key] = evaluation(s, x, batch)
    times = medians(candidates, repeats)
    default = session(model_bytes, 2, True)
    stacked = np.concatenate([x] * STACKED)
    one_by_one = evaluation(default, x, len(x))
    together = evaluation(default, stacked, len(stacked))
    pair = medians(
        {"separate": lambda: [one_by_one() for _ in range(STACKED)], "stacked": together},
        repeats,
    )
    return times, pair["separate"] / pair["stacked"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows, gains = [], []
    for name in MODELS:
        sample = load_sample(name)
        if sample is None:
            continue
        data = calibration_subset(sample.calib, 32, seed=0)
        times, gain = measure(data, sample.model.SerializeToString(), args.repeats)
        best = min(times, key=times.get)
        base = times["2/spin/64"]
        cells = " | ".join(f"{1000 * t:.1f}" for t in times.values())
        rows.append(f"| {name} | {len(data)} | {cells} | {best} ({base / times[best]:.2f}×) |")
        gains.append(f"| {name} | {gain:.2f}× |")
        print(rows[-1], gains[-1], flush=True)
    labels = [
        f"{t} thr, {s}, batch {b}"
        for t in (1, 2)
        for s in ("spin", "no spin")
        for b in (64, 256, "all")
    ]
    body = "\n".join(
        [
            "## onnxruntime settings for ablations",
            "",
            f"`python tools/bench_runtime.py` on {machine()}: median milliseconds for one "
            "evaluation of the calibration set (32 samples per class), configurations "
            "interleaved. Last column: the fastest, and its speed-up over onnx-cswap's "
            "setting (2 threads on this machine, spinning, batch 64).",
            "",
            "| model | samples | " + " | ".join(labels) + " | fastest |",
            "| --- | ---: |" + " ---: |" * len(labels) + " --- |",
            *rows,
            "",
            f"Several ablations per run: {STACKED} evaluations stacked into one call of "
            f"{STACKED} × N samples against {STACKED} calls of N samples each, model "
            "unmasked (an upper bound: per-sample masks would add work).",
            "",
            "| model | gain of one stacked run |",
            "| --- | ---: |",
            *gains,
        ]
    )
    write_section(ROOT / "docs" / "benchmarks.md", "runtime", body)
    print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
