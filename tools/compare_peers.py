#!/usr/bin/env python
"""onnx-cswap against the structured pruners users would pick instead, in one run.

For every sample model and every target fraction of parameters removed, without
fine-tuning, the test metric of:

- onnxsim 0.8's ONNX-level structured pruning: ``apply_structured_pruning`` (L2 norms)
  and ``apply_structured_wanda_pruning`` (L2 norm × activation norm on our calibration
  inputs), applied to the sample .onnx as it is;
- Torch-Pruning 1.6's group pruning (magnitude L2, Taylor on our calibration set,
  random) of the torch twin of the sample (same architecture, the exact weights of the
  .onnx, tools/_torch_twins.py), exported afterwards with the sample's own exporter;
- onnx-cswap's criteria, C-SWAP among them.

Parameters are counted the same way for every tool: the float weights of the .onnx it
produced (onnx-cswap's own count). A peer's knob (its sparsity or pruning ratio) is
found by bisection: the smallest that removes at least the target, less half a point.
The latency of what each tool produced at 50% is measured side by side with the
unpruned model in onnxruntime. Writes docs/results/peers/NAME.json, one plot per
model and the section of docs/benchmarks.md. Needs the tools extra.

    python tools/compare_peers.py [--models a,b] [--fractions 0.1,...] [--render-only]
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import torch
import torch_pruning as tp
from onnxsim.pruning import apply_structured_pruning, apply_structured_wanda_pruning
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import train_samples as ts  # noqa: E402
from _docs import SAMPLE_NAMES, Sample, load_sample, machine, write_section  # noqa: E402
from _torch_twins import INPUT_SHAPES, output_layer, torch_twin  # noqa: E402

from onnx_cswap.bench import benchmark  # noqa: E402
from onnx_cswap.criteria import PruneSettings, select_for_ratios  # noqa: E402
from onnx_cswap.data import Dataset  # noqa: E402
from onnx_cswap.errors import first_line  # noqa: E402
from onnx_cswap.evaluate import evaluate_model  # noqa: E402
from onnx_cswap.graph import analyse  # noqa: E402
from onnx_cswap.prune import calibration_subset, finish, prepare  # noqa: E402
from onnx_cswap.runtime import RuntimeConfig  # noqa: E402

FRACTIONS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
LATENCY_AT = 0.5
SUMMARY_AT = 0.3  # the README's table
OURS = {
    "cswap": "onnx-cswap C-SWAP",
    "magnitude-l2": "onnx-cswap L2",
    "taylor": "onnx-cswap Taylor",
}
ONNXSIM = {"l2": "onnxsim L2", "wanda": "onnxsim Wanda"}
TORCH_PRUNING = {
    "l2": "Torch-Pruning L2",
    "taylor": "Torch-Pruning Taylor",
    "random": "Torch-Pruning random",
}
TOOLS = [*OURS.values(), *ONNXSIM.values(), *TORCH_PRUNING.values()]
OUT_JSON = ROOT / "docs" / "results" / "peers"
OUT_PLOTS = ROOT / "docs" / "plots"
BISECTION_STEPS = 12
SLACK = 0.005  # a peer's point counts for a target if it removes at least target - SLACK


@dataclass
class Produced:
    """One pruned model: the .onnx a tool wrote and the fraction of parameters removed."""

    model: onnx.ModelProto
    removed: float
    repair: str | None = None  # what had to be fixed before the model could be used


def float_params(model: onnx.ModelProto) -> int:
    return analyse(model).params


def smallest_knob(removed_at: Callable[[float], float], target: float, high: float) -> float | None:
    """The smallest knob in [0, high] removing at least target - SLACK, by bisection
    (removed fractions grow with the knob); None if even ``high`` falls short."""
    if removed_at(high) < target - SLACK:
        return None
    low = 0.0
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if removed_at(middle) >= target - SLACK:
            high = middle
        else:
            low = middle
    return high


# ---------------------------------------------------------------------------- peers


def onnxsim_pruner(
    sample: Sample, calib: Dataset, method: str
) -> Callable[[float], Produced | None]:
    """``for_target(fraction)``: onnxsim's output at the smallest sparsity reaching it."""
    original = float_params(sample.model)
    batches = list(calib.batches(64))

    @functools.lru_cache(maxsize=BISECTION_STEPS + 1)  # the bisection's last pass, reused
    def prune_at(sparsity: float) -> Produced:
        model = copy.deepcopy(sample.model)
        if method == "wanda":
            model = apply_structured_wanda_pruning(
                model,
                calibration_data=batches,
                sparsity=sparsity,
                providers=["CPUExecutionProvider"],
            )
        else:
            model = apply_structured_pruning(model, sparsity=sparsity, importance_norm="l2")
        repair = None
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
            # Shapes recorded before pruning stay in value_info; clearing them is the fix.
            repair = "stale value_info: fails onnx.checker's full check until cleared"
            del model.graph.value_info[:]
            onnx.checker.check_model(model, full_check=True)
        return Produced(model, 1.0 - float_params(model) / original, repair)

    def for_target(target: float) -> Produced | None:
        sparsity = smallest_knob(lambda knob: prune_at(knob).removed, target, 0.99)
        return None if sparsity is None else prune_at(sparsity)

    return for_target


