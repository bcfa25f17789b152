#!/usr/bin/env python
"""The engines in real C-SWAP runs, side by side on the same machine.

1. Natural stop: the full engine against the downstream engine, both scoring every
   class for every unit (``--complete-tests``), then the default, which scores one
   class at a time until one shows the unit Critical. All three decide identically
   (checked: same pruned bytes).
2. Towards a ratio (30%), where the extra passes dominate: every class scored against
   the default, downstream engine.

    python tools/bench_engine.py [--models a,b] [--ratio 0.3]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _docs import Sample, load_sample, machine, write_section  # noqa: E402

from onnx_cswap.criteria import PruneSettings  # noqa: E402
from onnx_cswap.prune import PruneOutcome, prune  # noqa: E402
from onnx_cswap.runtime import share_thread_pool  # noqa: E402

MODELS = ["digits_cnn", "resnet8_fmnist", "mbv2_fmnist", "vit_tiny_fmnist", "seg_fmnist"]


def timed(sample: Sample, settings: PruneSettings) -> tuple[PruneOutcome, float]:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = prune(sample.model, settings, sample.calib, sample.test, analysis=sample.analysis)
    return outcome, time.perf_counter() - started


def test_metric(outcome: PruneOutcome) -> float:
    return outcome.metrics["test"]["after"]


def same_model(a: PruneOutcome, b: PruneOutcome) -> bool:
    return a.pruned.SerializeToString() == b.pruned.SerializeToString()


def natural_row(sample: Sample) -> str:
    full, t_full = timed(sample, PruneSettings(engine="full", complete_tests=True))
    down, t_down = timed(sample, PruneSettings(complete_tests=True))
    lazy, t_lazy = timed(sample, PruneSettings())
    if not (same_model(full, down) and same_model(down, lazy)):
        raise SystemExit(f"{sample.name}: the engines decided differently")
    return (
        f"| {sample.name} | {lazy.evaluations} | {t_full:.1f} s | {t_down:.1f} s "
        f"| {t_full / t_down:.2f}× | {t_lazy:.1f} s | {t_full / t_lazy:.2f}× "
        f"| {lazy.samples_scored / down.samples_scored:.0%} "
        f"| {lazy.removed_fraction:.1%} |"
    )


def ratio_row(sample: Sample, ratio: float) -> str:
    every, t_every = timed(sample, PruneSettings(ratio=ratio, complete_tests=True))
    lazy, t_lazy = timed(sample, PruneSettings(ratio=ratio))
    if not same_model(every, lazy):
        raise SystemExit(f"{sample.name}: class by class decided differently")
    return (
        f"| {sample.name} | {lazy.evaluations} | {t_every:.1f} s | {t_lazy:.1f} s "
        f"| {t_every / t_lazy:.2f}× | {lazy.samples_scored / every.samples_scored:.0%} "
        f"| {test_metric(lazy):.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ratio", type=float, default=0.3)
    args = parser.parse_args()
    share_thread_pool()  # as the command line does
    samples = [s for name in args.models.split(",") if (s := load_sample(name)) is not None]
    natural, towards = [], []
    for sample in samples:
        natural.append(natural_row(sample))
        print(natural[-1], flush=True)
    for sample in samples:
        towards.append(ratio_row(sample, args.ratio))
        print(towards[-1], flush=True)
    body = "\n".join(
        [
            "## The engines in real C-SWAP runs",
            "",
            f"`python tools/bench_engine.py` on {machine()}; whole prune time including "
            "analysis, rewrite, verification and the test set; 32 calibration samples per "
            "class; one intra-op thread pool for all sessions, as the command line runs "
            "them. *Every class*: every class scored for every unit (`--complete-tests`). "
            "*Class by class* (the default): classes scored one at a time until one shows "
            "the unit Critical, which settles it. All of them decide alike: same pruned "
            "bytes (checked by the script and by tests). Samples scored: class by class, "
            "as a share of every class scored.",
            "",
            "C-SWAP to its natural stop (every unit tested once):",
            "",
            "| model | evaluations | full engine, every class | downstream, every class "
            "| speed-up | downstream, class by class | speed-up | samples scored | removed |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *natural,
            "",
            f"C-SWAP to {args.ratio:.0%} of the parameters (extra passes with tighter α, then "
            "growing margins), downstream engine:",
            "",
            "| model | evaluations | every class | class by class | speed-up | samples scored "
            "| test metric |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            *towards,
        ]
    )
    write_section(ROOT / "docs" / "benchmarks.md", "engine", body)
    print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
