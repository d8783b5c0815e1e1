"""Per-process registration, at most once: TensorRT's plugin registry and onnxruntime-extensions' op
table are both per process, and registering a name twice is an error in both.

    _registration = Once()

    def register() -> None:
        _registration(_declare)          # runs _declare the first time only, thread-safe

:func:`register_trt` is the TensorRT form every plugin's ``trt.register`` shares.
"""

from __future__ import annotations

import threading
from typing import Any, Callable


class Once:
    """Calls a registration body the first time only (thread-safe). A body that raises is not
    counted: the next call tries again (e.g. after installing the missing package)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = False

    def __call__(self, body: Callable[[], None]) -> None:
        with self._lock:
            if not self.done:
                body()
                self.done = True


def register_trt(once: Once, define: Callable[[Any, Any], None], trtp: Any = None) -> None:
    """Run ``define(tensorrt.plugin, tensorrt)`` through ``once``; ``trtp`` replaces ``tensorrt.plugin``
    (the tests' stand-in for the compiled extension). TensorRT is imported only here."""

    def body() -> None:
        plugin = trtp
        if plugin is None:
            import tensorrt.plugin as plugin
        import tensorrt as trt

        define(plugin, trt)

    once(body)
