#!/usr/bin/env python
"""The downstream engine in a real run: C-SWAP's natural stop, full engine against
downstream engine, wall time side by side on the same machine (same decisions).

    python tools/bench_engine.py
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _docs import load_sample, machine, write_section  # noqa: E402

from onnx_cswap.criteria import PruneSettings  # noqa: E402
from onnx_cswap.prune import prune  # noqa: E402

MODELS = ["digits_cnn", "resnet8_fmnist", "mbv2_fmnist", "vit_tiny_fmnist", "seg_fmnist"]


def main() -> None:
    rows = []
    for name in MODELS:
        sample = load_sample(name)
        if sample is None:
            continue
        model, calib, analysis = sample.model, sample.calib, sample.analysis
        seconds, evaluations = {}, 0
        for engine in ("full", "downstream"):
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcome = prune(model, PruneSettings(engine=engine), calib, analysis=analysis)
            seconds[engine] = time.perf_counter() - started
            evaluations = outcome.evaluations
        rows.append(
            f"| {name} | {evaluations} | {seconds['full']:.1f} s | {seconds['downstream']:.1f} s "
            f"| {seconds['full'] / seconds['downstream']:.2f}× |"
        )
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            "## The downstream engine in a real C-SWAP run",
            "",
            f"`python tools/bench_engine.py` on {machine()}: C-SWAP to its natural stop "
            "(every unit of every group tested once, in groups), whole prune command time "
            "including analysis, rewrite and verification; identical decisions either way.",
            "",
            "| model | evaluations | full engine | downstream engine | speed-up |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    write_section(ROOT / "docs" / "benchmarks.md", "engine", body)
    print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
