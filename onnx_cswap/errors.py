"""Typed errors. The library raises these; only the CLI turns them into exit codes."""

from __future__ import annotations


class CswapError(Exception):
    """Base class for every error onnx-cswap raises on purpose (CLI exit code 1)."""

    exit_code = 1


class BadInputError(CswapError):
    """The user's model, data or arguments cannot be used (CLI exit code 2)."""

    exit_code = 2


class ModelLoadError(BadInputError):
    """The model file is missing, is not ONNX, is corrupt or uses an unsupported opset."""


class DataError(BadInputError):
    """Calibration or evaluation data does not fit the model or the data contract."""


class VerificationError(CswapError):
    """A rewritten model does not compute what the masked model computes."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line error reports."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
