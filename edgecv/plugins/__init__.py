"""edgecv's own TensorRT plugins, each with a Triton kernel, a CPU twin and an ONNX graph pass.

:data:`PLUGINS` maps a plugin name to its package. Every package is light at import (no torch,
triton, onnx or tensorrt) and exposes ``OP_TYPE``, ``NAMESPACE``, ``VERSION``, ``DOMAIN``,
``PLUGIN_ID`` (``"edgecv::<OP_TYPE>"``), ``ATTRIBUTES`` (node attribute -> Python type, in
``register`` order), ``DEFAULT_ATTRS`` (representative values) and
``compile_node(attrs, capability, *, ptx_version=None) -> list[CompiledKernel]``; its submodules
are ``kernel`` (Triton kernels + host function; ``TRITON_INTERPRET=1`` runs them on CPU tensors),
``twin`` (``register()``: the ONNX Runtime custom op), ``trt`` (``register()``: tensorrt.plugin
``register`` + ``aot_impl``) and ``graph`` (``replace(model) -> model``).

Shared pieces: :mod:`edgecv.plugins.compile` (AOT compile without a GPU, PTX ISA -> minimum
driver), :mod:`edgecv.plugins.twins` (ORT SessionOptions with every twin),
:mod:`edgecv.plugins.passes` (``apply_plugins``), :mod:`edgecv.plugins.engine` (what the engine
build and the TensorRT backend call), :mod:`edgecv.plugins.once` (the once-per-process registration
every ``twin.register`` / ``trt.register`` goes through).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgecv.errors import OptionError

#: Plugin name -> package (imported lazily).
PLUGINS: dict[str, str] = {
    "BatchedNMS": "edgecv.plugins.batched_nms",
    "MultiLevelRoIAlign": "edgecv.plugins.roi_align",
}


def plugin_names(names: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """``names`` checked against :data:`PLUGINS` (all of them when None), in table order.

    Raises:
        OptionError: an unknown name (expected vs found).
    """
    if names is None:
        return list(PLUGINS)
    unknown = [n for n in names if n not in PLUGINS]
    if unknown:
        raise OptionError(f"expected plugin names from {list(PLUGINS)}, found {unknown}")
    return [n for n in PLUGINS if n in names]


def plugin_module(name: str, submodule: str | None = None) -> ModuleType:
    """The package of plugin ``name`` (or one of its submodules: kernel, twin, trt, graph)."""
    path = PLUGINS[plugin_names([name])[0]]
    return importlib.import_module(f"{path}.{submodule}" if submodule else path)


def available(name: str) -> bool:
    """Whether plugin ``name``'s package is present in this install (both arrive with the merge)."""
    try:
        plugin_module(name)
    except ModuleNotFoundError:
        return False
    return True


def plugin_for_op(op_type: str, domain: str = "ai.onnx.contrib") -> str | None:
    """The plugin name whose node has ``op_type`` in ``domain``, or None."""
    for name in PLUGINS:
        if available(name):
            module = plugin_module(name)
            if module.OP_TYPE == op_type and module.DOMAIN == domain:
                return name
    return None


def parse_plugin_option(text: str | None) -> list[str] | None:
    """The CLI's ``--plugins`` value: None (not asked), ``[]`` for ``all`` / empty, else checked names.

    Raises:
        OptionError: an unknown name.
    """
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    return [] if names in ([], ["all"]) else plugin_names(names)
