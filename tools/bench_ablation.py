#!/usr/bin/env python
"""Ablation throughput: units decided per second, three ways, on the same data.

Each way ablates the same number of units, one at a time on the unpruned model, scores
the calibration samples and runs C-SWAP's per-class tests on the scores (the decision a
first progressive pass makes):

(a) naive: bake the ablation into the model and build a new onnxruntime session for each;
(b) PyTorch: the torch twin of the sample (same architecture, the exact weights of the
    .onnx, tools/_torch_twins.py), a forward pre-hook on every Conv/Linear input
    multiplying by the current mask (a channel of a consumer's input per ablation: the
    same work as ablating a group's unit);
(c) onnx-cswap: C-SWAP's own tester, one session of the masked model with masks fed per
    run and the downstream engine, as ``prune`` runs it: classes scored one at a time
    until one shows the unit Critical; and (c') the same with every class scored
    (``--complete-tests``), which is what (a) and (b) do.

(c) and (c') must decide every unit alike (the script stops otherwise); the table counts
the units (a) decides differently from (c').
Writes the table to docs/benchmarks.md. Needs the tools extra (torch).

    python tools/bench_ablation.py [--per-group N] [--models a,b]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _docs import Sample, load_sample, machine, write_section  # noqa: E402
from _torch_twins import torch_twin  # noqa: E402

from onnx_cswap.ablation import sample_scores  # noqa: E402
from onnx_cswap.criteria import PruneContext, PruneSettings  # noqa: E402
from onnx_cswap.criteria.cswap import UnitTester, class_pvalues  # noqa: E402
from onnx_cswap.data import Dataset  # noqa: E402
from onnx_cswap.graph import GraphAnalysis  # noqa: E402
from onnx_cswap.masking import build_masked_model  # noqa: E402
from onnx_cswap.runtime import (  # noqa: E402
    RuntimeConfig,
    session_options,
    share_thread_pool,
)
from onnx_cswap.stats import categorize  # noqa: E402

Picks = list[tuple[int, int]]  # (group id, unit) per ablation

MODELS = ["digits_cnn", "resnet8_fmnist_bn", "mbv2_fmnist", "vit_tiny_fmnist", "seg_fmnist"]
BATCH = 64  # onnx-cswap's default, for every way
ALPHA = PruneSettings().alpha


def ablations(analysis: GraphAnalysis, per_group: int | None) -> Picks:
    """A C-SWAP-like pass: every unit (or the first ``per_group``) of each group in turn."""
    return [
        (group.id, unit)
        for group in analysis.groups
        if group.prunable and group.size > 1
        for unit in range(group.size if per_group is None else min(per_group, group.size))
    ]


def tester(sample: Sample, complete: bool) -> UnitTester:
    """C-SWAP's tester as ``prune`` builds it (its set-up, one evaluation, not timed)."""
    settings = PruneSettings(complete_tests=complete)
    return UnitTester(PruneContext(sample.analysis, settings, sample.calib, RuntimeConfig()))


@dataclass
class Reference:
    """What C-SWAP decides a unit from, besides the ablated model's outputs."""

    original: np.ndarray  # σ of the unpruned model
    class_index: list[np.ndarray]
    targets: np.ndarray

    @classmethod
    def of(cls, unit_tester: UnitTester) -> Reference:
        return cls(unit_tester.original, unit_tester.class_index, unit_tester.evaluator.targets)

    def decide(self, logits: np.ndarray) -> str:
        """C-SWAP's per-class decision from one ablation's outputs."""
        after = sample_scores(logits, self.targets)
        p_values = class_pvalues(after, self.original, self.class_index, "wilcoxon", 0.0)
        return categorize(*p_values, ALPHA)


def full_masks(analysis: GraphAnalysis) -> dict[int, np.ndarray]:
    return {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}


def time_naive(
    reference: Reference, analysis: GraphAnalysis, data: Dataset, picks: Picks
) -> tuple[float, list[str]]:
    categories = []
    options = session_options()  # the shared pool, as onnx-cswap's sessions
    start = time.perf_counter()
    for group_id, unit in picks:
        keep = full_masks(analysis)
        keep[group_id][unit] = False
        session = ort.InferenceSession(
            build_masked_model(analysis, keep).SerializeToString(),
            options,
            providers=["CPUExecutionProvider"],
        )
        name = session.get_inputs()[0].name
        outputs = [session.run(None, {name: batch[name]})[0] for batch in data.batches(BATCH)]
        categories.append(reference.decide(np.concatenate(outputs)))
    return time.perf_counter() - start, categories