def unbind_attention(self: ts.Attention, x: torch.Tensor) -> torch.Tensor:
    """ts.Attention.forward written as Torch-Pruning's ViT examples expect (unbind, and
    the output width from the heads left): same arithmetic, traceable head groups."""
    b, n, _ = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class TorchPruner:
    """Torch-Pruning's MetaPruner on the torch twin; ``prune_at(ratio)`` exports to ONNX."""

    def __init__(self, sample: Sample, calib: Dataset, importance: str) -> None:
        self.name = sample.name
        self.twin = torch_twin(sample.name)
        self.importance = importance
        self.original = float_params(sample.model)
        self.twin_params = sum(p.numel() for p in self.twin.parameters())
        self.x = torch.from_numpy(next(iter(calib.inputs.values())))
        self.y = torch.from_numpy(calib.labels.astype(np.int64))
        self.exporter = ts.SPEC_BY_NAME[sample.name].exporter

    def pruned_twin(self, ratio: float) -> nn.Module:
        model = copy.deepcopy(self.twin)
        attention = [m for m in model.modules() if isinstance(m, ts.Attention)]
        extra: dict = {}
        for a in attention:
            a.forward = types.MethodType(unbind_attention, a)
        if attention:
            extra = {
                "num_heads": {a.qkv: a.heads for a in attention},
                "prune_num_heads": True,
                "prune_head_dims": False,
                # at least one head stays in every layer
                "head_pruning_ratio": min(ratio, 1 - 1 / attention[0].heads),
                "unwrapped_parameters": [(model.cls_token, 2), (model.pos_embed, 2)],
            }
        importance = {
            "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
            "taylor": tp.importance.GroupTaylorImportance,
            "random": tp.importance.RandomImportance,
        }[self.importance]()
        pruner = tp.pruner.MetaPruner(
            model,
            torch.randn(*INPUT_SHAPES[self.name]),
            importance=importance,
            pruning_ratio=ratio,
            ignored_layers=[output_layer(model)],
            **extra,
        )
        if self.importance == "taylor":
            model.zero_grad()
            F.cross_entropy(model(self.x), self.y).backward()
        torch.manual_seed(0)
        pruner.step()
        for a in attention:
            a.heads = pruner.num_heads[a.qkv]
            a.head_dim = a.qkv.out_features // (3 * a.heads)
        return model.eval()

    def torch_removed(self, ratio: float) -> float:
        model = self.pruned_twin(ratio)
        return 1.0 - sum(p.numel() for p in model.parameters()) / self.twin_params

    def export(self, model: nn.Module) -> onnx.ModelProto:
        sample = torch.from_numpy(np.zeros(INPUT_SHAPES[self.name], dtype=np.float32))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "pruned.onnx"
            if self.exporter == "legacy":
                ts.export_legacy(model, sample, path)
            else:
                ts.export_dynamo(model, sample, path)
            return onnx.load(str(path))

    def prune_at(self, ratio: float) -> Produced:
        model = self.export(self.pruned_twin(ratio))
        return Produced(model, 1.0 - float_params(model) / self.original)

    def for_target(self, target: float) -> Produced | None:
        """Bisection on the torch parameter count (cheap), then one export."""
        ratio = smallest_knob(self.torch_removed, target, 0.95)
        return None if ratio is None else self.prune_at(ratio)


# ---------------------------------------------------------------------------- runs


def evaluate(model: onnx.ModelProto, test: Dataset) -> float:
    return evaluate_model(model, test).metric.value


def run_ours(sample: Sample, criterion: str, fractions: list[float]) -> dict[float, Produced]:
    settings = PruneSettings(criterion=criterion, ratio=max(fractions))
    context = prepare(sample.model, settings, sample.calib, RuntimeConfig(), sample.analysis)
    selections = select_for_ratios(context, fractions)
    produced = {}
    for fraction in fractions:
        context.settings = PruneSettings(criterion=criterion, ratio=fraction)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            outcome = finish(context, selections[fraction], None)
        produced[fraction] = Produced(outcome.pruned, outcome.removed_fraction)
    return produced


def run_tool(
    tool: str, sample: Sample, calib: Dataset, fractions: list[float]
) -> dict[float, Produced | None]:
    for criterion, label in OURS.items():
        if tool == label:
            return run_ours(sample, criterion, fractions)
    for method, label in ONNXSIM.items():
        if tool == label:
            for_target = onnxsim_pruner(sample, calib, method)
            return {f: for_target(f) for f in fractions}
    importance = next(m for m, label in TORCH_PRUNING.items() if label == tool)
    pruner = TorchPruner(sample, calib, importance)
    return {f: pruner.for_target(f) for f in fractions}


