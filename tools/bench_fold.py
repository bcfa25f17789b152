#!/usr/bin/env python
"""The other groups' masks folded into each region's weights, against fed every run.

While one group is tested, the downstream engine runs the region below its mask with
every other group's mask fixed. Folded (the default), those masks are constants inside
the region's weights; fed, each costs a Mul per mask point on every run, as before
``folding`` existed. Both ways run in one process on the shared thread pool, as the
command line runs them, interleaved, the fastest of ``--rounds``; the time is the
prune's selection phase (C-SWAP itself). Both must write the same bytes.

    python tools/bench_fold.py [--models a,b] [--ratio 0.3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _docs import Sample, load_sample, machine, write_section  # noqa: E402
from _side_by_side import side_by_side_rows  # noqa: E402

from onnx_cswap import downstream  # noqa: E402
from onnx_cswap.criteria import PruneSettings  # noqa: E402
from onnx_cswap.prune import prune  # noqa: E402
from onnx_cswap.runtime import share_thread_pool  # noqa: E402

MODELS = ["digits_cnn", "resnet8_fmnist", "mbv2_fmnist", "vit_tiny_fmnist", "seg_fmnist"]


def select_seconds(
    samples: dict[str, Sample], fold: bool, name: str, ratio: float | None
) -> tuple[float, bytes]:
    """The selection phase's seconds, and the pruned model's bytes."""
    sample = samples[name]
    downstream.FOLD_FIXED_MASKS = fold
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = prune(
                sample.model, PruneSettings(ratio=ratio), sample.calib, analysis=sample.analysis
            )
    finally:
        downstream.FOLD_FIXED_MASKS = True
    return outcome.phases["select"], outcome.pruned.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3, help="Keep the fastest of N rounds.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    share_thread_pool()
    loaded = {name: load_sample(name) for name in args.models.split(",")}
    samples = {name: sample for name, sample in loaded.items() if sample is not None}
    rows = side_by_side_rows(
        list(samples),
        args.ratio,
        args.rounds,
        functools.partial(select_seconds, samples, False),
        functools.partial(select_seconds, samples, True),
    )
    body = "\n".join(
        [
            "## The other groups' masks folded into the weights",
            "",
            f"`python tools/bench_fold.py` on {machine()}: `prune` in one process on the "
            f"shared thread pool, the two ways interleaved, each the fastest of {args.rounds} "
            "rounds; seconds of the selection phase (C-SWAP itself). *Fed*: while a group is "
            "tested, every other group's mask is a run-time input, multiplied in at each of "
            "its mask points on every run. *Folded* (the default): those masks are constants "
            "of the group's region, zeroing the input channels of the weights that read them. "
            "Same pruned bytes both ways (checked).",
            "",
            "| model | C-SWAP to | fed | folded | speed-up |",
            "| --- | --- | ---: | ---: | ---: |",
            *rows,
        ]
    )
    write_section(args.out, "fold", body)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
