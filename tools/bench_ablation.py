#!/usr/bin/env python
"""Ablation throughput: evaluations per second, three ways, on the same calibration data.

(a) naive: bake the ablation into the model and build a new onnxruntime session for each;
(b) PyTorch: the torch twin of the sample (same architecture, the exact weights of the
    .onnx, tools/_torch_twins.py), a forward pre-hook on every Conv/Linear input
    multiplying by the current mask;
(c) onnx-cswap: one session of the masked model, masks fed per run, downstream engine
    (and, for reference, the full engine).

Every ablation removes one unit of one prunable group and scores all calibration samples.
Writes the table to docs/benchmarks.md. Needs the tools extra (torch).

    python tools/bench_ablation.py [--ablations 48]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _docs import load_sample, machine, write_section  # noqa: E402
from _torch_twins import torch_twin  # noqa: E402

from onnx_cswap.ablation import AblationEvaluator  # noqa: E402
from onnx_cswap.data import Dataset  # noqa: E402
from onnx_cswap.graph import GraphAnalysis  # noqa: E402
from onnx_cswap.masking import build_masked_model  # noqa: E402

Picks = list[tuple[int, int]]  # (group id, unit) per ablation

MODELS = ["digits_cnn", "resnet8_fmnist_bn", "mbv2_fmnist", "vit_tiny_fmnist", "seg_fmnist"]


def ablations(analysis: GraphAnalysis, per_group: int | None) -> Picks:
    """A C-SWAP-like pass: every unit (or the first ``per_group``) of each group in turn."""
    return [
        (group.id, unit)
        for group in analysis.groups
        if group.prunable and group.size > 1
        for unit in range(group.size if per_group is None else min(per_group, group.size))
    ]


def time_naive(analysis: GraphAnalysis, data: Dataset, picks: Picks) -> float:
    full = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    start = time.perf_counter()
    for group_id, unit in picks:
        keep = {g: m.copy() for g, m in full.items()}
        keep[group_id][unit] = False
        session = ort.InferenceSession(
            build_masked_model(analysis, keep).SerializeToString(),
            providers=["CPUExecutionProvider"],
        )
        name = session.get_inputs()[0].name
        for batch in data.batches(256):
            session.run(None, {name: batch[name]})
    return time.perf_counter() - start


def time_engine(analysis: GraphAnalysis, data: Dataset, picks: Picks, downstream: bool) -> float:
    evaluator = AblationEvaluator(analysis, data, downstream=downstream)
    full = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    start = time.perf_counter()
    for group_id, unit in picks:  # one group after the other, as C-SWAP visits them
        keep = {g: m.copy() for g, m in full.items()}
        keep[group_id][unit] = False
        evaluator.scores(keep, varying=group_id)
    return time.perf_counter() - start


def time_torch(name: str, data: Dataset, picks: Picks) -> float:
    model = torch_twin(name)
    masks: dict[nn.Module, torch.Tensor] = {}

    def pre_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        x = inputs[0]
        mask = masks[module]
        shape = [1, -1] + [1] * (x.dim() - 2) if isinstance(module, nn.Conv2d) else [-1]
        return (x * mask.view(shape),)

    consumers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for module in consumers:
        channels = module.in_channels if isinstance(module, nn.Conv2d) else module.in_features
        masks[module] = torch.ones(channels)
        module.register_forward_pre_hook(pre_hook)
    x = torch.from_numpy(next(iter(data.inputs.values())))
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with torch.inference_mode():
        for index, _ in enumerate(picks):
            module = consumers[1 + index % (len(consumers) - 1)]  # never the model input
            channel = int(rng.integers(len(masks[module])))
            masks[module][channel] = 0.0
            for batch in torch.split(x, 256):
                model(batch)
            masks[module][channel] = 1.0
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-group", type=int, help="Ablate only the first N units of each group (default: all)."
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name in MODELS:
        sample = load_sample(name)
        if sample is None:
            continue
        data, analysis = sample.calib, sample.analysis
        picks = ablations(analysis, args.per_group)
        naive = time_naive(analysis, data, picks)
        torch_time = time_torch(name, data, picks)
        full = time_engine(analysis, data, picks, downstream=False)
        fast = time_engine(analysis, data, picks, downstream=True)
        n = len(picks)
        rows.append(
            f"| {name} | {len(data)} | {n / naive:.1f} | {n / torch_time:.1f} | {n / full:.1f} "
            f"| {n / fast:.1f} | {naive / fast:.1f}× | {torch_time / fast:.2f}× |"
        )
        print(rows[-1], flush=True)
    flag = f" --per-group {args.per_group}" if args.per_group else ""
    workload = (
        f"the first {args.per_group} units of every prunable group"
        if args.per_group
        else "every unit of every prunable group, as C-SWAP's first pass"
    )
    body = "\n".join(
        [
            "## Ablation throughput (evaluations per second)",
            "",
            f"`python tools/bench_ablation.py{flag}` on {machine()}; "
            "onnxruntime CPU provider and torch CPU, 2 threads each; measured side by side "
            f"in one run. One evaluation = one unit ablated, every calibration sample scored; "
            f"{workload}, group after group.",
            "",
            "| model | samples | (a) naive | (b) PyTorch hooks | onnx-cswap, full engine "
            "| (c) onnx-cswap | (a)/(c) | (b)/(c) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    write_section(args.out, "ablation", body)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
