#!/usr/bin/env python
"""Do pruned models really run faster? MACs reduction beside measured latency speed-up.

Every sample model is pruned to 30% and 50% of its parameters (magnitude-l2: speed
depends on the channel counts, not on which channels go), with and without
--round-to 8, and timed against the original side by side (interleaved runs) at
batch 1 and 32. Writes the table to docs/benchmarks.md.

    python tools/bench_pruned.py [--runs 100]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _docs import SAMPLE_NAMES, load_sample, machine, write_section  # noqa: E402

from onnx_cswap.bench import benchmark  # noqa: E402
from onnx_cswap.criteria import PruneSettings  # noqa: E402
from onnx_cswap.prune import prune  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    rows = []
    for name in SAMPLE_NAMES:
        sample = load_sample(name)
        if sample is None:
            continue
        model, analysis = sample.model, sample.analysis
        variants = {"original": model}
        macs = {"original": analysis.macs}
        for ratio in (0.3, 0.5):
            for round_to in (1, 8):
                settings = PruneSettings(criterion="magnitude-l2", ratio=ratio, round_to=round_to)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    outcome = prune(model, settings, analysis=analysis)
                label = f"{ratio:.0%}" + (", round-to 8" if round_to > 1 else "")
                variants[label] = outcome.pruned
                macs[label] = outcome.macs[1]
        timings = benchmark(variants, [1, 32], runs=args.runs)
        base = {t.batch: t.median_ms for t in timings if t.model == "original"}
        for label in variants:
            if label == "original":
                continue
            speed = {t.batch: base[t.batch] / t.median_ms for t in timings if t.model == label}
            rows.append(
                f"| {name} | {label} | {1 - macs[label] / macs['original']:.1%} | "
                f"{speed[1]:.2f}× | {speed[32]:.2f}× |"
            )
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            "## Pruned models: MACs against measured latency",
            "",
            f"`python tools/bench_pruned.py --runs {args.runs}` on {machine()}; onnxruntime "
            "CPU provider, all cores; median latency of the original over the pruned model, "
            "runs interleaved. Pruned by magnitude-l2 to the given fraction of parameters.",
            "",
            "| model | pruned | MACs removed | speed-up, batch 1 | speed-up, batch 32 |",
            "| --- | --- | ---: | ---: | ---: |",
            *rows,
        ]
    )
    write_section(args.out, "pruned-speed", body)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
