"""ONNX pass: the two-stage graphs' multi-level RoI Align subgraphs -> one ``edgecv::MultiLevelRoIAlign`` node each.

:class:`edgecv.models.tv_twostage.TwoStageGraph` pools through
:class:`edgecv.export.rcnn_ops.RoIPoolers`, so every node of one pooling is named
``/edgecv_roialign/<name>/...`` (``box``, ``mask``): level assignment, one ``RoiAlign`` per level
and the ``Gather`` back to RoI order (``static_shapes``: the ``Where`` chain). A scope is replaced when all its pooling nodes are float32 ``RoiAlign`` in
``avg`` mode with one square output size and one sampling ratio (RoI Pool scopes, ``pooler="pool"``,
stay portable). Its inputs -- the level maps (the ``RoiAlign`` ``X`` inputs) and the boxes
``[B, R, 4]`` (the one other non-constant input) -- feed, in its place: one ``Reshape`` per level to
``[B, C, H * W]``, one ``Concat``, the plugin node (node form: :mod:`edgecv.plugins.roi_align`) with
the level table as an initializer; its output keeps the scope's output name, so the consumers are
untouched. Nodes left without consumers (the scope's level assignment, RoiAligns, ``Gather`` or
``Where`` chain, constants only they used) are dropped; scope nodes whose outputs the exporter shared with
the rest of the graph (the boxes reshaped for the box decoder, shapes) stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecv.errors import ExportError
from edgecv.plugins.roi_align import DOMAIN, NAMESPACE, OP_TYPE, VERSION, level_table

SCOPE = "/edgecv_roialign/"
_ALIGNED = {"output_half_pixel": 0, "half_pixel": 1}


@dataclass
class Scope:
    """One pooling scope of the graph: its nodes, boundary tensors and RoI Align parameters."""

    name: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    features: list[str] = field(default_factory=list)  # finest first
    scales: list[float] = field(default_factory=list)
    boxes: str = ""
    output: str = ""
    output_size: int = 0
    sampling_ratio: int = 0
    aligned: int = 0
    reason: str = ""  # why it stays portable ("" = replaceable)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def find_scopes(model: onnx.ModelProto, shapes: dict[str, list[int]] | None = None) -> list[Scope]:
    """The ``/edgecv_roialign/<name>/`` scopes of ``model``, in graph order, with their boundary
    (``shapes``: :func:`_shapes` of ``model`` when the caller has them)."""
    graph = model.graph
    scopes: dict[str, Scope] = {}
    for node in graph.node:
        if node.name.startswith(SCOPE):
            name = node.name[len(SCOPE):].split("/", 1)[0]
            scopes.setdefault(name, Scope(name)).nodes.append(node)
    constant = {o for n in graph.node if n.op_type == "Constant" for o in n.output} | {i.name for i in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    shapes = shapes if shapes is not None or not scopes else _shapes(model)
    for scope in scopes.values():
        _describe(scope, constant, consumers, graph_outputs, shapes)
    return list(scopes.values())


def _describe(scope: Scope, constant: set[str], consumers: dict, graph_outputs: set[str],
              shapes: dict[str, list[int]]) -> None:
    """Fill ``scope``'s boundary and parameters, or its ``reason`` for staying portable."""
    inside = {id(n) for n in scope.nodes}
    produced = {o for n in scope.nodes for o in n.output}
    external = [i for n in scope.nodes for i in n.input if i and i not in produced and i not in constant]
    outputs = [o for o in produced if o in graph_outputs or any(id(c) not in inside for c in consumers.get(o, []))]
    pools = [n for n in scope.nodes if n.op_type in ("RoiAlign", "MaxRoiPool")]
    aligns = [n for n in pools if n.op_type == "RoiAlign"]
    if not aligns or len(aligns) != len(pools):
        scope.reason = "not RoI Align (RoI Pool stays portable)"
        return
    attrs = [_attrs(n) for n in aligns]
    modes = {a.get("mode", b"avg") for a in attrs}
    sizes = {(a.get("output_height", 1), a.get("output_width", 1)) for a in attrs}
    ratios = {a.get("sampling_ratio", 0) for a in attrs}
    transforms = {a.get("coordinate_transformation_mode", b"half_pixel") for a in attrs}
    transforms = {t.decode() if isinstance(t, bytes) else t for t in transforms}
    # The pooled result leaves the scope from the Gather back to RoI order (static form: the last Where,
    # or the only RoiAlign); other escaping tensors are helpers the exporter shared with the rest of the
    # graph (boxes reshaped, shapes).
    pooled = {o for n in scope.nodes if n.op_type in ("Gather", "Where", "RoiAlign") for o in n.output}
    outputs = [o for o in outputs if o in pooled]
    if modes != {b"avg"} or len(sizes) != 1 or len(ratios) != 1 or len(transforms) != 1 or len(set(outputs)) != 1:
        scope.reason = (f"expected avg RoiAligns with one square size, one sampling ratio and one output, found "
                        f"modes {modes}, sizes {sizes}, ratios {ratios}, outputs {outputs}")
        return
    (height, width), = sizes
    if height != width or next(iter(transforms)) not in _ALIGNED:
        scope.reason = f"expected square bins and a known coordinate mode, found {sizes}, {transforms}"
        return
    order = sorted(aligns, key=lambda n: -_attrs(n).get("spatial_scale", 1.0))
    if any(n.input[0] not in shapes for n in order):
        scope.reason = "expected float32 level maps (the node is float32), found another type or none"
        return
    scope.features = [n.input[0] for n in order]
    scope.scales = [float(_attrs(n).get("spatial_scale", 1.0)) for n in order]
    # Besides the maps: the boxes [B, R, 4] (rank 3; the exporter's shape inference may leave every
    # dim symbolic), and shape scalars the exporter shared with the graph.
    others = sorted({i for i in external if i not in scope.features and len(shapes.get(i, [])) == 3
                     and shapes[i][2] in (4, -1)})
    if len(others) != 1:
        scope.reason = f"expected one [B, R, 4] boxes input besides the level maps, found {others}"
        return
    scope.boxes, scope.output = others[0], outputs[0]
    scope.output_size, scope.sampling_ratio = int(height), int(next(iter(ratios)))
    scope.aligned = _ALIGNED[next(iter(transforms))]


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Shapes of every float32 tensor ONNX shape inference reaches (a dim it cannot tell: -1); other
    element types are left out, so a float16 scope finds no maps it can feed the float32 node."""
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {v.name: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
            for v in infos if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}


def plugin_nodes(scope: Scope, shapes: dict[str, list[int]]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers that replace ``scope`` (its output name kept)."""
    prefix = f"{SCOPE}{scope.name}/plugin/"
    levels = []
    for name in scope.features:
        shape = shapes.get(name, [])
        if len(shape) != 4 or min(shape[2:]) <= 0:
            raise ExportError(f"{OP_TYPE}: expected a level map [B, C, H, W] with static H, W, found {name} with "
                              f"shape {shape}")
        levels.append((shape[2], shape[3]))
    try:
        table = level_table(levels, scope.scales)
    except ValueError as exc:
        raise ExportError(f"{OP_TYPE} ({scope.name}): {exc}") from exc
    flat_shape = numpy_helper.from_array(np.array([0, 0, -1], np.int64), prefix + "flat_shape")
    level_init = numpy_helper.from_array(table, prefix + "levels")
    nodes = [helper.make_node("Reshape", [f, flat_shape.name], [f"{prefix}flat_{i}"], name=f"{prefix}Reshape_{i}")
             for i, f in enumerate(scope.features[:len(table)])]  # maps no RoI can reach are not fed
    nodes.append(helper.make_node("Concat", [n.output[0] for n in nodes], [prefix + "features"], axis=2,
                                  name=prefix + "Concat"))
    nodes.append(helper.make_node(OP_TYPE, [prefix + "features", scope.boxes, level_init.name], [scope.output],
                                  name=prefix + OP_TYPE, domain=DOMAIN, plugin_version=VERSION,
                                  plugin_namespace=NAMESPACE, output_size=scope.output_size,
                                  sampling_ratio=scope.sampling_ratio, aligned=scope.aligned))
    return nodes, [flat_shape, level_init]


def replace(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with each replaceable ``/edgecv_roialign/`` scope as one plugin node
    (topological order kept: the new nodes stand where the node producing the scope's output stood,
    after the level maps and boxes, which feed its ancestors, and before every reader of the output)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not any(n.name.startswith(SCOPE) for n in out.graph.node):
        return out
    shapes = _shapes(out)
    scopes = [s for s in find_scopes(out, shapes) if not s.reason]
    if not scopes:
        return out
    new_nodes: list[onnx.NodeProto] = []
    producer = {id(n): s for s in scopes for n in s.nodes if s.output in n.output}
    for node in out.graph.node:
        if id(node) in producer:
            nodes, inits = plugin_nodes(producer[id(node)], shapes)
            new_nodes += nodes
            out.graph.initializer.extend(inits)
        else:  # the rest of the scope stays until found dead (helpers shared with the graph live on)
            new_nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(_live(new_nodes, {o.name for o in out.graph.output}))
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` without those whose outputs nobody reads (repeated: chains of dead nodes)."""
    while True:
        read = outputs | {i for n in nodes for i in n.input}
        kept = [n for n in nodes if any(o in read for o in n.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept
