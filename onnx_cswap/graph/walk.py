"""The walk: visit channel spaces from every producer, letting each op's rule link them."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from onnx_cswap.graph.rules.base import OpRule, node_label
from onnx_cswap.graph.spaces import Space, SpaceInfo, UnionFind


@dataclass(frozen=True)
class MaskPoint:
    """Where a group's mask multiplies a tensor: input ``input_index`` of ``node``."""

    tensor: str
    axis: int
    node: str
    input_index: int


@dataclass
class Roles:
    """What each node did to a space, for listing a group's members."""

    producers: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    consumers: set[str] = field(default_factory=set)
    attention: bool = False  # a batch axis of a MatMul between two activations


class Walk:
    """Breadth-first over spaces; each newly seen space visits its producer and consumers."""

    def __init__(self, graph: gs.Graph, opset: int, rule_for: Callable[[gs.Node], OpRule]) -> None:
        self.graph = graph
        self.opset = opset
        self.rule_for = rule_for
        self.spaces: dict[Space, SpaceInfo] = {}
        self.roles: dict[Space, Roles] = {}
        self.elements = UnionFind()
        self.mask_points: list[MaskPoint] = []
        self.node_order = {id(node): i for i, node in enumerate(graph.nodes)}
        self._tensors = graph.tensors()
        self._graph_inputs = {t.name for t in graph.inputs}
        self._graph_outputs = {t.name for t in graph.outputs}
        self._queue: deque[tuple[gs.Tensor, int]] = deque()
        self._deferred: dict[tuple[int, str, int], tuple[gs.Node, gs.Tensor, int, str]] = {}
        self._visited: set[tuple[int, str, int]] = set()
        self._links = 0
        #: True while rules may fall back on a guess: nothing else could make progress.
        self.fallback_allowed = False

    # -- queries for rules ------------------------------------------------------------
    def shape(self, tensor: gs.Tensor) -> tuple[int | None, ...] | None:
        if isinstance(tensor, gs.Constant):
            return tuple(tensor.values.shape)
        if tensor.shape is None:
            return None
        return tuple(d if isinstance(d, int) and d >= 0 else None for d in tensor.shape)

    def rank(self, tensor: gs.Tensor) -> int | None:
        shape = self.shape(tensor)
        return None if shape is None else len(shape)

    def dim(self, tensor: gs.Tensor, axis: int) -> int | None:
        shape = self.shape(tensor)
        return None if shape is None or axis >= len(shape) else shape[axis]

    def constant(self, tensor: gs.Tensor) -> np.ndarray | None:
        return tensor.values if isinstance(tensor, gs.Constant) else None

    def known(self, tensor: gs.Tensor, axis: int) -> bool:
        return Space(tensor.name, axis) in self.spaces

    # -- declarations -----------------------------------------------------------------
    def link(
        self,
        node: gs.Node,
        a: tuple[gs.Tensor, int],
        b: tuple[gs.Tensor, int],
        pairs: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Join element ``pairs[0][i]`` of space ``a`` with ``pairs[1][i]`` of space ``b``.

        Without ``pairs`` the two spaces are joined index by index and must be equally long.
        """
        info_a, info_b = self._space(*a), self._space(*b)
        self.roles[info_a.space].nodes.add(node_label(node))
        self.roles[info_b.space].nodes.add(node_label(node))
        if info_a.size is None or info_b.size is None:
            reason = f"{node.op} {node_label(node)}: channel count unknown"
            self.freeze(a[0], a[1], reason)
            self.freeze(b[0], b[1], reason)
            return
        if pairs is None:
            if info_a.size != info_b.size:
                reason = (
                    f"{node.op} {node_label(node)}: joins {info_a.size} channels with "
                    f"{info_b.size} (inconsistent)"
                )
                self.freeze(a[0], a[1], reason)
                self.freeze(b[0], b[1], reason)
                return
            pairs = (np.arange(info_a.size), np.arange(info_b.size))
        self._links += 1
        for i, j in zip(pairs[0].tolist(), pairs[1].tolist()):
            self.elements.union(info_a.offset + i, info_b.offset + j)

    def link_virtual(
        self,
        node: gs.Node,
        a: tuple[gs.Tensor, int],
        size: int,
        pairs: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Join elements of ``a`` through a space of ``node`` that belongs to no tensor.

        Used to tie elements of one tensor together, e.g. the j-th output of every group
        of a grouped convolution, which must go together to keep the groups equal.
        """
        virtual = gs.Variable(f"{node_label(node)}#{a[0].name}", shape=[size])
        self.link(node, a, (virtual, 0), pairs)

    def producer(self, node: gs.Node, tensor: gs.Tensor, axis: int) -> None:
        self.roles[self._space(tensor, axis).space].producers.add(node_label(node))

    def attention_axis(self, tensor: gs.Tensor, axis: int) -> None:
        """Mark a space as the head axis of an attention product (units are heads)."""
        self.roles[self._space(tensor, axis).space].attention = True

    def terminal(self, node: gs.Node, tensor: gs.Tensor, axis: int, input_index: int) -> None:
        """``node`` sums over axis ``axis`` of its input ``input_index``: mask it there."""
        info = self._space(tensor, axis)
        self.roles[info.space].consumers.add(f"{node_label(node)}:{input_index}")
        point = MaskPoint(tensor.name, axis, node_label(node), input_index)
        if point not in self.mask_points:
            self.mask_points.append(point)

    def freeze(self, tensor: gs.Tensor, axis: int, reason: str) -> None:
        info = self._space(tensor, axis)
        if reason not in info.frozen:
            info.frozen.append(reason)

    def defer(self, node: gs.Node, tensor: gs.Tensor, axis: int, reason: str) -> None:
        """Visit again once more is known; freeze with ``reason`` if that never helps."""
        key = (id(node), tensor.name, axis)
        self._visited.discard(key)
        self._deferred[key] = (node, tensor, axis, reason)

    # -- driving ----------------------------------------------------------------------
    def seed(self, tensor: gs.Tensor, axis: int) -> None:
        self._space(tensor, axis)

    def run(self) -> None:
        """Visit everything reachable; retry deferred visits while that makes progress,
        then once with fallbacks allowed, then freeze whatever is still deferred."""
        while True:
            while self._queue:
                self._visit_space(*self._queue.popleft())
            if not self._deferred:
                return
            before = (self._links, len(self.spaces))
            pending, self._deferred = self._deferred, {}
            for node, tensor, axis, _ in pending.values():
                self._visit(node, tensor, axis)
            if (self._links, len(self.spaces)) != before or self._queue:
                self.fallback_allowed = False
            elif not self.fallback_allowed:
                self.fallback_allowed = True
            else:
                for _, tensor, axis, reason in self._deferred.values():
                    self.freeze(tensor, axis, reason)
                self._deferred.clear()
                return

    def _space(self, tensor: gs.Tensor, axis: int) -> SpaceInfo:
        space = Space(tensor.name, axis)
        info = self.spaces.get(space)
        if info is None:
            size = self.dim(tensor, axis)
            offset = self.elements.grow(size or 0)
            real = tensor.name in self._tensors
            info = SpaceInfo(
                space,
                size,
                offset,
                is_parameter=isinstance(tensor, gs.Constant),
                is_virtual=not real,
                order=len(self.spaces),
            )
            self.spaces[space] = info
            self.roles[space] = Roles()
            if real:
                self._queue.append((tensor, axis))
            if size is None:
                info.frozen.append(f"{tensor.name}: channel count unknown")
        return info

    def _visit_space(self, tensor: gs.Tensor, axis: int) -> None:
        if tensor.name in self._graph_outputs:
            self.freeze(tensor, axis, f"reaches the graph output {tensor.name!r}")
        if tensor.name in self._graph_inputs:
            self.freeze(tensor, axis, f"is the model input {tensor.name!r}")
        neighbours = list(tensor.inputs) + list(tensor.outputs)
        for node in sorted(neighbours, key=lambda n: self.node_order.get(id(n), -1)):
            self._visit(node, tensor, axis)

    def _visit(self, node: gs.Node, tensor: gs.Tensor, axis: int) -> None:
        key = (id(node), tensor.name, axis)
        if key in self._visited:
            return
        self._visited.add(key)
        self.rule_for(node).propagate(node, tensor, axis, self)
