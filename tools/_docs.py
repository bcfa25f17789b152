"""Shared helpers of the tool scripts: sample models, machine description, doc sections."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import onnx

from onnx_cswap.data import Dataset, input_specs, load_npz
from onnx_cswap.graph import GraphAnalysis, analyse
from onnx_cswap.modelio import load_model


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name -->`` markers (appending them if absent)."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    page = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in page and end in page:
        before, rest = page.split(start, 1)
        after = rest.split(end, 1)[1]
    else:
        before, after = page.rstrip("\n") + "\n\n", "\n"
    path.write_text(f"{before}{start}\n{body.strip()}\n{end}{after}")


@dataclass
class Sample:
    """A bundled sample model with its data sets and graph analysis."""

    name: str
    model: onnx.ModelProto
    calib: Dataset
    test: Dataset
    analysis: GraphAnalysis


SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
SAMPLE_NAMES = [
    "digits_cnn",
    "resnet8_fmnist",
    "resnet8_fmnist_bn",
    "mbv2_fmnist",
    "vit_tiny_fmnist",
    "seg_fmnist",
]


def load_sample(name: str) -> Sample | None:
    """``sample_models/NAME.onnx`` with its sidecar data, or None if it is not trained."""
    path = SAMPLES / f"{name}.onnx"
    if not path.exists():
        return None
    model = load_model(path)
    specs = input_specs(model)
    calib = load_npz(SAMPLES / f"{name}.calib.npz", specs)
    test = load_npz(SAMPLES / f"{name}.test.npz", specs)
    return Sample(name, model, calib, test, analyse(model))
