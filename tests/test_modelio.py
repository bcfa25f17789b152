"""Loading and writing models: external data in and out, atomic writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import SAMPLES, magnitude_prune, run_cli, sample
from onnx_cswap.data import input_specs, load_npz
from onnx_cswap.modelio import load_model, save_model_atomically
from onnx_cswap.runtime import Runner


def external_copy(tmp_path: Path) -> Path:
    model = onnx.load(str(sample("digits_cnn")))
    path = tmp_path / "external.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="external.onnx.data",
        size_threshold=0,
    )
    assert (tmp_path / "external.onnx.data").stat().st_size > 100_000
    return path


def test_model_with_external_data_is_inspected_and_pruned(tmp_path: Path) -> None:
    path = external_copy(tmp_path)
    for suffix in ("calib", "test"):
        shutil.copy(SAMPLES / f"digits_cnn.{suffix}.npz", tmp_path / f"external.{suffix}.npz")
    inspect = run_cli("inspect", str(path))
    assert inspect.returncode == 0, inspect.stderr
    assert "38,282 parameters" in inspect.stdout
    out = tmp_path / "pruned.onnx"
    result = run_cli(*magnitude_prune(path, out, "0.3"))
    assert result.returncode == 0, result.stderr
    onnx.checker.check_model(str(out), full_check=True)


def test_large_outputs_are_written_with_external_data(tmp_path: Path) -> None:
    model = load_model(sample("digits_cnn"))
    path = tmp_path / "big.onnx"
    save_model_atomically(model, path, external_threshold=1000)
    assert (tmp_path / "big.onnx.data").exists()
    assert (tmp_path / "big.onnx.data").stat().st_size > 10 * path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    reloaded = load_model(path)
    data = load_npz(SAMPLES / "digits_cnn.test.npz", input_specs(reloaded))
    np.testing.assert_array_equal(Runner(reloaded).logits(data), Runner(model).logits(data))


def test_small_outputs_are_one_file_with_the_usual_mode(tmp_path: Path) -> None:
    path = tmp_path / "small.onnx"
    save_model_atomically(load_model(sample("digits_cnn")), path)
    assert [p.name for p in tmp_path.iterdir()] == ["small.onnx"]
    assert path.stat().st_mode & 0o644 == 0o644


def test_unsupported_opset_is_refused(tmp_path: Path) -> None:
    model = onnx.load(str(sample("digits_cnn")))
    model.opset_import[0].version = 9
    path = tmp_path / "old.onnx"
    onnx.save(model, str(path))
    with pytest.raises(Exception, match="unsupported opset 9"):
        load_model(path)
