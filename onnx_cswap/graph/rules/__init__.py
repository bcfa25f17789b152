"""The registry: one small rule per op family, looked up by op type.

An op with no rule freezes every channel space it touches, with the op named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx_graphsurgeon as gs

from onnx_cswap.graph.rules.base import OpRule, node_label
from onnx_cswap.graph.rules.channelwise import (
    AxisMixingRule,
    BroadcastRule,
    PassThroughRule,
    PerChannelNormRule,
    ReduceRule,
    SpatialOpRule,
    channel_axes,
    layer_norm_axes,
    softmax_axes,
)
from onnx_cswap.graph.rules.producers import ConvRule, ConvTransposeRule, GemmRule, MatMulRule
from onnx_cswap.graph.rules.shape_ops import (
    ConcatRule,
    ExpandRule,
    GatherRule,
    ReshapeRule,
    ShapeRule,
    SliceRule,
    SplitRule,
    SqueezeRule,
    TransposeRule,
)

if TYPE_CHECKING:
    from onnx_cswap.graph.walk import Walk

_UNARY = [
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Erf",
    "Gelu",
    "Elu",
    "Selu",
    "Celu",
    "Softplus",
    "Softsign",
    "Mish",
    "ThresholdedRelu",
    "Shrink",
    "Abs",
    "Neg",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Identity",
    "Dropout",
    "Cast",
    "Not",
    "IsNaN",
    "IsInf",
]
_BROADCAST = [
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "PRelu",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "And",
    "Or",
]
_SPATIAL = [
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "Resize",
    "Upsample",
    "Pad",
]
_REDUCE = [
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
]

REGISTRY: dict[str, OpRule] = {
    **dict.fromkeys(_UNARY, PassThroughRule()),
    **dict.fromkeys(_BROADCAST, BroadcastRule()),
    **dict.fromkeys(_SPATIAL, SpatialOpRule()),
    **dict.fromkeys(_REDUCE, ReduceRule()),
    "Conv": ConvRule(),
    "ConvTranspose": ConvTransposeRule(),
    "Gemm": GemmRule(),
    "MatMul": MatMulRule(),
    "BatchNormalization": PerChannelNormRule(mixes_spatial=False),
    "InstanceNormalization": PerChannelNormRule(mixes_spatial=True),
    "LayerNormalization": AxisMixingRule(layer_norm_axes),
    "Softmax": AxisMixingRule(softmax_axes),
    "LogSoftmax": AxisMixingRule(softmax_axes),
    "Hardmax": AxisMixingRule(softmax_axes),
    "GroupNormalization": AxisMixingRule(channel_axes),
    "LRN": AxisMixingRule(channel_axes),
    "Transpose": TransposeRule(),
    "Squeeze": SqueezeRule(inserts=False),
    "Unsqueeze": SqueezeRule(inserts=True),
    "Reshape": ReshapeRule(),
    "Flatten": ReshapeRule(),
    "Concat": ConcatRule(),
    "Split": SplitRule(),
    "Slice": SliceRule(),
    "Gather": GatherRule(),
    "Expand": ExpandRule(),
    "Shape": ShapeRule(),
}


class NoRule:
    """Freezes: we cannot prove how this op treats channels."""

    def propagate(self, node: gs.Node, tensor: gs.Tensor, axis: int, walk: Walk) -> None:
        domain = f"{node.domain}." if node.domain not in (None, "", "ai.onnx") else ""
        walk.freeze(tensor, axis, f"op {domain}{node.op} ({node_label(node)}) has no rule")


_NO_RULE = NoRule()


def rule_for(node: gs.Node) -> OpRule:
    if node.domain not in (None, "", "ai.onnx"):
        return _NO_RULE
    return REGISTRY.get(node.op, _NO_RULE)
