#!/usr/bin/env python
"""Export the trained ViT sample with the legacy TorchScript exporter too.

The torch twin of the dynamo export (tools/_torch_twins.py: the same trained weights,
read back from the .onnx and checked against onnxruntime) is exported with
dynamo=False: the same weights through the other exporter, for the tests
(tests/models/vit_tiny_fmnist_legacy.onnx).

    python tools/export_legacy_twin.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from _torch_twins import check_twin, torch_twin  # noqa: E402

SOURCE = ROOT / "sample_models" / "vit_tiny_fmnist.onnx"
TARGET = ROOT / "tests" / "models" / "vit_tiny_fmnist_legacy.onnx"


def main() -> None:
    model = torch_twin("vit_tiny_fmnist")
    difference = check_twin(model, SOURCE)
    x = np.load(ROOT / "sample_models" / "vit_tiny_fmnist.calib.npz")["x"][:1]
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.from_numpy(x),),
        str(TARGET),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )
    print(f"wrote {TARGET} (weights match the dynamo export to {difference:.1e})")


if __name__ == "__main__":
    main()
