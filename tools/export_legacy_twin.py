#!/usr/bin/env python
"""Export the trained ViT sample with the legacy TorchScript exporter too.

The default (dynamo) export keeps parameter names for everything but the Linear
weights, which it stores transposed as the constant operand of the MatMul feeding the
named bias Add. Those are read back into the torch ViT of tools/train_samples.py,
checked against onnxruntime, and exported with dynamo=False: the same trained weights
through the other exporter, for the tests (tests/models/vit_tiny_fmnist_legacy.onnx).

    python tools/export_legacy_twin.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import train_samples as ts  # noqa: E402

SOURCE = ROOT / "sample_models" / "vit_tiny_fmnist.onnx"
TARGET = ROOT / "tests" / "models" / "vit_tiny_fmnist_legacy.onnx"


def torch_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """State-dict entries recovered from the dynamo export."""
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    weights = dict(arrays)
    for node in model.graph.node:
        bias = next((name for name in node.input if name.endswith(".bias")), None)
        if node.op_type != "Add" or bias is None:
            continue
        other = next(name for name in node.input if name != bias)
        matmul = producers.get(other)
        if matmul is not None and matmul.op_type == "MatMul" and matmul.input[1] in arrays:
            weights[bias.removesuffix(".bias") + ".weight"] = arrays[matmul.input[1]].T
    return weights


def main() -> None:
    source = onnx.load(str(SOURCE))
    model = ts.ViT().eval()
    recovered = torch_weights(source)
    state = model.state_dict()
    missing = [key for key in state if key not in recovered]
    if missing:
        raise SystemExit(f"weights not recovered: {missing}")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(recovered[k])) for k in state})
    x = np.load(ROOT / "sample_models" / "vit_tiny_fmnist.calib.npz")["x"][:64]
    session = ort.InferenceSession(str(SOURCE), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    difference = float(np.abs(got - expected).max())
    if difference > 1e-4:
        raise SystemExit(f"recovered weights differ: max |torch - onnxruntime| = {difference}")
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.from_numpy(x[:1]),),
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
