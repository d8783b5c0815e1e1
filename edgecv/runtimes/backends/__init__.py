"""Runtime backends behind one protocol, chosen by name from one explicit mapping.

Adding a backend (OpenVINO, native TensorRT) is one module implementing
:class:`~edgecv.runtimes.backends.base.Backend` plus one entry in :data:`LOADERS`
(and, if it owns a file suffix, one in :data:`AUTO_BY_SUFFIX`). Loaders import their
heavy dependency only when called, so importing this package stays cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from edgecv.errors import BackendError
from edgecv.runtimes.backends.base import Backend, parse_device

__all__ = ["AUTO_BY_SUFFIX", "LOADERS", "Backend", "Loader", "open_backend", "parse_device", "resolve_backend"]

#: ``loader(path, device, threads) -> Backend``
Loader = Callable[[Path, str, int | None], Backend]


def _load_onnxruntime(path: Path, device: str, threads: int | None) -> Backend:
    from edgecv.runtimes.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend.open(path, device=device, threads=threads)


#: Backend name -> loader. The only place backends are registered.
LOADERS: dict[str, Loader] = {
    "onnxruntime": _load_onnxruntime,
}

#: Artifact suffix -> backend ``"auto"`` picks. Other suffixes fall back to :data:`DEFAULT_BACKEND`.
AUTO_BY_SUFFIX: dict[str, str] = {
    ".onnx": "onnxruntime",
}
DEFAULT_BACKEND = "onnxruntime"


def resolve_backend(path: Path, backend: str = "auto") -> str:
    """The backend name to use for ``path``: ``backend`` itself, or the suffix's choice for ``"auto"``.

    Raises:
        BackendError: an unknown backend name.
    """
    name = str(backend).strip().lower()
    if name == "auto":
        return AUTO_BY_SUFFIX.get(path.suffix.lower(), DEFAULT_BACKEND)
    if name not in LOADERS:
        raise BackendError(f"expected backend 'auto' or one of {sorted(LOADERS)}, found {backend!r}")
    return name


def open_backend(path: str | os.PathLike[str], backend: str = "auto", *, device: str = "cpu",
                 threads: int | None = None) -> Backend:
    """Open the artifact at ``path`` with the named backend (see :data:`LOADERS`).

    Raises:
        BackendError: unknown backend or device; ArtifactError: missing / corrupt / non-edgecv
        artifact; MissingDependencyError: the backend or device needs an uninstalled package.
    """
    file = Path(path)
    return LOADERS[resolve_backend(file, backend)](file, device, threads)
