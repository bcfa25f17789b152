"""onnx-cswap: structured pruning of ONNX models with the C-SWAP criterion.

The pipeline, one module each: load (``modelio``, ``data``) → find groups (``graph``) →
evaluate (``runtime``, ``metrics``, ``evaluate``).
"""

from onnx_cswap.data import Dataset, from_arrays, from_reader, input_specs, load_npz
from onnx_cswap.errors import BadInputError, CswapError, DataError, ModelLoadError
from onnx_cswap.evaluate import Evaluation, evaluate_model
from onnx_cswap.graph import ChannelGroup, GraphAnalysis, analyse
from onnx_cswap.modelio import load_model
from onnx_cswap.runtime import Runner, RuntimeConfig, session_options, share_thread_pool

__version__ = "0.1.0"

__all__ = [
    "BadInputError",
    "ChannelGroup",
    "CswapError",
    "DataError",
    "Dataset",
    "Evaluation",
    "GraphAnalysis",
    "ModelLoadError",
    "Runner",
    "RuntimeConfig",
    "__version__",
    "analyse",
    "evaluate_model",
    "from_arrays",
    "from_reader",
    "input_specs",
    "load_model",
    "load_npz",
    "session_options",
    "share_thread_pool",
]
