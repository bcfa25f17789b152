"""onnxruntime sessions: provider choice, batching, and feeding extra inputs such as masks."""

from __future__ import annotations

import functools
import importlib.metadata
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from onnx_cswap.data import Dataset, input_specs
from onnx_cswap.errors import BadInputError, CswapError, first_line
from onnx_cswap.modelio import EXTERNAL_DATA_THRESHOLD, save_model_atomically

if TYPE_CHECKING:
    import onnxruntime

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RuntimeConfig:
    """How models are run: ``device`` is auto, cpu or cuda; 0 threads lets onnxruntime choose.

    ``spinning`` keeps onnxruntime's idle intra-op threads busy-waiting (its default,
    fastest for one session); sessions timed in turn must not spin, or each one's idle
    threads steal the cores from the next. After ``share_thread_pool`` every session
    runs on one pool, sized by the first session's ``threads``.
    """

    device: str = "auto"
    threads: int = 0
    # 64 rather than larger batches: 1.1-1.3x faster per evaluation on the CNN samples
    # on a 2-core CPU (tools/bench_runtime.py), with bit-identical outputs.
    batch_size: int = 64
    spinning: bool = True


@functools.cache  # once per process: the installed packages do not change
def _onnxruntime() -> onnxruntime:
    try:
        import onnxruntime
    except ImportError as exc:
        raise CswapError(
            "onnxruntime is not installed: install onnx-cswap[cpu] (or onnx-cswap[gpu] for CUDA)"
        ) from exc
    installed = set()
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            importlib.metadata.distribution(dist)
            installed.add(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    if len(installed) == 2:
        warnings.warn(
            "both onnxruntime and onnxruntime-gpu are installed and overwrite each other; "
            "uninstall both and install one",
            RuntimeWarning,
            stacklevel=3,
        )
    return onnxruntime


# Whose intra-op threads the sessions of this process run on: each session its own
# ("per-session", onnxruntime's default), one pool for all, made with the first
# session ("wanted"), or that pool ("shared").
_thread_pool = "per-session"


def share_thread_pool() -> None:
    """Run every onnxruntime session onnx-cswap makes in this process on one intra-op
    thread pool, sized by the first session's ``threads``.

    A pruning run holds many sessions (the masked model, and a region and a probe per
    group); with a pool each, they slowed one another (tools/bench_pool.py). Once the
    pool exists onnxruntime refuses any session of the process that asks for a pool of
    its own, as default options do: ``onnx-cswap prune`` and ``sweep`` call this on the
    CPU; a program that makes sessions of its own must make them with
    ``session_options()``.
    """
    global _thread_pool
    if _thread_pool == "per-session":
        _thread_pool = "wanted"


def _pool_is_shared(ort: onnxruntime, threads: int) -> bool:
    global _thread_pool
    if _thread_pool == "wanted":
        try:
            ort.set_global_thread_pool_sizes(threads, 1)
            _thread_pool = "shared"
        except AttributeError:  # an onnxruntime without shared pools for Python
            _thread_pool = "per-session"
        except Exception as exc:  # onnxruntime raises untyped errors
            # Someone made the process's pool already: sessions must use it.
            _thread_pool = "shared" if "already been created" in str(exc) else "per-session"
    return _thread_pool == "shared"


def session_options(threads: int = 0, spinning: bool = True) -> onnxruntime.SessionOptions:
    """Options for an onnxruntime session of this process: ``threads`` intra-op threads
    (0: onnxruntime's choice) of its own, or, after ``share_thread_pool``, the shared
    pool (whose size was fixed by the first session; ``threads`` is then ignored)."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if _pool_is_shared(ort, threads):
        options.use_per_session_threads = False
    elif threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The shared pool ignores the entry above; this stops it spinning after a run.
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def resolve_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device``: CUDA where asked for or available, else CPU."""
    if device not in DEVICES:
        raise BadInputError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    available = _onnxruntime().get_available_providers()
    if device == "cuda" and CUDA not in available:
        raise BadInputError(
            "--device cuda: onnxruntime has no CUDA provider here "
            "(install onnx-cswap[gpu] on a machine with an NVIDIA GPU)"
        )
    if device != "cpu" and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


class Runner:
    """One inference session for one model, run over data in batches.

    Extra feeds (mask vectors of a masked model) are passed per call, so one session
    evaluates any number of masks without being rebuilt.
    """

    def __init__(self, model: onnx.ModelProto, config: RuntimeConfig | None = None) -> None:
        self.config = config or RuntimeConfig()
        ort = _onnxruntime()
        options = session_options(self.config.threads, self.config.spinning)
        providers = resolve_providers(self.config.device)
        try:
            source = _loadable(model)
            self.session = ort.InferenceSession(source, options, providers=providers)
            if isinstance(source, str):  # a temporary file: gone with the runner
                weakref.finalize(self, shutil.rmtree, Path(source).parent, True)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BadInputError(f"onnxruntime cannot load the model: {first_line(exc)}") from exc
        self.provider: str = self.session.get_providers()[0]
        self.output_names = [output.name for output in self.session.get_outputs()]
        # Batch sizes the model fixes, per input: a data set's own inputs decide (mask
        # vectors are fed whole, so their lengths are no batch size).
        self.fixed_batch = {
            spec.name: spec.shape[0] for spec in input_specs(model) if spec.shape and spec.shape[0]
        }

    def batch_size(self, data: Dataset) -> tuple[int, bool]:
        """Samples per run for ``data``, and whether the model fixes that number."""
        fixed = {self.fixed_batch[name] for name in data.inputs if name in self.fixed_batch}
        if len(fixed) == 1:
            return fixed.pop(), True
        return self.config.batch_size, False

    def run(
        self, data: Dataset, extra_feeds: Mapping[str, np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """All outputs for every sample of ``data``, concatenated over batches."""
        extra = dict(extra_feeds or {})
        size, fixed = self.batch_size(data)
        per_output: list[list[np.ndarray]] = [[] for _ in self.output_names]
        for feed in data.batches(size):
            count = len(next(iter(feed.values())))
            if fixed and count < size:  # a fixed batch: pad with the last sample, then cut
                feed = {name: _padded(array, size) for name, array in feed.items()}
            try:
                outputs = self.session.run(self.output_names, {**feed, **extra})
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise BadInputError(
                    f"onnxruntime failed to run the model: {first_line(exc)}"
                ) from exc
            for store, value in zip(per_output, outputs):
                store.append(value[:count])
        return [parts[0] if len(parts) == 1 else np.concatenate(parts) for parts in per_output]

    def logits(
        self, data: Dataset, extra_feeds: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """The first output, which for the models we prune is the class scores."""
        return self.run(data, extra_feeds)[0]


def _padded(array: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), axis=0)])


def _loadable(model: onnx.ModelProto) -> bytes | str:
    """The model's bytes, or for models past protobuf's 2 GB limit the path of a copy
    written with external data into a temporary folder."""
    if model.ByteSize() < EXTERNAL_DATA_THRESHOLD:
        return model.SerializeToString()
    folder = tempfile.mkdtemp(prefix="onnx-cswap-")
    path = Path(folder) / "model.onnx"
    save_model_atomically(model, path, external_threshold=0)
    return str(path)
