"""`onnx-cswap eval` on the bundled models, and its bad-input paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import onnx_cswap as oc
from conftest import SAMPLE_NAMES, SAMPLES, run_cli, sample
from onnx_cswap.cli import main
from onnx_cswap.metrics import true_class_probability
from onnx_cswap.runtime import Runner


def card_metric(name: str) -> tuple[str, float]:
    """The test metric the model card states, e.g. 'accuracy' 0.9123."""
    text = (SAMPLES / f"{name}.md").read_text()
    found = re.search(
        r"Test[^*\n]*?(accuracy|mIoU)[^*\n]*\*\*(?:accuracy |mIoU )?([0-9.]+)(%?)\*\*", text
    )
    assert found, f"{name}.md states no test metric"
    value = float(found.group(2)) / (100 if found.group(3) else 1)
    return ("miou" if found.group(1) == "mIoU" else "accuracy"), value


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_eval_reproduces_the_model_card(name: str) -> None:
    if not sample(name).exists():
        pytest.skip(f"{name} not trained yet")
    result = CliRunner().invoke(main, ["eval", str(sample(name)), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    metric, stated = card_metric(name)
    assert payload[metric] == pytest.approx(stated, abs=6e-5)
    assert payload["provider"] == "CPUExecutionProvider"


def test_eval_text_names_provider_and_sidecar() -> None:
    result = run_cli("eval", str(sample("digits_cnn")))
    assert result.returncode == 0
    assert re.fullmatch(r"accuracy: 0\.\d{4} \(\d+ samples\)\n", result.stdout)
    assert "digits_cnn.test.npz" in result.stderr
    assert "CPUExecutionProvider" in result.stderr


def test_agreement_with_itself_is_one() -> None:
    model = str(sample("digits_cnn"))
    result = CliRunner().invoke(
        main, ["eval", model, "--metric", "agreement", "--reference", model, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["agreement"] == 1.0


@pytest.mark.parametrize("name", ["seg_fmnist", "mbv2_fmnist"])
def test_true_class_probability_is_the_softmax_of_the_true_class(name: str) -> None:
    """σ is computed a block of samples at a time; the U-Net's outputs for 12 images
    span several blocks. Same numbers as the whole softmax taken at once."""
    calib = np.load(SAMPLES / f"{name}.calib.npz")
    labels = calib["y"][:12]
    images = oc.Dataset({"input": calib["x"][:12]}, None, "calib")
    logits = Runner(onnx.load(sample(name))).logits(images)
    wide = logits.astype(np.float64)
    softmax = np.exp(wide - wide.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    expected = np.take_along_axis(softmax, labels[:, None], axis=1)[:, 0]
    np.testing.assert_allclose(true_class_probability(logits, labels), expected, rtol=1e-12)


def _write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _digits(tmp_path: Path, **override: np.ndarray) -> Path:
    with np.load(SAMPLES / "digits_cnn.test.npz") as data:
        arrays = {"x": data["x"], "y": data["y"]}
    arrays.update(override)
    return _write_npz(tmp_path / "data.npz", **{k: v for k, v in arrays.items() if v is not None})


BAD_INPUTS = {
    "missing model": (lambda tmp: ["eval", str(tmp / "absent.onnx")], "no such model file"),
    "not onnx": (
        lambda tmp: ["eval", str(_text_file(tmp / "notes.onnx")), "--data", str(_digits(tmp))],
        "not an ONNX model",
    ),
    "truncated onnx": (
        lambda tmp: ["eval", str(_truncated(tmp)), "--data", str(_digits(tmp))],
        "model",
    ),
    "npz without x": (
        lambda tmp: ["eval", str(sample("digits_cnn")), "--data", str(_digits(tmp, x=None))],
        "no array 'x'",
    ),
    "wrong input shape": (
        lambda tmp: [
            "eval",
            str(sample("digits_cnn")),
            "--data",
            str(_digits(tmp, x=np.zeros((5, 1, 9, 9), np.float32), y=np.zeros(5, np.int64))),
        ],
        "the model expects N×1×8×8",
    ),
    "labels out of range": (
        lambda tmp: [
            "eval",
            str(sample("digits_cnn")),
            "--data",
            str(_digits(tmp, y=np.full(len(np.load(SAMPLES / "digits_cnn.test.npz")["y"]), 12))),
        ],
        "labels range over [12, 12] but the model has 10 classes",
    ),
    "nan in data": (
        lambda tmp: [
            "eval",
            str(sample("digits_cnn")),
            "--data",
            str(_digits(tmp, x=np.full((4, 1, 8, 8), np.nan, np.float32), y=np.zeros(4, np.int64))),
        ],
        "NaN",
    ),
    "not an npz": (
        lambda tmp: ["eval", str(sample("digits_cnn")), "--data", str(_text_file(tmp / "d.npz"))],
        "not a readable .npz",
    ),
    "agreement without reference": (
        lambda tmp: ["eval", str(sample("digits_cnn")), "--metric", "agreement"],
        "needs a reference model",
    ),
}


def _text_file(path: Path) -> Path:
    path.write_text("this is not a model\n")
    return path


def _truncated(tmp: Path) -> Path:
    data = sample("digits_cnn").read_bytes()
    path = tmp / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case: str, tmp_path: Path) -> None:
    make_args, message = BAD_INPUTS[case]
    result = run_cli(*make_args(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("onnx-cswap: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
