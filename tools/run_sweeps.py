#!/usr/bin/env python
"""Sweeps, natural-stop points and the poster's ablations for every sample model.

Writes docs/results.md (tables), docs/results/NAME.json (raw curves) and
docs/plots/NAME.png. Heavy: run it by hand, not in CI.

    python tools/run_sweeps.py [--models a,b] [--ratios 0.05,0.1,...] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from _docs import load_sample  # noqa: E402

from onnx_cswap import __version__  # noqa: E402
from onnx_cswap.criteria import PruneSettings  # noqa: E402
from onnx_cswap.data import Dataset  # noqa: E402
from onnx_cswap.graph import GraphAnalysis  # noqa: E402
from onnx_cswap.prune import prune  # noqa: E402
from onnx_cswap.sweep import plot, sweep  # noqa: E402

MODELS = ["resnet8_fmnist", "resnet8_fmnist_bn", "mbv2_fmnist", "vit_tiny_fmnist", "seg_fmnist"]
CRITERIA = [
    "cswap",
    "magnitude-l1",
    "magnitude-l2",
    "bn-gamma",
    "random",
    "activation-mean",
    "apoz",
    "taylor",
    "causal-ranked",
]
#: The poster's ablation study: each variant changes one thing from the default. Each
#: runs with the plain test (margin 0) and with a practical-significance margin.
VARIANTS = {
    "C-SWAP (per-class, magnitude order, α=0.05)": {},
    "general inference": {"inference": "general"},
    "random order": {"order": "random"},
    "α = 0.5": {"alpha": 0.5},
}
MARGINS = (0.0, 0.01)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def criteria_for(name: str) -> list[str]:
    return [c for c in CRITERIA if c != "bn-gamma" or name.endswith("_bn")]


def run_model(name: str, ratios: list[float], out: Path, variants: bool = True) -> dict:
    sample = load_sample(name)
    model, calib, test, analysis = sample.model, sample.calib, sample.test, sample.analysis
    record: dict = {"model": name, "params": analysis.params, "macs": analysis.macs}

    started = time.perf_counter()
    result = sweep(
        model,
        criteria_for(name),
        ratios,
        calib,
        test,
        on_point=lambda c, r, removed, m: print(
            f"  {name} {c} @ {r:g}: removed {removed:.1%}, {m:.4f}", flush=True
        ),
    )
    record["sweep"] = result.to_json()
    record["sweep_seconds"] = round(time.perf_counter() - started, 1)
    plot(result, str(out / "plots" / f"{name}.png"), name)

    record["variants"] = run_variants(name, model, calib, test, analysis) if variants else {}
    (out / "results" / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def run_variants(
    name: str, model: onnx.ModelProto, calib: Dataset, test: Dataset, analysis: GraphAnalysis
) -> dict:
    """Natural-stop C-SWAP for every ablation variant at every margin."""
    variants: dict = {}
    for label, changes in VARIANTS.items():
        for margin in MARGINS:
            settings = PruneSettings(**changes, margin=margin)
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcome = prune(model, settings, calib, test, analysis=analysis)
            removed_by_kind: dict[str, str] = {}
            for group_id, mask in outcome.keep.items():
                kind = analysis.groups[group_id].kind
                removed, total = map(int, removed_by_kind.get(kind, "0/0").split("/"))
                removed_by_kind[kind] = f"{removed + int((~mask).sum())}/{total + len(mask)}"
            variants.setdefault(label, {})[str(margin)] = {
                "settings": dataclasses.asdict(settings),
                "removed_units": removed_by_kind,
                "removed": round(outcome.removed_fraction, 6),
                "metric": outcome.metrics["test"]["metric"],
                "before": outcome.metrics["test"]["before"],
                "after": outcome.metrics["test"]["after"],
                "evaluations": outcome.evaluations,
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(
                f"  {name} {label} margin {margin}: {variants[label][str(margin)]['removed']:.3f}"
                f" removed, {outcome.metrics['test']['after']:.4f}",
                flush=True,
            )
    return variants


def refresh_variants(name: str, out: Path) -> None:
    path = out / "results" / f"{name}.json"
    record = json.loads(path.read_text())
    sample = load_sample(name)
    record["variants"] = run_variants(
        name, sample.model, sample.calib, sample.test, sample.analysis
    )
    path.write_text(json.dumps(record, indent=2) + "\n")


DEFAULT_VARIANT = "C-SWAP (per-class, magnitude order, α=0.05)"


def variants_by_margin(record: dict) -> dict[str, dict[str, dict]]:
    """Variant results keyed by margin; records of earlier runs held margin 0 only."""
    return {
        label: ({"0.0": entry} if "removed" in entry else entry)
        for label, entry in record.get("variants", {}).items()
        if label in VARIANTS
    }


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def metric_text(metric: str, value: float) -> str:
    return f"{100 * value:.2f}" if metric == "accuracy" else f"{value:.4f}"


def render(records: list[dict]) -> str:
    lines = [
        "# Results",
        "",
        f"Generated by `python tools/run_sweeps.py` with onnx-cswap {__version__} on "
        f"{cpu_name()} ({platform.machine()}, onnxruntime CPU provider), "
        f"{time.strftime('%Y-%m-%d')}. No fine-tuning anywhere. Calibration: the model's "
        "`.calib.npz` (32 samples per class); metric on the `.test.npz`. Accuracy in %, "
        "mIoU as a fraction. Ratios are targets; the points sit at the fraction of "
        "parameters really removed (in the JSON under `docs/results/`).",
        "",
        "## SAUCE per criterion",
        "",
        "Area under metric(fraction removed) over [0, r_max], divided by r_max × the "
        "unpruned metric (1.0: no loss on the whole range). Best per model in bold.",
        "",
    ]
    header = ["model", "r_max", *CRITERIA]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| --- | ---: |" + " ---: |" * len(CRITERIA))
    for record in records:
        scores = {c: v["sauce"] for c, v in record["sweep"]["criteria"].items()}
        best = max(scores.values())
        cells = [
            ("**{:.4f}**" if scores[c] == best else "{:.4f}").format(scores[c])
            if c in scores
            else "–"
            for c in CRITERIA
        ]
        r_max = record["sweep"]["r_max"]
        lines.append(f"| {record['model']} | {r_max:g} | " + " | ".join(cells) + " |")

    lines += [
        "",
        "## C-SWAP at its natural stop, and the poster's ablations",
        "",
        "No `--ratio`: each variant removes what its tests call Neutral or Detrimental. "
        "Margin 0 is the plain paired test (any significant drop of σ makes a unit "
        "Critical); margin 0.01 asks for a drop of more than 1% of σ. Cells: parameters "
        "removed, test metric after (before: see the model's section).",
        "",
        "| model | variant | margin 0 | margin 0.01 |",
        "| --- | --- | --- | --- |",
    ]
    for record in records:
        for label, by_margin in variants_by_margin(record).items():
            cells = [
                f"{percent(v['removed'])}, {metric_text(v['metric'], v['after'])}"
                if (v := by_margin.get(str(m)))
                else "–"
                for m in MARGINS
            ]
            lines.append(f"| {record['model']} | {label} | " + " | ".join(cells) + " |")

    unit_rows = [
        f"| {record['model']} | {label} | {m} | "
        + ", ".join(f"{k}s {v}" for k, v in entry["removed_units"].items())
        + f" | {metric_text(entry['metric'], entry['before'])} → "
        f"{metric_text(entry['metric'], entry['after'])} |"
        for record in records
        for label, by_margin in variants_by_margin(record).items()
        for m, entry in by_margin.items()
        if "head" in entry.get("removed_units", {})
    ]
    if unit_rows:
        lines += [
            "",
            "Units removed at the natural stop, by kind (prunable units of that kind in "
            "the model after the slash):",
            "",
            "| model | variant | margin | removed | test metric |",
            "| --- | --- | --- | --- | --- |",
            *unit_rows,
        ]
    notes = ROOT / "docs" / "results-notes.md"
    if notes.exists():  # hand-written: what the numbers taught us
        lines += ["", notes.read_text().strip()]
    lines += ["", "## Targets (issue 5)", ""]
    for record in records:
        scores = {c: v["sauce"] for c, v in record["sweep"]["criteria"].items()}
        winner = max(scores, key=scores.get)
        verdict = "met" if winner == "cswap" else f"missed: {winner} leads"
        gap = scores["cswap"] - max(v for c, v in scores.items() if c != "cswap")
        lines.append(
            f"- {record['model']}: C-SWAP has the highest SAUCE — {verdict} "
            f"(C-SWAP minus the best other criterion: {gap:+.4f})."
        )
    for record in records:
        if record["model"].startswith(("resnet8", "mbv2")):
            v = variants_by_margin(record).get(DEFAULT_VARIANT, {}).get("0.0")
            if v is None:
                continue
            drop = 100 * (v["before"] - v["after"])
            met = v["removed"] >= 0.25 and drop <= 1.0
            lines.append(
                f"- {record['model']}: natural stop removes ≥ 25% for ≤ 1 point — "
                f"{'met' if met else 'missed'} ({percent(v['removed'])} removed, "
                f"{drop:+.2f} points lost)."
            )

    for record in records:
        sweep_data = record["sweep"]
        unpruned = metric_text(sweep_data["metric"], sweep_data["unpruned"])
        lines += [
            "",
            f"## {record['model']}",
            "",
            f"{record['params']:,} parameters, {record['macs']:,} MACs per sample; unpruned "
            f"test {sweep_data['metric']} {unpruned}. "
            f"Sweep time {record['sweep_seconds']:.0f} s.",
            "",
            f"![{record['model']}](plots/{record['model']}.png)",
            "",
            "| criterion | " + " | ".join(f"{r:g}" for r in sweep_data["ratios"]) + " | SAUCE |",
            "| --- |" + " ---: |" * (len(sweep_data["ratios"]) + 1),
        ]
        for criterion, curve in sweep_data["criteria"].items():
            cells = [metric_text(sweep_data["metric"], p["metric"]) for p in curve["points"]]
            lines.append(f"| {criterion} | " + " | ".join(cells) + f" | {curve['sauce']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ratios", default="0.05,0.1,0.2,0.3,0.4,0.5")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument(
        "--no-variants", action="store_true", help="Skip the natural-stop ablation variants."
    )
    parser.add_argument(
        "--variants-only",
        action="store_true",
        help="Rerun only the natural-stop variants, into the JSON of an earlier sweep.",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="Only rebuild results.md from the JSON files of earlier runs.",
    )
    args = parser.parse_args()
    ratios = [float(r) for r in args.ratios.split(",")]
    for folder in ("results", "plots"):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        for name in args.models.split(","):
            if not (ROOT / "sample_models" / f"{name}.onnx").exists():
                print(f"skipping {name}: not trained", flush=True)
                continue
            print(f"{name}:", flush=True)
            if args.variants_only:
                refresh_variants(name, args.out)
            else:
                run_model(name, ratios, args.out, variants=not args.no_variants)
    records = [
        json.loads((args.out / "results" / f"{name}.json").read_text())
        for name in MODELS
        if (args.out / "results" / f"{name}.json").exists()
    ]
    (args.out / "results.md").write_text(render(records))
    print(f"wrote {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
