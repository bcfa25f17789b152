"""From a model to its channel groups: canonicalise, walk the rules, collect units and costs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnx_cswap.graph.canonical import canonicalize
from onnx_cswap.graph.rules import rule_for
from onnx_cswap.graph.rules.base import node_label
from onnx_cswap.graph.spaces import Space, SpaceInfo
from onnx_cswap.graph.walk import MaskPoint, Walk
from onnx_cswap.modelio import default_opset

_PRODUCERS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
_NEURON_PRODUCERS = {"Gemm", "MatMul"}


@dataclass
class ChannelGroup:
    """Units (channels, neurons) that share every tensor they live in.

    Unit ``i`` of the group is the ``i``-th channel of the group's first producer.
    """

    id: int
    name: str
    kind: str
    size: int
    prunable: bool
    reason: str | None
    params_per_unit: int
    macs_per_unit: int
    members: dict[str, list[str]]
    spaces: list[Space] = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "size": self.size,
            "prunable": self.prunable,
            "reason": self.reason,
            "params_per_unit": self.params_per_unit,
            "macs_per_unit": self.macs_per_unit,
            "members": self.members,
        }


@dataclass(frozen=True)
class CostTerm:
    """``factor`` × the number of kept elements of a tensor whose axes may be channel spaces."""

    factor: int
    shape: tuple[int, ...]
    spaces: tuple[Space | None, ...]


Keep = Mapping[int, np.ndarray]  # group id -> bool vector over its units


@dataclass
class GraphAnalysis:
    model: onnx.ModelProto  # canonical form; what masks and rewrites apply to
    groups: list[ChannelGroup]
    spaces: dict[Space, SpaceInfo]
    element_units: dict[Space, np.ndarray]  # per element: global unit id, -1 if in no group
    unit_group: np.ndarray  # global unit id -> group id
    unit_index: np.ndarray  # global unit id -> index inside its group
    mask_points: list[MaskPoint]
    param_terms: list[CostTerm]
    mac_terms: list[CostTerm]

    @property
    def params(self) -> int:
        return self.count(self.param_terms)

    @property
    def macs(self) -> int:
        return self.count(self.mac_terms)

    def element_keep(self, keep: Keep) -> dict[Space, np.ndarray]:
        """For each space, which of its elements survive when ``keep`` units are kept."""
        # One extra slot at the end, which element_units' -1 (in no group) points to.
        unit_keep = np.ones(len(self.unit_group) + 1, dtype=bool)
        for group_id, mask in keep.items():
            units = np.flatnonzero(self.unit_group == group_id)
            unit_keep[units] = np.asarray(mask, dtype=bool)[self.unit_index[units]]
        return {space: unit_keep[units] for space, units in self.element_units.items()}

    def count(self, terms: list[CostTerm], keep: Keep | None = None) -> int:
        """Parameters or MACs of the model with only the ``keep`` units left."""
        kept = self.element_keep(keep) if keep else {}
        total = 0
        for term in terms:
            product = term.factor
            for dim, space in zip(term.shape, term.spaces):
                product *= int(kept[space].sum()) if space is not None and space in kept else dim
            total += product
        return total

    def prunable_param_fraction(self) -> float:
        """Share of parameters that pruning could remove: every prunable group cut down
        to the one unit it always keeps."""
        if not self.params:
            return 0.0
        keep = {g.id: np.arange(g.size) == 0 for g in self.groups if g.prunable}
        return 1.0 - self.count(self.param_terms, keep) / self.params

    def group(self, group_id: int) -> ChannelGroup:
        return self.groups[group_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "macs": self.macs,
            "prunable_param_fraction": round(self.prunable_param_fraction(), 6),
            "groups": [group.to_json() for group in self.groups],
        }


def analyse(model: onnx.ModelProto) -> GraphAnalysis:
    """Find every channel group of ``model`` and whether it may be pruned."""
    canonical = canonicalize(model)
    graph = gs.import_onnx(canonical)
    walk = Walk(graph, default_opset(canonical), rule_for)
    for node in graph.nodes:
        if node.op in _PRODUCERS and len(node.inputs) > 1:
            weight = node.inputs[1]
            if isinstance(weight, gs.Constant) and weight.values.ndim >= 2:
                walk.seed(weight, 0)
    walk.run()
    return _collect(canonical, graph, walk)


def _collect(canonical: onnx.ModelProto, graph: gs.Graph, walk: Walk) -> GraphAnalysis:
    ordered = sorted(walk.spaces.values(), key=lambda info: info.order)
    # Units are the classes of the union-find, numbered in order of first appearance.
    root_unit: dict[int, int] = {}
    raw_units: dict[Space, np.ndarray] = {}
    for info in ordered:
        roots = [walk.elements.find(info.offset + i) for i in range(info.size or 0)]
        raw_units[info.space] = np.array(
            [root_unit.setdefault(root, len(root_unit)) for root in roots], dtype=np.int64
        )
    signature: dict[int, list[int]] = {}
    for position, info in enumerate(ordered):
        for unit in dict.fromkeys(raw_units[info.space].tolist()):
            signature.setdefault(unit, []).append(position)

    by_signature: dict[tuple[int, ...], list[int]] = {}
    for unit, positions in signature.items():
        if any(not ordered[p].is_parameter and not ordered[p].is_virtual for p in positions):
            by_signature.setdefault(tuple(positions), []).append(unit)

    unit_group = np.full(len(root_unit), -1, dtype=np.int64)
    unit_index = np.full(len(root_unit), -1, dtype=np.int64)
    drafts = []
    for positions, units in sorted(by_signature.items()):
        anchor = raw_units[ordered[positions[0]].space]
        first_index = {unit: int(np.flatnonzero(anchor == unit)[0]) for unit in units}
        units.sort(key=first_index.__getitem__)
        drafts.append(([ordered[p] for p in positions], units))
    ops = {node_label(node): node.op for node in graph.nodes}
    groups: list[ChannelGroup] = []
    for group_id, (infos, units) in enumerate(drafts):
        unit_group[units] = group_id
        unit_index[units] = np.arange(len(units))
        groups.append(_describe(group_id, infos, len(units), walk, ops))

    # -1 marks elements of units in no group (parameter-only classes); they are always kept.
    element_units = {
        space: np.where(unit_group[units] >= 0, units, -1) for space, units in raw_units.items()
    }
    analysis = GraphAnalysis(
        canonical,
        groups,
        walk.spaces,
        element_units,
        unit_group,
        unit_index,
        walk.mask_points,
        *_cost_terms(graph, walk),
    )
    _fill_unit_costs(analysis)
    return analysis


def _describe(
    group_id: int, infos: list[SpaceInfo], size: int, walk: Walk, ops: dict[str, str]
) -> ChannelGroup:
    roles = [walk.roles[info.space] for info in infos]
    producers = sorted({p for r in roles for p in r.producers})
    consumers = sorted({c for r in roles for c in r.consumers})
    consumer_nodes = {c.rsplit(":", 1)[0] for c in consumers}
    nodes = sorted({n for r in roles for n in r.nodes} - set(producers) - consumer_nodes)
    spaces = {info.space for info in infos}
    reasons = list(dict.fromkeys(reason for info in infos for reason in info.frozen))
    kind = "channel"
    if any(role.attention for role in roles):
        kind = "head"
    elif producers and all(ops.get(p) in _NEURON_PRODUCERS for p in producers):
        kind = "neuron"
    members = {
        "producers": producers,
        "parameters": [str(info.space) for info in infos if info.is_parameter],
        "nodes": nodes,
        "consumers": consumers,
        "mask_points": sorted(
            {p.tensor for p in walk.mask_points if Space(p.tensor, p.axis) in spaces}
        ),
    }
    name = producers[0] if producers else infos[0].space.tensor
    if len(producers) > 1:  # a residual stage or a coupled branch
        name += f" (+{len(producers) - 1})"
    return ChannelGroup(
        id=group_id,
        name=name,
        kind=kind,
        size=size,
        prunable=not reasons,
        reason="; ".join(reasons[:3]) + (f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else "")
        if reasons
        else None,
        params_per_unit=0,
        macs_per_unit=0,
        members=members,
        spaces=[info.space for info in infos],
    )


def _axis_spaces(walk: Walk, tensor: str, axes: range) -> tuple[Space | None, ...]:
    """The channel space of each axis of ``tensor`` (None where the axis is not one)."""
    return tuple(Space(tensor, a) if Space(tensor, a) in walk.spaces else None for a in axes)


def _cost_terms(graph: gs.Graph, walk: Walk) -> tuple[list[CostTerm], list[CostTerm]]:
    params = []
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Constant) and np.issubdtype(tensor.values.dtype, np.floating):
            shape = tuple(tensor.values.shape)
            params.append(CostTerm(1, shape, _axis_spaces(walk, tensor.name, range(len(shape)))))
    macs = [term for node in graph.nodes if (term := _mac_term(node, walk)) is not None]
    return params, macs


def _per_sample(dims: tuple[int | None, ...]) -> int:
    """Product of the non-batch dims (axis 0 is the batch); unknown dims count as 1."""
    return int(np.prod([d or 1 for d in dims[1:]], dtype=np.int64))


def _mac_term(node: gs.Node, walk: Walk) -> CostTerm | None:
    if node.op not in _PRODUCERS or len(node.inputs) < 2:
        return None
    weight = walk.constant(node.inputs[1])
    x_shape = walk.shape(node.inputs[0]) or ()
    y_shape = walk.shape(node.outputs[0]) or ()
    if weight is None:
        if node.op != "MatMul" or not x_shape or not y_shape:
            return None
        # Two activations (attention): every output element sums over K products; the
        # output's head axis shrinks with the heads pruned.
        output = node.outputs[0].name
        return CostTerm(
            x_shape[-1] or 1,
            tuple(d or 1 for d in y_shape[1:]),
            _axis_spaces(walk, output, range(1, len(y_shape))),
        )
    if node.op == "Conv":
        positions = _per_sample(y_shape[1:])  # spatial size of the output
    elif node.op == "ConvTranspose":
        positions = _per_sample(x_shape[1:])
    elif node.op == "MatMul" and len(x_shape) >= 3:
        positions = _per_sample(x_shape[:-1])
    else:
        positions = 1
    spaces = _axis_spaces(walk, node.inputs[1].name, range(weight.ndim))
    return CostTerm(positions, tuple(weight.shape), spaces)


def _fill_unit_costs(analysis: GraphAnalysis) -> None:
    """What removing one unit of each group saves, parameters and MACs."""
    params, macs = analysis.params, analysis.macs
    for group in analysis.groups:
        keep = np.ones(group.size, dtype=bool)
        keep[0] = False
        group.params_per_unit = params - analysis.count(analysis.param_terms, {group.id: keep})
        group.macs_per_unit = macs - analysis.count(analysis.mac_terms, {group.id: keep})
