"""What every op rule sees and does.

A rule answers one question: *axis ``axis`` of tensor ``tensor`` (an input or output of
``node``) carries channels; what else does that force?* It answers by calling the
walk: ``link`` two spaces element by element, mark a ``terminal`` consumer (an op that
sums over the channels, where the mask goes), or ``freeze`` with a reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import onnx_graphsurgeon as gs

if TYPE_CHECKING:
    from onnx_cswap.graph.walk import Walk


class OpRule(Protocol):
    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None: ...


def input_positions(node: gs.Node, tensor: gs.Tensor) -> list[int]:
    return [i for i, t in enumerate(node.inputs) if t is tensor]


def is_output(node: gs.Node, tensor: gs.Tensor) -> bool:
    return any(t is tensor for t in node.outputs)


def optional_input(node: gs.Node, index: int) -> gs.Tensor | None:
    """Input ``index`` if present and not the empty optional-input placeholder."""
    if index < len(node.inputs) and node.inputs[index].name:
        return node.inputs[index]
    return None


def attr_or_input(node: gs.Node, attr: str, index: int, walk: Walk) -> np.ndarray | None:
    """An operand that moved from an attribute to an input across opsets (axes, pads, split)."""
    if attr in node.attrs:
        return np.asarray(node.attrs[attr])
    tensor = optional_input(node, index)
    return None if tensor is None else walk.constant(tensor)


def normalize_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def node_label(node: gs.Node) -> str:
    return node.name or f"{node.op}({node.outputs[0].name if node.outputs else ''})"
