#!/usr/bin/env python
"""Our channel groups beside Torch-Pruning's DependencyGraph, on the sample models.

For every sample model, Torch-Pruning (``tools`` extra) builds its dependency graph on
the torch version of the architecture (tools/train_samples.py); onnx-cswap analyses the
exported .onnx. The table shows, for each, the number of prunable groups and of
prunable units (channels, neurons), the output classifier being left out on both sides.

    python tools/compare_groups.py [--out docs/groups.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch_pruning as tp
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

from _docs import write_section  # noqa: E402
from _torch_twins import ARCHITECTURES, INPUT_SHAPES, output_layer  # noqa: E402

from onnx_cswap.graph import analyse  # noqa: E402
from onnx_cswap.modelio import load_model  # noqa: E402


def torch_pruning_groups(name: str) -> tuple[int, int]:
    """(groups, units) that Torch-Pruning would prune, classifier excluded."""
    model = ARCHITECTURES[name][0]().eval()
    example = torch.randn(*INPUT_SHAPES[name])
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    groups = list(
        graph.get_all_groups(
            ignored_layers=[output_layer(model)],
            root_module_types=[nn.Conv2d, nn.Linear, nn.ConvTranspose2d],
        )
    )
    return len(groups), sum(len(group[0].idxs) for group in groups)


def our_groups(name: str) -> tuple[int, int]:
    analysis = analyse(load_model(ROOT / "sample_models" / f"{name}.onnx"))
    prunable = [g for g in analysis.groups if g.prunable]
    return len(prunable), sum(g.size for g in prunable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "groups.md")
    args = parser.parse_args()
    rows = []
    for name in ARCHITECTURES:
        if not (ROOT / "sample_models" / f"{name}.onnx").exists():
            continue
        tp_groups, tp_units = torch_pruning_groups(name)
        our_groups_, our_units = our_groups(name)
        rows.append((name, tp_groups, tp_units, our_groups_, our_units))
    header = (
        "| model | Torch-Pruning groups | Torch-Pruning units | onnx-cswap groups "
        "| onnx-cswap units |\n| --- | ---: | ---: | ---: | ---: |"
    )
    table = "\n".join([header, *(f"| {n} | {a} | {b} | {c} | {d} |" for n, a, b, c, d in rows)])
    print(table)
    write_section(args.out, "table", table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
