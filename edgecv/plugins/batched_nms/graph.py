"""ONNX pass: swap the portable NMS subgraph (``edgecv_nms/*``) for one ``edgecv::BatchedNMS`` node.

:func:`replace` finds the subgraph :func:`edgecv.export.nms.append_nms` appended (every node
named with :data:`~edgecv.export.nms.NMS_PREFIX`), reads its parameters from the JSON in the
``NonMaxSuppression`` node's ``doc_string``, finds the raw ``boxes [B,N,4]`` / ``scores [B,N,C]``
tensors it consumes (behind the optional pre-selection ``GatherND``), removes every prefixed node
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


def _raw_inputs(nodes: list) -> tuple[str, str]:
    """``(raw boxes, raw scores)``: the tensors behind the NMS node's box input and the score Transpose."""
    by_output = {o: n for n in nodes for o in n.output}
    nms = next(n for n in nodes if n.op_type == "NonMaxSuppression")
    transpose = by_output.get(nms.input[1])
    if transpose is None or transpose.op_type != "Transpose":
        raise ExportError(f"expected the NMS scores to come from a Transpose in '{PREFIX}', found {nms.input[1]!r}")

    def behind_preselect(tensor: str) -> str:
        node = by_output.get(tensor)
        return node.input[0] if node is not None and node.op_type == "GatherND" else tensor

    boxes, scores = behind_preselect(nms.input[0]), behind_preselect(transpose.input[0])
    for name in (boxes, scores):
        if name in by_output:
            raise ExportError(f"expected the NMS subgraph's inputs to come from outside '{PREFIX}', found {name!r}")
    return boxes, scores


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
    boxes, scores = _raw_inputs(nodes)
    produced = {o for n in nodes for o in n.output}
    outside = [n for n in graph.node if not n.name.startswith(PREFIX)]
    leaked = sorted({i for n in outside for i in n.input if i in produced and i not in OUTPUTS})
    if leaked:
        raise ExportError(f"expected nothing outside '{PREFIX}' to read its tensors, found readers of {leaked}")
    insert_at = min(i for i, n in enumerate(graph.node) if n.name.startswith(PREFIX))
    kept = list(outside)
    kept.insert(sum(1 for n in graph.node[:insert_at] if not n.name.startswith(PREFIX)),
                plugin_node(onnx, boxes, scores, params, class_agnostic))
    del graph.node[:]
    graph.node.extend(kept)
    stale = [v for v in graph.value_info if v.name in produced and v.name not in OUTPUTS]
    for value in stale:
        graph.value_info.remove(value)
    if not any(o.domain == DOMAIN for o in result.opset_import):
        result.opset_import.append(onnx.helper.make_opsetid(DOMAIN, 1))
    return result
