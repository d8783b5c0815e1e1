"""ONNX Runtime SessionOptions with the CPU twin of every edgecv plugin registered.

    import onnxruntime as ort
    from edgecv.plugins.twins import session_options
    session = ort.InferenceSession("model.trt.onnx", session_options(), providers=["CPUExecutionProvider"])

The twins are onnxruntime-extensions Python custom ops (domain ``ai.onnx.contrib``); declaring
them (each plugin's ``twin.register()``) and registering the extensions library are both needed.
"""

from __future__ import annotations

from typing import Any

from edgecv.errors import MissingDependencyError
from edgecv.plugins import available, plugin_module, plugin_names


def register_twins(names: list[str] | None = None) -> list[str]:
    """Declare the twins of ``names`` (all present plugins when None); returns the names registered."""
    done = []
    for name in plugin_names(names):
        if names is None and not available(name):
            continue  # a plugin package not in this install (the table lists both plugins)
        plugin_module(name, "twin").register()
        done.append(name)
    return done


def session_options(names: list[str] | None = None, options: Any = None) -> Any:
    """``options`` (a new ``onnxruntime.SessionOptions`` when None) with the twins registered.

    Raises:
        MissingDependencyError: onnxruntime-extensions is not installed (``edgecv[plugins]``).
    """
    try:
        import onnxruntime as ort
        from onnxruntime_extensions import get_library_path
    except ImportError as exc:
        raise MissingDependencyError(f"running edgecv's plugin twins needs onnxruntime-extensions ({exc}); "
                                     "install the plugins extra: pip install 'edgecv[plugins]'") from exc
    register_twins(names)
    so = options if options is not None else ort.SessionOptions()
    so.register_custom_ops_library(get_library_path())
    return so
