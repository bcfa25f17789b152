"""Bad inputs fail clearly; random graphs and damaged files never crash the tool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLES, magnitude_prune, run_cli, sample
from graphs import Builder
from onnx_cswap.cli import main
from onnx_cswap.criteria import PruneSettings
from onnx_cswap.data import from_arrays, input_specs
from onnx_cswap.errors import BadInputError
from onnx_cswap.graph import analyse
from onnx_cswap.modelio import load_model
from onnx_cswap.prune import prune
from onnx_cswap.rewrite import rewrite
from onnx_cswap.verify import check_equivalence

DIGITS = sample("digits_cnn")


def test_nan_weights_are_bad_input(tmp_path: Path) -> None:
    model = onnx.load(str(DIGITS))
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    weight.flat[0] = np.nan
    model.graph.initializer[0].CopyFrom(
        onnx.numpy_helper.from_array(weight, model.graph.initializer[0].name)
    )
    path = tmp_path / "nan.onnx"
    onnx.save(model, str(path))
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 2
    assert "contains NaN or infinity" in result.output


def _digits_calib(per_class: list[int]) -> tuple:
    model = load_model(DIGITS)
    with np.load(SAMPLES / "digits_cnn.calib.npz") as data:
        x, y = data["x"], data["y"]
    chosen = np.concatenate([np.flatnonzero(y == k)[:n] for k, n in enumerate(per_class)])
    return model, from_arrays(x[chosen], y[chosen], input_specs(model))


def test_a_class_too_small_for_the_test_is_an_error_by_default() -> None:
    model, calib = _digits_calib([8] * 9 + [3])
    with pytest.raises(BadInputError, match=r"classes 9 \(3\) have fewer than the 5"):
        prune(model, PruneSettings(), calib)


def test_a_class_too_small_can_be_excluded_with_a_warning() -> None:
    model, calib = _digits_calib([8] * 9 + [3])
    with pytest.warns(UserWarning, match="excluded from the tests: 9"):
        outcome = prune(model, PruneSettings(small_classes="exclude"), calib)
    assert outcome.evaluations > 0


def test_data_for_one_of_several_inputs_is_bad_input() -> None:
    b = Builder()
    b.inputs.append(onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3, 8, 8]))
    b.channels["y"] = 3
    model = b.model([b.conv(b.add("x", "y"), 4)])
    with pytest.raises(BadInputError, match="several inputs"):
        from_arrays(np.zeros((2, 3, 8, 8), np.float32), None, input_specs(model))


# -- random graphs from the supported ops -----------------------------------------------

OPS = ["conv", "conv1x1", "depthwise", "relu", "bn", "clip", "add", "concat", "split", "mul_se"]


@st.composite
def random_graphs(draw: st.DrawFn) -> onnx.ModelProto:
    b = Builder(channels=draw(st.integers(1, 4)), size=4, seed=draw(st.integers(0, 1000)))
    tensors = [b.conv("x", draw(st.integers(2, 8)))]
    for op in draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=8)):
        t = draw(st.sampled_from(tensors))
        c = b.channels[t]
        if op == "conv":
            tensors.append(b.conv(t, draw(st.integers(1, 8))))
        elif op == "conv1x1":
            tensors.append(b.conv(t, draw(st.integers(1, 8)), kernel=1))
        elif op == "depthwise":
            tensors.append(b.conv(t, c, group=c))
        elif op == "relu":
            tensors.append(b.relu(t))
        elif op == "bn":
            tensors.append(b.bn(t))
        elif op == "clip":
            tensors.append(b.op("Clip", [t, b.init(np.float32(0)), b.init(np.float32(6))]))
        elif op == "add":
            same = [u for u in tensors if b.channels[u] == c]
            tensors.append(b.add(t, draw(st.sampled_from(same))))
        elif op == "concat":
            tensors.append(b.concat([t, draw(st.sampled_from(tensors))]))
        elif op == "split" and c >= 2:
            first = draw(st.integers(1, c - 1))
            tensors.extend(b.split(t, [first, c - first]))
        elif op == "mul_se":
            squeeze = b.op("GlobalAveragePool", [t])
            gate = b.op("Sigmoid", [b.conv(b.relu(b.conv(squeeze, 2, kernel=1)), c, kernel=1)])
            tensors.append(b.op("Mul", [t, gate]))
    last = draw(st.sampled_from(tensors))
    head_is_gemm = draw(st.booleans())
    out = b.gemm(b.flatten(b.relu(last), 16), 5) if head_is_gemm else b.conv(last, 3)
    return b.model([out])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=random_graphs(), seed=st.integers(0, 2**16), ratio=st.floats(0.05, 0.8))
def test_random_graphs_analyse_and_prune_exactly_or_decline(
    model: onnx.ModelProto, seed: int, ratio: float
) -> None:
    analysis = analyse(model)  # never raises on a valid model
    assert all(g.prunable or g.reason for g in analysis.groups)
    rng = np.random.default_rng(seed)
    keep = {}
    for group in analysis.groups:
        if group.prunable:
            mask = rng.random(group.size) >= ratio
            mask[rng.integers(group.size)] = True
            keep[group.id] = mask
    pruned = rewrite(analysis, keep)
    onnx.checker.check_model(pruned, full_check=True)
    assert check_equivalence(analysis, keep, pruned) <= 1e-4


# -- damaged files ------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_damaged_model_files_are_bad_input_or_still_valid(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    original = bytearray(DIGITS.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        damaged = original[: data.draw(st.integers(0, len(original) - 1), label="length")]
    else:
        damaged = bytearray(original)
        for position in data.draw(
            st.lists(st.integers(0, len(original) - 1), min_size=1, max_size=8), label="flips"
        ):
            damaged[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    path = tmp_path_factory.mktemp("damaged") / "model.onnx"
    path.write_bytes(bytes(damaged))
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert result.output.startswith("onnx-cswap: error: ")


# -- bad inputs at the command line: exit 2, one line, nothing written --------------------


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    with np.load(SAMPLES / "digits_cnn.calib.npz") as data:
        return data["x"], data["y"]


def _few_of_class_nine(tmp: Path) -> Path:
    x, y = _digits_arrays()
    keep = np.concatenate([np.flatnonzero(y != 9), np.flatnonzero(y == 9)[:2]])
    return _npz(tmp / "few.npz", x=x[keep], y=y[keep])


PRUNE_BAD_INPUTS = {
    "integer inputs": (
        lambda tmp: _npz(
            tmp / "d.npz", x=_digits_arrays()[0].astype(np.int64), y=_digits_arrays()[1]
        ),
        "expected preprocessed float32",
    ),
    "inf in data": (
        lambda tmp: _npz(
            tmp / "d.npz", x=np.full((20, 1, 8, 8), np.inf, np.float32), y=np.arange(20) % 10
        ),
        "NaN or infinite",
    ),
    "labels out of range": (
        lambda tmp: _npz(tmp / "d.npz", x=_digits_arrays()[0], y=_digits_arrays()[1] + 10),
        "labels range over",
    ),
    "class too small for the test": (_few_of_class_nine, "have fewer than the 5"),
}


@pytest.mark.parametrize("case", sorted(PRUNE_BAD_INPUTS))
def test_prune_bad_data_exits_2_and_writes_nothing(case: str, tmp_path: Path) -> None:
    make_data, message = PRUNE_BAD_INPUTS[case]
    data = make_data(tmp_path)
    out = tmp_path / "out" / "pruned.onnx"
    out.parent.mkdir()
    result = run_cli(
        "prune",
        str(DIGITS),
        "-o",
        str(out),
        "--data",
        str(data),
        "--eval-data",
        str(data),
        "--report",
        str(out.with_suffix(".json")),
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("onnx-cswap:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("name", ["digits_cnn", "seg_fmnist"])
def test_test_labels_out_of_range_exit_2_even_without_calibration(
    name: str, tmp_path: Path
) -> None:
    """The test set is checked too, also when the criterion needs no calibration data."""
    if not sample(name).exists():
        pytest.skip(f"{name} not trained")
    with np.load(SAMPLES / f"{name}.test.npz") as data:
        x, y = data["x"][:16], data["y"][:16]
    bad = _npz(tmp_path / "bad.npz", x=x, y=y + 20)
    out = tmp_path / "out" / "pruned.onnx"
    out.parent.mkdir()
    result = run_cli(*magnitude_prune(sample(name), out, "0.2"), "--eval-data", str(bad))
    assert result.returncode == 2, result.stderr
    assert "labels range over" in result.stderr.strip().splitlines()[-1]
    assert list(out.parent.iterdir()) == []
