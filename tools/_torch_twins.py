"""The torch version of every sample model, with the exact weights of its .onnx file.

The samples were exported from the torch classes of tools/train_samples.py, so the
architecture is known; the weights are read back from the .onnx (no checkpoint is
committed). Three exporter habits are undone:

- dynamo exports with BatchNorm folded by hand name a folded conv's bias
  ``<conv>.weight_bias``: the twin is ``fold_batchnorm(Model())`` and the bias is renamed;
- the dynamo exporter stores a token-wise Linear's weight transposed, as the constant
  operand of the MatMul feeding the named bias Add (the ViT);
- the legacy exporter reads a de-duplicated initializer through an Identity node whose
  output carries the state-dict name.

Every twin is checked against onnxruntime on the calibration inputs before use.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import train_samples as ts  # noqa: E402

#: sample name -> (torch class, BatchNorm folded into the convolutions in the export)
ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], bool]] = {
    "digits_cnn": (ts.DigitsCNN, False),
    "resnet8_fmnist": (ts.ResNet8, True),
    "resnet8_fmnist_bn": (ts.ResNet8, False),
    "mbv2_fmnist": (ts.MobileNetV2, True),
    "vit_tiny_fmnist": (ts.ViT, False),
    "seg_fmnist": (ts.SegUNet, True),
}

#: sample name -> the example input shape of the torch model
INPUT_SHAPES = {
    "digits_cnn": (1, 1, 8, 8),
    "resnet8_fmnist": (1, 1, 28, 28),
    "resnet8_fmnist_bn": (1, 1, 28, 28),
    "mbv2_fmnist": (1, 1, 28, 28),
    "vit_tiny_fmnist": (1, 1, 28, 28),
    "seg_fmnist": (1, 1, 64, 64),
}


def output_layer(model: nn.Module) -> nn.Module:
    """The layer producing the model's output (classes), which no pruner may shrink."""
    if isinstance(model, ts.DigitsCNN):
        return model.classifier[-1]
    return model.fc if hasattr(model, "fc") else model.head


#: Largest |torch - onnxruntime| accepted on the calibration inputs.
TOLERANCE = 1e-4


def onnx_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """State-dict entries recoverable from an export, under their torch names."""
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    weights = dict(arrays)
    for name, array in arrays.items():
        if name.endswith(".weight_bias"):
            weights[name.removesuffix(".weight_bias") + ".bias"] = array
    producers = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in arrays:
            weights[node.output[0]] = arrays[node.input[0]]
        bias = next((name for name in node.input if name.endswith(".bias")), None)
        if node.op_type != "Add" or bias is None:
            continue
        other = next(name for name in node.input if name != bias)
        matmul = producers.get(other)
        if matmul is not None and matmul.op_type == "MatMul" and matmul.input[1] in arrays:
            weights[bias.removesuffix(".bias") + ".weight"] = arrays[matmul.input[1]].T
    return weights


def torch_twin(name: str, path: Path | None = None) -> nn.Module:
    """The torch model computing what ``sample_models/NAME.onnx`` computes (eval mode)."""
    factory, folded = ARCHITECTURES[name]
    path = path or ROOT / "sample_models" / f"{name}.onnx"
    model = factory().eval()
    if folded:
        model = ts.fold_batchnorm(model)
    source = onnx.load(str(path))
    recovered = onnx_weights(source)
    state = model.state_dict()
    wanted = [key for key in state if not key.endswith("num_batches_tracked")]
    missing = [key for key in wanted if key not in recovered]
    if missing:
        raise RuntimeError(f"{name}: weights not recovered from the export: {missing}")
    model.load_state_dict(
        {
            **state,
            **{
                key: torch.from_numpy(np.array(recovered[key], dtype=np.float32)).reshape(
                    state[key].shape
                )
                for key in wanted
            },
        }
    )
    check_twin(model, path)
    return model


def check_twin(model: nn.Module, path: Path) -> float:
    """Max |torch - onnxruntime| on 64 calibration inputs; raises above TOLERANCE."""
    x = np.load(path.with_suffix("").with_suffix(".calib.npz"))["x"][:64]
    expected = ts.ort_predictor(path)(x)
    difference = float(np.abs(ts.torch_predict(model, x) - expected).max())
    if difference > TOLERANCE:
        raise RuntimeError(f"{path.name}: torch twin differs from onnxruntime by {difference}")
    return difference
