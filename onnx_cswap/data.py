"""Calibration and evaluation data: the ``.npz`` contract, arrays, and data readers.

An ``.npz`` holds ``x`` (float32, N first, already preprocessed) and ``y`` (int64: N
labels for classification, N×H×W for segmentation). A model with several inputs takes
one array per input name instead of ``x``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from onnx_cswap.errors import DataError


@dataclass(frozen=True)
class TensorSpec:
    """Name, element type and shape of a graph input or output (``None``: dynamic dim)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    return TensorSpec(value.name, np.dtype(dtype), dims)


def input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """The graph inputs a caller must feed (initializers that are also inputs excluded)."""
    initializers = {init.name for init in model.graph.initializer}
    return [_spec(v) for v in model.graph.input if v.name not in initializers]


def output_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    return [_spec(v) for v in model.graph.output]


class DataReader(Protocol):
    """onnxruntime's ``CalibrationDataReader`` protocol: a dict of inputs per call, then None."""

    def get_next(self) -> dict[str, np.ndarray] | None: ...


@dataclass
class Dataset:
    """Model inputs keyed by input name, with optional integer labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    @property
    def is_segmentation(self) -> bool:
        return self.labels is not None and self.labels.ndim == 3

    def subset(self, indices: np.ndarray) -> Dataset:
        labels = None if self.labels is None else self.labels[indices]
        inputs = {name: array[indices] for name, array in self.inputs.items()}
        return Dataset(inputs, labels, self.source)

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self), batch_size):
            yield {name: array[start : start + batch_size] for name, array in self.inputs.items()}


class SubsetCache:
    """Subsets of one data set, built once per index array: testing class by class asks
    for the same subsets, one per class, at every unit."""

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self._subsets: dict[bytes, Dataset] = {}

    def get(self, samples: np.ndarray | None) -> Dataset:
        """The samples indexed, or the whole data set for None."""
        if samples is None:
            return self.data
        key = samples.tobytes()
        if key not in self._subsets:
            self._subsets[key] = self.data.subset(samples)
        return self._subsets[key]


def sidecar_path(model_path: str | os.PathLike[str], role: str) -> Path | None:
    """``NAME.calib.npz`` or ``NAME.test.npz`` beside ``NAME.onnx``, if it exists."""
    model_path = Path(model_path)
    candidate = model_path.with_name(f"{model_path.stem}.{role}.npz")
    return candidate if candidate.is_file() else None


def load_npz(path: str | os.PathLike[str], specs: list[TensorSpec]) -> Dataset:
    """Read an ``.npz`` following the data contract and check it against the model inputs."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    if len(specs) == 1 and "x" in arrays:
        inputs = {specs[0].name: arrays["x"]}
    else:
        missing = [spec.name for spec in specs if spec.name not in arrays]
        if missing:
            expected = "'x'" if len(specs) == 1 else ", ".join(repr(s.name) for s in specs)
            raise DataError(f"{path}: the file has no array {expected} for the model input")
        inputs = {spec.name: arrays[spec.name] for spec in specs}
    return from_arrays(inputs, arrays.get("y"), specs, source=str(path))


def from_arrays(
    inputs: np.ndarray | Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    specs: list[TensorSpec],
    source: str = "<arrays>",
) -> Dataset:
    """Build a checked ``Dataset`` from in-memory arrays (one array or one per input name)."""
    if not isinstance(inputs, Mapping):
        if len(specs) != 1:
            names = ", ".join(s.name for s in specs)
            raise DataError(
                f"{source}: the model has several inputs ({names}); give one array each"
            )
        inputs = {specs[0].name: inputs}
    checked = {spec.name: _checked_input(source, spec, inputs.get(spec.name)) for spec in specs}
    counts = {len(array) for array in checked.values()}
    if len(counts) != 1:
        raise DataError(f"{source}: the input arrays have different sample counts {sorted(counts)}")
    (count,) = counts
    if count == 0:
        raise DataError(f"{source}: the data holds no samples")
    if labels is not None:
        labels = _checked_labels(source, np.asarray(labels), count)
    return Dataset(checked, labels, source)


def from_reader(
    reader: DataReader, specs: list[TensorSpec], labels: np.ndarray | None = None
) -> Dataset:
    """Drain an onnxruntime ``CalibrationDataReader`` into a ``Dataset``."""
    chunks: dict[str, list[np.ndarray]] = {spec.name: [] for spec in specs}
    while (feed := reader.get_next()) is not None:
        for spec in specs:
            if spec.name not in feed:
                raise DataError(f"data reader: a batch has no input {spec.name!r}")
            chunks[spec.name].append(np.asarray(feed[spec.name]))
    if not any(chunks.values()):
        raise DataError("data reader: it returned no data")
    inputs = {name: np.concatenate(parts) for name, parts in chunks.items()}
    return from_arrays(inputs, labels, specs, source="data reader")


def check_label_range(dataset: Dataset, num_classes: int) -> None:
    """Labels must index the model's output classes."""
    if dataset.labels is None:
        return
    low, high = int(dataset.labels.min()), int(dataset.labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(
            f"{dataset.source}: labels range over [{low}, {high}] but the model has "
            f"{num_classes} classes (valid labels 0 to {num_classes - 1})"
        )


def _checked_input(source: str, spec: TensorSpec, array: np.ndarray | None) -> np.ndarray:
    if array is None:
        raise DataError(f"{source}: no data for model input {spec.name!r}")
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_:
        raise DataError(
            f"{source}: input {spec.name!r} has dtype {array.dtype}, expected {spec.dtype}"
        )
    if np.issubdtype(spec.dtype, np.floating) and not np.issubdtype(array.dtype, np.floating):
        raise DataError(
            f"{source}: input {spec.name!r} has dtype {array.dtype}, expected preprocessed "
            f"{spec.dtype} values"
        )
    if array.ndim != len(spec.shape) or any(
        want is not None and want != got for want, got in zip(spec.shape[1:], array.shape[1:])
    ):
        want = "×".join("N" if d is None else str(d) for d in spec.shape)
        raise DataError(
            f"{source}: input {spec.name!r} has shape {'×'.join(map(str, array.shape))}, "
            f"the model expects {want}"
        )
    fixed_batch = spec.shape[0] if spec.shape else None
    if fixed_batch and array.shape[0] % fixed_batch:
        raise DataError(
            f"{source}: the model takes fixed batches of {fixed_batch} samples, "
            f"the data's {array.shape[0]} samples do not divide into them"
        )
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise DataError(f"{source}: input {spec.name!r} contains NaN or infinite values")
    return np.ascontiguousarray(array, dtype=spec.dtype)


def _checked_labels(source: str, labels: np.ndarray, count: int) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{source}: labels 'y' have dtype {labels.dtype}, expected int64")
    if labels.ndim not in (1, 3) or len(labels) != count:
        raise DataError(
            f"{source}: labels 'y' have shape {'×'.join(map(str, labels.shape))}; expected "
            f"{count} (classification) or {count}×H×W (segmentation)"
        )
    return labels.astype(np.int64, copy=False)
