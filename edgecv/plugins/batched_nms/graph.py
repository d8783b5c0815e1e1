"""ONNX pass: swap the portable NMS subgraph (``edgecv_nms/*``) for one ``edgecv::BatchedNMS`` node.

:func:`replace` finds the subgraph :func:`edgecv.export.nms.append_nms` appended (every node
named with :data:`~edgecv.export.nms.NMS_PREFIX`), reads its parameters from the JSON in the
``NonMaxSuppression`` node's ``doc_string``, finds the raw ``boxes [B,N,4]`` / ``scores [B,N,C]``
tensors it consumes (behind the optional pre-selection ``GatherND`` and the ``Cast`` nodes the fp16
pass adds; a non-float32 source gets a ``Cast`` to float32) -- or their channel-first sources
``[B,4,N]`` / ``[B,C,N]`` that ``append_nms`` reads instead of a model's final Transposes (behind a
pre-selection ``Gather``), which get a ``Transpose`` back to ``[B,N,X]`` here, the layout the
plugin takes -- removes every prefixed node
and puts one plugin node in their place, producing the same four graph outputs
(``num_dets``, ``boxes``, ``scores``, ``classes``) with the same shapes and dtypes. The node form
is documented in :mod:`edgecv.plugins.batched_nms`; the ``ai.onnx.contrib`` opset is imported.

A graph without the subgraph is returned unchanged (a copy), so
:func:`edgecv.plugins.passes.apply_plugins` can run every pass on every family.
"""

from __future__ import annotations

import json
from typing import Any

from edgecv.errors import ExportError
from edgecv.plugins.batched_nms import DOMAIN, NAMESPACE, OP_TYPE, VERSION, threshold_text

PREFIX = "edgecv_nms/"
OUTPUTS = ("num_dets", "boxes", "scores", "classes")


def _params(nodes: list) -> dict[str, Any]:
    nms = [n for n in nodes if n.op_type == "NonMaxSuppression"]
    if len(nms) != 1:
        raise ExportError(f"expected one NonMaxSuppression node in the '{PREFIX}' subgraph, found {len(nms)}")
    try:
        params = json.loads(nms[0].doc_string)
        return {k: params[k] for k in ("max_det", "iou_threshold", "conf_threshold", "max_candidates")}
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"expected the NMS parameters as JSON in {nms[0].name}'s doc_string, found "
                          f"{nms[0].doc_string!r}") from exc


def _source(tensor: str, by_output: dict) -> tuple[str, Any]:
    """Follow ``Cast`` nodes of the subgraph back (the fp16 pass adds them): ``(tensor, its producer or None)``."""
    node = by_output.get(tensor)
    while node is not None and node.op_type == "Cast":
        tensor = node.input[0]
        node = by_output.get(tensor)
    return tensor, node


def _behind_preselection(tensor: str, node: Any, channel_first: bool, by_output: dict) -> tuple[str, Any]:
    """Step back over the optional pre-selection (and ``Cast`` nodes): ``GatherND`` of ``[B,N,X]``, or for a
    channel-first ``[B,X,N]`` source a ``Gather`` of it (axis 2) or of its ``Reshape`` to ``[-1]`` (axis 0)."""
    if not channel_first and node is not None and node.op_type == "GatherND":
        return _source(node.input[0], by_output)
    if channel_first and node is not None and node.op_type == "Gather":
        tensor, node = _source(node.input[0], by_output)
        if node is not None and node.op_type == "Reshape":  # the flattened source (B != 1)
            tensor, node = _source(node.input[0], by_output)
    return tensor, node


def _raw_inputs(nodes: list) -> tuple[tuple[str, bool], tuple[str, bool]]:
    """``((raw boxes, channel_first), (raw scores, channel_first))``: the tensors entering the subgraph
    behind the NMS node, through the optional pre-selection and any ``Cast``. ``append_nms`` reads a
    raw output's channel-first source (``[B,4,N]`` / ``[B,C,N]``) when the graph made it with a
    Transpose: NMS then takes the scores without a Transpose of its own, and the boxes through one."""
    by_output = {o: n for n in nodes for o in n.output}
    nms = next(n for n in nodes if n.op_type == "NonMaxSuppression")
    boxes, node = _source(nms.input[0], by_output)
    boxes_cf = node is not None and node.op_type == "Transpose"  # [B,4,K] -> [B,K,4] in the subgraph
    if boxes_cf:
        boxes, node = _source(node.input[0], by_output)
    boxes, node = _behind_preselection(boxes, node, boxes_cf, by_output)
    if node is not None:
        raise ExportError(f"expected the NMS boxes to enter '{PREFIX}' from outside, found {node.op_type} {node.name}")
    scores, node = _source(nms.input[1], by_output)
    scores_cf = node is None or node.op_type != "Transpose"  # NMS takes [B,C,N]: no Transpose = channel-first
    if not scores_cf:
        scores, node = _source(node.input[0], by_output)
    scores, node = _behind_preselection(scores, node, scores_cf, by_output)
    if node is not None:
        raise ExportError(f"expected the NMS scores to enter '{PREFIX}' from outside or from a Transpose, found "
                          f"{node.op_type} {node.name}")
    return (boxes, boxes_cf), (scores, scores_cf)