def run_model(name: str, fractions: list[float]) -> dict:
    sample = load_sample(name)
    # The peers get the calibration samples onnx-cswap itself uses.
    calib = calibration_subset(sample.calib, PruneSettings().samples_per_class, seed=0)
    unpruned = evaluate(sample.model, sample.test)
    record: dict = {"model": name, "params": sample.analysis.params, "unpruned": unpruned}
    record["metric"] = "mIoU" if sample.test.is_segmentation else "accuracy"
    record["tools"] = {}
    at_latency: dict[str, onnx.ModelProto] = {"unpruned": sample.model}
    for tool in TOOLS:
        started = time.perf_counter()
        entry: dict = {"points": [], "error": None}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                produced = run_tool(tool, sample, calib, fractions)
        except Exception as exc:  # a peer failing on a model is a result, not a crash
            entry["error"] = f"{type(exc).__name__}: {first_line(exc)[:160]}"
            produced = {}
        repairs = {p.repair for p in produced.values() if p is not None and p.repair}
        entry["repairs"] = sorted(repairs)
        for fraction, product in produced.items():
            if product is None:
                continue
            entry["points"].append(
                {
                    "target": fraction,
                    "removed": round(product.removed, 4),
                    "metric": round(evaluate(product.model, sample.test), 4),
                }
            )
            if fraction == LATENCY_AT:
                at_latency[tool] = product.model
        entry["seconds"] = round(time.perf_counter() - started, 1)
        record["tools"][tool] = entry
        points = ", ".join(f"{p['removed']:.1%}: {p['metric']:.4f}" for p in entry["points"])
        print(f"  {name} {tool} ({entry['seconds']}s): {entry['error'] or points}", flush=True)
    record["latency"] = latency(at_latency)
    return record


def latency(models: dict[str, onnx.ModelProto]) -> dict[str, dict[str, float]]:
    """Median latency (ms) at batch 1 and 32, all models interleaved in one run."""
    timings = benchmark(models, [1, 32], runs=40, warmup=5, config=RuntimeConfig(threads=2))
    table: dict[str, dict[str, float]] = {name: {} for name in models}
    for timing in timings:
        table[timing.model][str(timing.batch)] = round(timing.median_ms, 4)
    return table


# ---------------------------------------------------------------------------- page


def versions() -> str:
    packages = ["onnx-cswap", "onnxsim", "torch-pruning", "torch", "onnxruntime", "onnx"]
    return ", ".join(f"{p} {version(p)}" for p in packages)


def cell(entry: dict, target: float, best: float | None) -> str:
    point = next((p for p in entry["points"] if p["target"] == target), None)
    if point is None:
        return "—"
    text = f"{point['metric']:.4f}"
    if best is not None and point["metric"] >= best - 1e-9:
        text = f"**{text}**"
    if abs(point["removed"] - target) > 0.01:
        text += f" ({point['removed']:.0%})"
    return text


def best_at(record: dict, target: float) -> float | None:
    """The highest test metric any tool reached at ``target``."""
    return max(
        (
            point["metric"]
            for entry in record["tools"].values()
            for point in entry["points"]
            if point["target"] == target
        ),
        default=None,
    )


def reach(entry: dict) -> str:
    if entry["error"]:
        return f"failed: {entry['error']}"
    if not entry["points"]:
        return "nothing removed"
    return f"{max(p['removed'] for p in entry['points']):.0%}"


def model_section(record: dict, fractions: list[float]) -> list[str]:
    tools = record["tools"]
    best = {f: best_at(record, f) for f in fractions}
    base = record["latency"]["unpruned"]
    lines = [
        f"### {record['model']} ({record['metric']} unpruned {record['unpruned']:.4f}, "
        f"{record['params']:,} parameters)",
        "",
        "| tool | "
        + " | ".join(f"{f:.0%}" for f in fractions)
        + " | speed-up at 50%, batch 1 / 32 | time, all fractions |",
        "| --- |" + " ---: |" * (len(fractions) + 2),
    ]
    for tool, entry in tools.items():
        timing = record["latency"].get(tool)
        speed = (
            f"{base['1'] / timing['1']:.2f}× / {base['32'] / timing['32']:.2f}×" if timing else "—"
        )
        cells = " | ".join(cell(entry, f, best[f]) for f in fractions)
        lines.append(f"| {tool} | {cells} | {speed} | {entry['seconds']:.0f} s |")
    lines += ["", f"![{record['model']}](plots/peers_{record['model']}.png)", ""]
    return lines