def time_engine(unit_tester: UnitTester, picks: Picks) -> tuple[float, list[str]]:
    full, categories = full_masks(unit_tester.context.analysis), []
    start = time.perf_counter()
    for group_id, unit in picks:  # one group after the other, as C-SWAP visits them
        decision, _ = unit_tester.test(full, unit_tester.original, group_id, unit, ALPHA, lazy=True)
        categories.append(decision.category)
    return time.perf_counter() - start, categories


def time_torch(name: str, reference: Reference, data: Dataset, picks: Picks) -> float:
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
            logits = torch.cat([model(batch) for batch in torch.split(x, BATCH)])
            reference.decide(logits.numpy())
            masks[module][channel] = 1.0
    return time.perf_counter() - start


def fastest_of(
    rounds: int, name: str, sample: Sample, picks: Picks
) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Seconds per way, the fastest of ``rounds`` (the machine is shared: noise only
    slows), and each way's decisions. One way at a time, each with a fresh engine: an
    idle engine's sessions and caches slow the next."""
    reference = Reference.of(tester(sample, complete=True))
    ways: dict[str, Callable[[], tuple[float, list[str]]]] = {
        "complete": lambda: time_engine(tester(sample, complete=True), picks),
        "fast": lambda: time_engine(tester(sample, complete=False), picks),
        "naive": lambda: time_naive(reference, sample.analysis, sample.calib, picks),
        "torch": lambda: (time_torch(name, reference, sample.calib, picks), []),
    }
    times: dict[str, float] = {}
    categories: dict[str, list[str]] = {}
    for _ in range(rounds):
        for way, run in ways.items():
            elapsed, decided = run()
            times[way] = min(times.get(way, elapsed), elapsed)
            categories[way] = decided
    return times, categories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-group", type=int, help="Ablate only the first N units of each group (default: all)."
    )
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=2, help="Keep the fastest of N rounds.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    share_thread_pool()  # as the command line does
    torch.set_num_threads(2)
    rows = []
    for name in args.models.split(","):
        sample = load_sample(name)
        if sample is None:
            continue
        picks = ablations(sample.analysis, args.per_group)
        times, categories = fastest_of(args.rounds, name, sample, picks)
        naive, torch_time, complete, fast = (
            times[way] for way in ("naive", "torch", "complete", "fast")
        )
        if categories["fast"] != categories["complete"]:
            raise SystemExit(f"{name}: class by class decided differently")
        differ = sum(a != c for a, c in zip(categories["naive"], categories["complete"]))
        n = len(picks)
        rows.append(
            f"| {name} | {len(sample.calib)} | {n} | {differ} | {n / naive:.1f} "
            f"| {n / torch_time:.1f} | {n / complete:.1f} | {n / fast:.1f} "
            f"| {naive / complete:.1f}× | {torch_time / complete:.2f}× "
            f"| **{naive / fast:.1f}×** | **{torch_time / fast:.2f}×** |"
        )
        print(rows[-1], flush=True)
    flag = f" --per-group {args.per_group}" if args.per_group else ""
    workload = (
        f"the first {args.per_group} units of every prunable group"
        if args.per_group
        else "every unit of every prunable group, as C-SWAP's first pass visits them"
    )
    body = "\n".join(
        [
            "## Ablation throughput (units decided per second)",
            "",
            f"`python tools/bench_ablation.py{flag}` on {machine()}; "
            "onnxruntime CPU provider and torch CPU, 2 threads each (one intra-op pool "
            "shared by every onnxruntime session, as the command line runs them), "
            "batches of "
            f"{BATCH}; measured side by side in one run, each way the fastest of "
            f"{args.rounds} rounds. Each way ablates {workload} "
            "(group after group, on the unpruned model), scores the calibration samples "
            "and runs C-SWAP's per-class tests. (a) and (b) score every sample; (c') is "
            "onnx-cswap's engine scoring every class too (`--complete-tests`); (c) is "
            "onnx-cswap as `prune` runs it, scoring one class at a time until one shows "
            "the unit Critical. (c) and (c') decide every unit alike (checked); "
            '"differ" counts units that (a), whose masks are constants onnxruntime '
            "may fold into the weights, decides differently from (c').",
            "",
            "| model | samples | units | differ | (a) naive | (b) PyTorch hooks "
            "| (c') every class | (c) onnx-cswap | (a)/(c') | (b)/(c') | (a)/(c) | (b)/(c) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    write_section(args.out, "ablation", body)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
