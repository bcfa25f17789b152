"""Reading models safely and writing outputs atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from onnx_cswap.errors import BadInputError, ModelLoadError, first_line

#: Default-domain opsets whose operator semantics the op rules were written against.
SUPPORTED_OPSETS = range(11, 24)

_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.BFLOAT16,
}

#: Models above this size are written with their tensors in a NAME.onnx.data file
#: (protobuf cannot serialise a message of 2 GiB or more).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def default_opset(model: onnx.ModelProto) -> int:
    """The model's opset for the default ONNX domain (0 when it declares none)."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 0


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Load and validate an ONNX model, external data included.

    Raises ``ModelLoadError`` (a bad input) with one readable sentence for a missing
    file, a file that is not ONNX, a corrupt protobuf, an invalid graph or an
    opset outside ``SUPPORTED_OPSETS``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    try:
        model = onnx.load(str(path))
    except (DecodeError, RuntimeError, ValueError, OSError) as exc:
        raise ModelLoadError(f"{path}: not an ONNX model or corrupt ({first_line(exc)})") from exc
    # Protobuf decodes many non-ONNX byte strings into an empty message without error.
    if model.ir_version == 0 or not model.graph.node:
        raise ModelLoadError(f"{path}: not an ONNX model (no graph found in the file)")
    if not _text_fields_valid(model):
        raise ModelLoadError(f"{path}: corrupt ONNX model (a name is not valid UTF-8)")
    opset = default_opset(model)
    if opset not in SUPPORTED_OPSETS:
        raise ModelLoadError(
            f"{path}: unsupported opset {opset} (supported: {SUPPORTED_OPSETS.start}"
            f" to {SUPPORTED_OPSETS.stop - 1})"
        )
    try:
        # The path form of the checker handles models with external data and > 2 GB.
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ModelLoadError(f"{path}: invalid ONNX model: {first_line(exc)}") from exc
    _check_finite_weights(model, path)
    return model


def _text_fields_valid(model: onnx.ModelProto) -> bool:
    """Whether every name decodes: protobuf hands back bytes for broken UTF-8, which
    would otherwise fail deep inside the analysis."""
    graph = model.graph
    fields = [model.producer_name, model.producer_version, model.domain, model.doc_string]
    fields += [graph.name, graph.doc_string]
    fields += [text for p in model.metadata_props for text in (p.key, p.value)]
    fields += [o.domain for o in model.opset_import]
    for node in graph.node:
        fields += [node.name, node.op_type, node.domain, *node.input, *node.output]
        fields += [a.name for a in node.attribute]
    for value in (*graph.input, *graph.output, *graph.value_info):
        fields.append(value.name)
        fields += [d.dim_param for d in value.type.tensor_type.shape.dim]
    for init in graph.initializer:
        fields.append(init.name)
        fields += [text for e in init.external_data for text in (e.key, e.value)]
    return all(isinstance(text, str) for text in fields)


def _check_finite_weights(model: onnx.ModelProto, path: Path) -> None:
    for init in model.graph.initializer:
        if init.data_type in _FLOAT_TYPES:
            values = numpy_helper.to_array(init)
            if not np.all(np.isfinite(values)):
                raise ModelLoadError(f"{path}: weight {init.name!r} contains NaN or infinity")


def check_output_path(output: str | os.PathLike[str], *inputs: str | os.PathLike[str]) -> Path:
    """Refuse an output path that would overwrite an input or lives in a missing folder."""
    output = Path(output)
    if not output.parent.is_dir():
        raise BadInputError(f"{output}: the output folder {output.parent} does not exist")
    for source in inputs:
        if Path(source).exists() and output.exists() and output.samefile(source):
            raise BadInputError(f"{output}: the output path is the input file; choose another")
    return output


def write_bytes_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    A reader never sees a half-written file, and an interrupted write leaves nothing.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_model_atomically(
    model: onnx.ModelProto,
    path: str | os.PathLike[str],
    external_threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> None:
    """Write ``model`` atomically; past ``external_threshold`` bytes its tensors go to
    ``NAME.onnx.data`` beside it (the data file first, then the model file)."""
    path = Path(path)
    if model.ByteSize() < external_threshold:
        write_bytes_atomically(path, model.SerializeToString())
        return
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)  # saving with external data rewrites the proto in place
        data_name = f"{path.name}.data"
        onnx.save_model(
            copy,
            str(staging / path.name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=0,
        )
        os.replace(staging / data_name, path.parent / data_name)
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
