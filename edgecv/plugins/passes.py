"""``apply_plugins``: the ONNX -> ONNX pass that makes the TensorRT-flavoured graph.

Each plugin's ``graph.replace(model)`` swaps the portable subgraph it knows (the ``edgecv_nms/``
NMS, the families' multi-level RoI Align) for its plugin node and leaves a graph without that
subgraph unchanged. The portable graph stays the default artifact; this pass writes a second one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgecv.errors import ArtifactError, ExportError
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


def plugin_graph_path(onnx_path: str | os.PathLike[str]) -> Path:
    """``model.onnx`` -> ``model.trt.onnx`` (the TensorRT-flavoured graph beside the portable one)."""
    path = Path(onnx_path)
    return path.with_name(path.name.removesuffix(".onnx") + PLUGIN_SUFFIX)


def write_plugin_graph(onnx_path: str | os.PathLike[str], names: list[str] | None = None,
                       out: str | os.PathLike[str] | None = None) -> Path:
    """Write the TensorRT-flavoured copy of the ONNX artifact at ``onnx_path`` (metadata kept); return its path.

    Raises:
        ArtifactError: ``onnx_path`` is not a readable ONNX file.
        ExportError: the graph holds no subgraph any requested plugin replaces.
        OptionError: an unknown plugin name.
    """
    import onnx

    from edgecv.fileio import write_with

    source = Path(onnx_path)
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError, ... for a non-ONNX file
        raise ArtifactError(f"expected an ONNX model at {source}, found an unreadable file ({exc})") from exc
    flavoured = apply_plugins(model, names)
    if not plugin_nodes(flavoured):
        raise ExportError(f"{source}: expected a subgraph a plugin replaces ({', '.join(plugin_names(names))}), "
                          "found none: the portable graph is the artifact for this model")
    target = Path(out) if out is not None else plugin_graph_path(source)
    return write_with(target, lambda tmp: onnx.save(flavoured, str(tmp)))
