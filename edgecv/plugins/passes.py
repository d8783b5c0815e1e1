"""``apply_plugins``: the ONNX -> ONNX pass that makes the TensorRT-flavoured graph.

Each plugin's ``graph.replace(model)`` swaps the portable subgraph it knows (the ``edgecv_nms/``
NMS, the families' multi-level RoI Align) for its plugin node and leaves a graph without that
subgraph unchanged. The portable graph stays the default artifact; this pass writes a second one.
"""

from __future__ import annotations

from typing import Any

from edgecv.plugins import available, plugin_module, plugin_names

#: Suffix of the TensorRT-flavoured file written beside the portable one (``model.onnx`` -> ``model.trt.onnx``).
PLUGIN_SUFFIX = ".trt.onnx"


def apply_plugins(model: Any, names: list[str] | None = None) -> Any:
    """A copy of ``model`` with every requested plugin's subgraph replaced (all present plugins when None).

    Raises:
        OptionError: an unknown plugin name.
        ExportError: a subgraph a pass recognises but cannot replace.
    """
    import onnx

    result = onnx.ModelProto()
    result.CopyFrom(model)
    for name in plugin_names(names):
        if names is None and not available(name):
            continue
        result = plugin_module(name, "graph").replace(result)
    return result


def plugin_nodes(model: Any) -> list[tuple[str, Any]]:
    """``(plugin name, node)`` for every edgecv plugin node of ``model`` (top-level graph)."""
    found = []
    for name in plugin_names(None):
        if not available(name):
            continue
        module = plugin_module(name)
        found += [(name, n) for n in model.graph.node if n.op_type == module.OP_TYPE and n.domain == module.DOMAIN]
    return found
