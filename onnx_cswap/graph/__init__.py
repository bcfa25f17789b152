"""Graph analysis: canonical form, op rules, and the channel groups they imply."""

from onnx_cswap.graph.analysis import ChannelGroup, GraphAnalysis, analyse

__all__ = ["ChannelGroup", "GraphAnalysis", "analyse"]
