#!/usr/bin/env python
"""One intra-op thread pool for all of a run's sessions, against one pool per session.

A C-SWAP run holds many onnxruntime sessions: the masked model, and for each group the
region downstream of its mask and a probe computing what enters that region. The
``onnx-cswap`` command makes them share one pool (``share_thread_pool``); the Python
API leaves each session its own, since onnxruntime then refuses sessions made with
default options in the same process. Each way runs ``onnx-cswap prune`` in a fresh
process (the pool is per process), interleaved, the fastest of ``--rounds``; the time
is the report's selection phase (C-SWAP itself, without start-up, analysis, rewrite or
test set). Both must write the same bytes.

    python tools/bench_pool.py [--models a,b] [--ratio 0.3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from _docs import SAMPLES, machine, write_section  # noqa: E402
from _side_by_side import side_by_side_rows  # noqa: E402

MODELS = ["digits_cnn", "resnet8_fmnist", "mbv2_fmnist", "vit_tiny_fmnist", "seg_fmnist"]
# The command's entry point (run: one pool) or the click group alone (a pool per session).
CHILD = (
    "import sys\n"
    "from onnx_cswap.cli import main, run\n"
    "(run if sys.argv.pop(1) == 'shared' else main)()\n"
)


def prune_once(way: str, name: str, ratio: float | None) -> tuple[float, bytes]:
    """The selection phase's seconds, and the pruned model's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        output, report = Path(tmp) / "pruned.onnx", Path(tmp) / "report.json"
        command = [sys.executable, "-c", CHILD, way, "prune", str(SAMPLES / f"{name}.onnx")]
        command += ["-o", str(output), "--report", str(report)]
        if ratio is not None:
            command += ["--ratio", str(ratio)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if result.returncode:
            raise SystemExit(f"{name}, {way}: {result.stderr.strip()}")
        phases = json.loads(report.read_text())["phases_s"]
        return phases["select"], output.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3, help="Keep the fastest of N rounds.")
    args = parser.parse_args()
    models = [name for name in args.models.split(",") if (SAMPLES / f"{name}.onnx").exists()]
    rows = side_by_side_rows(
        models,
        args.ratio,
        args.rounds,
        functools.partial(prune_once, "per-session"),
        functools.partial(prune_once, "shared"),
    )
    body = "\n".join(
        [
            "## One thread pool for a run's sessions",
            "",
            f"`python tools/bench_pool.py` on {machine()}: `onnx-cswap prune` in a fresh "
            "process per run, the two ways interleaved, each the fastest of "
            f"{args.rounds} rounds; seconds of the report's selection phase (C-SWAP "
            "itself). *Per session*: every onnxruntime session has its own intra-op "
            "pool (onnxruntime's default, and the Python API's). *Shared*: one pool "
            "for all (`share_thread_pool`, which the command line calls). Same pruned "
            "bytes both ways (checked).",
            "",
            "| model | C-SWAP to | per session | shared | speed-up |",
            "| --- | --- | ---: | ---: | ---: |",
            *rows,
        ]
    )
    write_section(ROOT / "docs" / "benchmarks.md", "pool", body)
    print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    main()
