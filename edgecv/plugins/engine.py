"""What the TensorRT engine build and the TensorRT backend call for edgecv's plugins.

Build (:mod:`edgecv.export.tensorrt_build`), for a graph holding plugin nodes:

1. :func:`graph_plugins` -- which edgecv plugins the ONNX uses (pure Python, in ``plan_build``);
2. :func:`kernel_records` -- every plugin node's kernels compiled for the build GPU's compute
   capability, checked against the claimed targets and the driver's CUDA version, *before*
   TensorRT parses anything; their records (kernel, target, PTX ISA, CUDA release, minimum driver,
   sizes) go to ``model.engine.json`` under ``tensorrt.edgecv_plugins``;
3. :func:`register_tensorrt` -- ``tensorrt.plugin`` registration, before parsing (the parser
   looks the node's op type / plugin_version / plugin_namespace up in the plugin registry).

Runtime (:mod:`edgecv.runtimes.backends.tensorrt`): :func:`register_for_engine` registers the
plugins an engine json records before ``deserialize_cuda_engine``. The compiled kernels are
inside the engine; registration needs ``tensorrt`` only (triton, torch, onnx are not imported).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from edgecv.errors import ArtifactError, ExportError
from edgecv.plugins import available, plugin_module, plugin_names
from edgecv.plugins.compile import check_target

#: Key of the plugin kernel records inside the ``tensorrt`` section of ``model.engine.json``.
ENGINE_JSON_KEY = "edgecv_plugins"


def node_attributes(node: Any) -> dict[str, Any]:
    """An ONNX node's attributes as Python values (strings decoded)."""
    import onnx

    attrs = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        attrs[attr.name] = value.decode() if isinstance(value, bytes) else value
    return attrs


def _load(model: Any) -> Any:
    if isinstance(model, (str, os.PathLike)):
        import onnx

        return onnx.load(str(model), load_external_data=False)
    return model


def graph_plugins(model: Any) -> list[str]:
    """Names of the edgecv plugins whose nodes ``model`` (ModelProto or path) holds, in table order."""
    from edgecv.plugins.passes import plugin_nodes

    found = {name for name, _ in plugin_nodes(_load(model))}
    return [n for n in plugin_names(None) if n in found]


def kernel_records(model: Any, capability: str | int, driver_cuda: str | None = None, *,
                   ptx_version: int | None = None) -> list[dict[str, Any]]:
    """Compile every plugin node's kernels for ``capability``; return one record per node and kernel.

    ``driver_cuda``: the CUDA version the driver supports (``"12.4"``, from ``cudaDriverGetVersion``);
    each kernel's PTX ISA must be loadable by it.

    Raises:
        ExportError: a target edgecv does not claim, a driver too old for a kernel's PTX ISA, a
        node whose attributes the plugin does not know.
    """
    from edgecv.plugins.compile import check_driver
    from edgecv.plugins.passes import plugin_nodes

    check_target(capability)
    records = []
    for name, node in plugin_nodes(_load(model)):
        module = plugin_module(name)
        attrs = node_attributes(node)
        missing = sorted(set(module.ATTRIBUTES) - set(attrs))
        if missing:
            raise ExportError(f"plugin node {node.name} ({module.PLUGIN_ID}): expected attributes "
                              f"{sorted(module.ATTRIBUTES)}, found {sorted(attrs)} (missing {missing})")
        for kernel in module.compile_node(attrs, capability, ptx_version=ptx_version):
            record = {"plugin": module.PLUGIN_ID, "node": node.name, **kernel.record()}
            if driver_cuda is not None:
                check_driver(record, driver_cuda)
            records.append(record)
    return records


def register_tensorrt(names: Sequence[str] | None = None) -> list[str]:
    """Register the ``tensorrt.plugin`` definitions of ``names`` (all present plugins when None)."""
    done = []
    for name in plugin_names(list(names) if names is not None else None):
        if names is None and not available(name):
            continue
        plugin_module(name, "trt").register()
        done.append(name)
    return done


def register_for_engine(facts: dict[str, Any], source: str | Path) -> list[str]:
    """Before deserializing: register the plugins an engine json's ``tensorrt`` section records.

    Raises:
        ArtifactError: a recorded plugin this edgecv does not ship.
    """
    records = facts.get(ENGINE_JSON_KEY) or []
    if not isinstance(records, list):
        raise ArtifactError(f"{source}: expected 'tensorrt.{ENGINE_JSON_KEY}' to be a list, found "
                            f"{type(records).__name__}")
    wanted = []
    for record in records:
        plugin_id = record.get("plugin") if isinstance(record, dict) else None
        name = str(plugin_id).split("::")[-1]
        if name not in plugin_names(None) or not available(name):
            raise ArtifactError(f"{source}: the engine uses plugin {plugin_id!r}; expected one this edgecv ships "
                                f"({plugin_names(None)}), found none: install the edgecv version that built it")
        if name not in wanted:
            wanted.append(name)
    return register_tensorrt(wanted) if wanted else []