def wins_over_cswap(record: dict, tools: list[str]) -> list[str]:
    """Targets where one of ``tools`` scores a higher test metric than C-SWAP."""
    entries = record["tools"]
    ours = {p["target"]: p["metric"] for p in entries[OURS["cswap"]]["points"]}
    wins = []
    for target, metric in sorted(ours.items()):
        better = [
            (p["metric"], tool)
            for tool in tools
            for p in entries.get(tool, {"points": []})["points"]
            if p["target"] == target and p["metric"] > metric + 1e-9
        ]
        if better:
            top, tool = max(better)
            wins.append(f"{target:.0%}: {tool} {top:.4f} against {metric:.4f}")
    return wins


def plot(record: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for tool, entry in record["tools"].items():
        if entry["points"]:
            xs = [0.0] + [100 * p["removed"] for p in entry["points"]]
            ys = [record["unpruned"]] + [p["metric"] for p in entry["points"]]
            style = "-" if tool.startswith("onnx-cswap") else "--"
            axes.plot(xs, ys, style, marker="o", markersize=3, label=tool)
    axes.set_xlabel("% of parameters removed (no fine-tuning)")
    axes.set_ylabel(record["metric"])
    axes.set_title(record["model"])
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(OUT_PLOTS / f"peers_{record['model']}.png", metadata={"Software": None})
    plt.close(figure)


def render(records: list[dict], fractions: list[float], out: Path) -> None:
    names = [r["model"] for r in records]
    lines = [
        "## Against the peers: onnxsim and Torch-Pruning, without fine-tuning",
        "",
        f"`python tools/compare_peers.py` on {machine()}; {versions()}. Test metric at "
        "matched fractions of the parameters removed (float weights of the .onnx each tool "
        "produced, counted the same way for all); a peer's sparsity or pruning ratio is "
        "bisected to the smallest that reaches the target (the fraction it really removed "
        "is shown where it is more than a point off). onnxsim prunes the sample .onnx as "
        "it is; Torch-Pruning prunes the torch twin (same weights, tools/_torch_twins.py) "
        "with uniform per-layer ratios, the output layer ignored, and ViT attention pruned "
        "by whole heads, and the result is exported with the sample's exporter. Everyone "
        "gets the same 32-per-class calibration samples. Speed-up: median onnxruntime CPU "
        "latency of the unpruned model over that of the 50% model, interleaved in one run. "
        "Time: the tool's wall time for all fractions, bisection and exports included. "
        "Best per column in bold.",
        "",
        "### How far each tool could prune each model",
        "",
        "| tool | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for tool in TOOLS:
        cells = [reach(r["tools"][tool]) if tool in r["tools"] else "—" for r in records]
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    lines.append("")
    repairs = [
        f"- {tool} on {r['model']}: {repair}"
        for tool in TOOLS
        for r in records
        for repair in r["tools"].get(tool, {}).get("repairs", [])
    ]
    if repairs:
        lines += ["Outputs that needed a repair before they could be used:", "", *repairs, ""]
    for record in records:
        lines += model_section(record, fractions)
    peers = [*ONNXSIM.values(), *TORCH_PRUNING.values()]
    ours = [tool for tool in OURS.values() if tool != OURS["cswap"]]
    for title, tools in (("a peer", peers), ("another onnx-cswap criterion", ours)):
        lines += ["", f"### Where {title} beats C-SWAP", ""]
        for record in records:
            wins = wins_over_cswap(record, tools)
            lines.append(
                f"- {record['model']}: " + ("; ".join(wins) if wins else "nowhere in this run")
            )
    notes = ROOT / "docs" / "peers-notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    write_section(out, "peers", "\n".join(lines))


def summary(records: list[dict], target: float) -> str:
    """The README's table: every tool's test metric at one fraction, models as columns."""
    names = [r["model"] for r in records]
    lines = ["| tool | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for tool in TOOLS:
        cells = [cell(r["tools"][tool], target, best_at(r, target)) for r in records]
        lines.append(f"| {tool} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SAMPLE_NAMES))
    parser.add_argument("--fractions", default=",".join(str(f) for f in FRACTIONS))
    parser.add_argument("--render-only", action="store_true", help="Rebuild the page from JSON.")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    torch.set_num_threads(2)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed"
    OUT_JSON.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        if args.render_only or load_sample(name) is None:
            continue
        record = run_model(name, fractions)
        (OUT_JSON / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        plot(record)
    records = [
        json.loads((OUT_JSON / f"{name}.json").read_text())
        for name in SAMPLE_NAMES
        if (OUT_JSON / f"{name}.json").exists()
    ]
    render(records, fractions, args.out)
    if SUMMARY_AT in fractions:
        write_section(ROOT / "README.md", "peers-summary", summary(records, SUMMARY_AT))
    print(f"wrote {args.out} and the README's summary")


if __name__ == "__main__":
    main()