def _plugin_layout(onnx_mod: Any, tensor: str, channel_first: bool, role: str, nodes: list) -> str:
    """``tensor`` itself, or for a channel-first source a Transpose to ``[B,N,X]`` (what the plugin takes)."""
    if not channel_first:
        return tensor
    name = f"edgecv_plugins/{role}_bnx"
    nodes.append(onnx_mod.helper.make_node("Transpose", [tensor], [name], name=name, perm=[0, 2, 1]))
    return name


def _float32(onnx_mod: Any, model: Any, tensor: str, nodes: list) -> str:
    """``tensor`` itself when float32 (or of unknown type), else a Cast to float32 appended to ``nodes``."""
    infos = {v.name: v for v in (*model.graph.input, *model.graph.output, *model.graph.value_info)}
    if tensor not in infos:
        infos = {v.name: v for v in onnx_mod.shape_inference.infer_shapes(model).graph.value_info}
    elem = infos[tensor].type.tensor_type.elem_type if tensor in infos else onnx_mod.TensorProto.FLOAT
    if elem == onnx_mod.TensorProto.FLOAT:
        return tensor
    cast = f"edgecv_plugins/{tensor}_fp32"
    nodes.append(onnx_mod.helper.make_node("Cast", [tensor], [cast], name=cast, to=onnx_mod.TensorProto.FLOAT))
    return cast


def plugin_node(onnx_mod: Any, boxes: str, scores: str, params: dict[str, Any], class_agnostic: bool = False,
                outputs: tuple[str, ...] = OUTPUTS, name: str = "edgecv_plugins/BatchedNMS") -> Any:
    """The ``BatchedNMS`` node (form: :mod:`edgecv.plugins.batched_nms`)."""
    max_candidates = params.get("max_candidates")
    return onnx_mod.helper.make_node(
        OP_TYPE, [boxes, scores], list(outputs), name=name, domain=DOMAIN,
        plugin_namespace=NAMESPACE, plugin_version=VERSION, max_det=int(params["max_det"]),
        iou_threshold=threshold_text(params["iou_threshold"]), conf_threshold=threshold_text(params["conf_threshold"]),
        max_candidates=0 if max_candidates is None else int(max_candidates), class_agnostic=int(bool(class_agnostic)),
    )


def _splice(graph: Any, outside: list, new_nodes: list) -> None:
    """Replace the graph's nodes by ``outside`` with ``new_nodes`` where the subgraph began, but never
    before the producers of their inputs (the fp16 pass appends its Casts at the end of the list)."""
    first = min(i for i, n in enumerate(graph.node) if n.name.startswith(PREFIX))
    position = sum(1 for n in graph.node[:first] if not n.name.startswith(PREFIX))
    sources = {i for n in new_nodes for i in n.input}
    position = max([position, *(k + 1 for k, n in enumerate(outside) if sources & set(n.output))])
    kept = outside[:position] + new_nodes + outside[position:]
    del graph.node[:]
    graph.node.extend(kept)


def replace(model: Any, class_agnostic: bool = False) -> Any:
    """A copy of ``model`` with the ``edgecv_nms/`` subgraph replaced by a ``BatchedNMS`` node.

    Raises:
        ExportError: a prefixed subgraph that is not the one ``append_nms`` builds.
    """
    import onnx

    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    nodes = [n for n in graph.node if n.name.startswith(PREFIX)]
    if not nodes:
        return result
    params = _params(nodes)
    (boxes, boxes_cf), (scores, scores_cf) = _raw_inputs(nodes)
    by_name = {n.name: n for n in nodes}
    # The subgraph's last nodes are Identity "edgecv_nms/out/<name>"; the fp16 pass renames what they
    # produce and appends Casts behind them, so the plugin produces whatever those Identities produced.
    outputs = tuple(by_name[f"{PREFIX}out/{name}"].output[0] if f"{PREFIX}out/{name}" in by_name else name
                    for name in OUTPUTS)
    produced = {o for n in nodes for o in n.output}
    outside = [n for n in graph.node if not n.name.startswith(PREFIX)]
    leaked = sorted({i for n in outside for i in n.input if i in produced and i not in outputs})
    if leaked:
        raise ExportError(f"expected nothing outside '{PREFIX}' to read its tensors, found readers of {leaked}")
    new_nodes: list = []
    boxes, scores = _float32(onnx, model, boxes, new_nodes), _float32(onnx, model, scores, new_nodes)
    boxes = _plugin_layout(onnx, boxes, boxes_cf, "boxes", new_nodes)
    scores = _plugin_layout(onnx, scores, scores_cf, "scores", new_nodes)
    new_nodes.append(plugin_node(onnx, boxes, scores, params, class_agnostic, outputs))
    _splice(graph, outside, new_nodes)
    stale = [v for v in graph.value_info if v.name in produced and v.name not in outputs]
    for value in stale:
        graph.value_info.remove(value)
    if not any(o.domain == DOMAIN for o in result.opset_import):
        result.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))
    return result
