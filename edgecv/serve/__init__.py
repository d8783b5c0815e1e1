"""Serving edgecv artifacts on engines people already run: Ray Serve (:mod:`edgecv.serve.app`,
camera streams on the cluster in :mod:`edgecv.serve.streams`) and NVIDIA Triton (model repository
writer in :mod:`edgecv.serve.triton_repo`).

Importing this package imports nothing heavy: Ray is imported when :func:`serve` or
:func:`run_streams` is called (a missing one raises MissingDependencyError naming ``edgecv[serve]``).

    from edgecv.serve import serve
    with serve("model.onnx", replicas=2, max_batch=8) as app:
        ...  # POST images to app.url + "/predict"; app.predict(image) from Python
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: public name -> module defining it (imported on first use)
_EXPORTS = {
    "serve": "edgecv.serve.app",
    "ServeHandle": "edgecv.serve.app",
    "BatchingWarning": "edgecv.serve.app",
    "plan_batching": "edgecv.serve.app",
    "PublicBindWarning": "edgecv.serve.cluster",
    "run_streams": "edgecv.serve.streams",
    "read_cameras": "edgecv.serve.streams",
    "Camera": "edgecv.serve.streams",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
