#!/usr/bin/env python
"""The engines in real C-SWAP runs, side by side on the same machine.

1. Natural stop: the full engine against the downstream engine, both scoring every
   class for every unit (``--complete-tests``), then the default, which scores one
   class at a time until one shows the unit Critical (all three decide identically:
   checked), and early stopping (``--early-stop 8``), which may decide differently:
   its samples scored and the units it kept or removed differently.
2. Towards a ratio (30%), where the extra passes dominate: the same comparisons, with
   the test metric of the default and of early stopping.

    python tools/bench_engine.py [--models a,b] [--ratio 0.3] [--early-stop 8]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _docs import Sample, load_sample, machine, write_section  # noqa: E402

from onnx_cswap.criteria import PruneSettings  # noqa: E402
from onnx_cswap.prune import PruneOutcome, prune  # noqa: E402

MODELS = ["digits_cnn", "resnet8_fmnist", "mbv2_fmnist", "vit_tiny_fmnist", "seg_fmnist"]


def timed(sample: Sample, settings: PruneSettings) -> tuple[PruneOutcome, float]:
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = prune(sample.model, settings, sample.calib, sample.test, analysis=sample.analysis)
    return outcome, time.perf_counter() - started


def units_changed(a: PruneOutcome, b: PruneOutcome) -> int:
    """Units kept by one run and removed by the other."""
    return sum(int(np.sum(a.keep[g] != b.keep[g])) for g in a.keep)


def test_metric(outcome: PruneOutcome) -> float:
    return outcome.metrics["test"]["after"]


def same_model(a: PruneOutcome, b: PruneOutcome) -> bool:
    return a.pruned.SerializeToString() == b.pruned.SerializeToString()


def natural_row(sample: Sample, early_stop: int) -> str:
    full, t_full = timed(sample, PruneSettings(engine="full", complete_tests=True))
    down, t_down = timed(sample, PruneSettings(complete_tests=True))
    lazy, t_lazy = timed(sample, PruneSettings())
    early, t_early = timed(sample, PruneSettings(early_stop=early_stop))
    assert same_model(full, down) and same_model(down, lazy), "these must decide alike"
    return (
        f"| {sample.name} | {lazy.evaluations} | {t_full:.1f} s | {t_down:.1f} s "
        f"| {t_full / t_down:.2f}× | {t_lazy:.1f} s | {t_full / t_lazy:.2f}× "
        f"| {lazy.samples_scored / down.samples_scored:.0%} | {t_early:.1f} s "
        f"| {t_full / t_early:.2f}× | {early.samples_scored / down.samples_scored:.0%} "
        f"| {units_changed(lazy, early)} "
        f"| {lazy.removed_fraction:.1%} / {early.removed_fraction:.1%} |"
    )


def ratio_row(sample: Sample, ratio: float, early_stop: int) -> str:
    every, t_every = timed(sample, PruneSettings(ratio=ratio, complete_tests=True))
    lazy, t_lazy = timed(sample, PruneSettings(ratio=ratio))
    early, t_early = timed(sample, PruneSettings(ratio=ratio, early_stop=early_stop))
    assert same_model(every, lazy), "class by class must decide alike"
    return (
        f"| {sample.name} | {t_every:.1f} s | {t_lazy:.1f} s | {t_every / t_lazy:.2f}× "
        f"| {lazy.samples_scored / every.samples_scored:.0%} | {t_early:.1f} s "
        f"| {t_every / t_early:.2f}× | {early.samples_scored / every.samples_scored:.0%} "
        f"| {units_changed(lazy, early)} | {test_metric(lazy):.4f} | {test_metric(early):.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--early-stop", type=int, default=8)
    args = parser.parse_args()
    samples = [s for name in args.models.split(",") if (s := load_sample(name)) is not None]
    natural, towards = [], []
    for sample in samples:
        natural.append(natural_row(sample, args.early_stop))
        print(natural[-1], flush=True)
    for sample in samples:
        towards.append(ratio_row(sample, args.ratio, args.early_stop))
        print(towards[-1], flush=True)
    k = args.early_stop
    body = "\n".join(
        [
            "## The engines in real C-SWAP runs",
            "",
            f"`python tools/bench_engine.py` on {machine()}; whole prune time including "
            "analysis, rewrite, verification and the test set; 32 calibration samples per "
            "class. *Every class*: every class scored for every unit (`--complete-tests`). "
            "*Class by class* (the default): classes scored one at a time until one shows "
            "the unit Critical, which settles it; decisions and bytes are those of every "
            "class scored (checked by the script and by tests). Early stopping "
            f"(`--early-stop {k}`, off by default) tests each unit first on {k} samples per "
            "class and keeps it at once if it is Critical at α/10 there; it can decide "
            "differently, so its effect is shown. Samples scored: as a share of every "
            "class scored.",
            "",
            "C-SWAP to its natural stop (every unit tested once):",
            "",
            "| model | evaluations | full engine, every class | downstream, every class "
            "| speed-up | downstream, class by class | speed-up | samples scored "
            f"| early stop {k} | speed-up | samples scored | units decided differently "
            "| removed (default / early) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | ---: |",
            *natural,
            "",
            f"C-SWAP to {args.ratio:.0%} of the parameters (extra passes with tighter α, then "
            "growing margins), downstream engine; speed-ups over every class scored:",
            "",
            "| model | every class | class by class | speed-up | samples scored "
            f"| early stop {k} | speed-up | samples scored | units decided differently "
            "| test metric, default | test metric, early stop |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *towards,
        ]
    )
    write_section(ROOT / "docs" / "benchmarks.md", "engine", body)
    print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
