"""Runtime backends behind one protocol, chosen by name from one explicit mapping.

Adding a backend is one module implementing :class:`~edgecv.runtimes.backends.base.Backend`
plus one entry in :data:`LOADERS` (and, if it owns a file suffix, one in :data:`AUTO_BY_SUFFIX`).
Loaders import their heavy dependency only when called, so importing this package stays cheap.

``backend="auto"`` picks by suffix: ``.engine`` / ``.plan`` -> ``tensorrt``; ``.onnx`` ->
``onnxruntime``. ONNX goes to ONNX Runtime rather than OpenVINO (even when OpenVINO is
installed and faster) because (1) ONNX Runtime is a core dependency, so ``auto`` behaves the same
on every install; (2) OpenVINO's CPU plugin defaults to bf16 on AVX512-BF16/AMX CPUs, and
"auto" must not silently run a lower precision than the graph says (architecture contract 3:
precision lives in the graph). Ask for ``backend="openvino"`` to get its speed (see
``benchmarks/bench_backends.py`` for the measured ratio).

A served model is a URL, not a file: ``grpc://host:port/<model>`` or ``http://host:port/<model>``
opens the ``triton`` backend (``"auto"`` picks it for such URLs; its loader gets the URL string).

Backend-specific options travel as keyword arguments (``open_backend(..., precision="f32")``,
``Predictor(..., backend_options={...})``); each loader rejects options it does not know.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from edgecv.errors import BackendError
from edgecv.runtimes.backends.base import Backend, parse_device

__all__ = ["AUTO_BY_SUFFIX", "LOADERS", "Backend", "Loader", "open_backend", "parse_device", "resolve_backend"]

#: ``loader(path, device or None, threads, **options) -> Backend``
Loader = Callable[..., Backend]


def _checked(name: str, options: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise BackendError(f"backend {name!r}: expected options among {sorted(allowed)}, found {unknown}")
    return options


def _load_onnxruntime(path: Path, device: str | None, threads: int | None, **options: Any) -> Backend:
    from edgecv.runtimes.backends.onnxruntime import OnnxRuntimeBackend

    options = _checked("onnxruntime", options, {"graph_optimization", "io_binding", "spinning"})
    return OnnxRuntimeBackend.open(path, device=device or "cpu", threads=threads, **options)


def _load_openvino(path: Path, device: str | None, threads: int | None, **options: Any) -> Backend:
    from edgecv.runtimes.backends.openvino import OpenVinoBackend

    options = _checked("openvino", options, {"precision", "requests"})
    return OpenVinoBackend.open(path, device=device or "cpu", threads=threads, **options)


def _load_tensorrt(path: Path, device: str | None, threads: int | None, **options: Any) -> Backend:
    from edgecv.runtimes.backends.tensorrt import TensorRtBackend

    options = _checked("tensorrt", options, {"check_versions", "plugin_paths"})
    return TensorRtBackend.open(path, device=device or "cuda", **options)


def _load_triton(url: str, device: str | None, threads: int | None, **options: Any) -> Backend:
    from edgecv.runtimes.backends.triton import TritonBackend

    options = _checked("triton", options, {"timeout"})
    return TritonBackend.open(str(url), device=device, **options)  # threads: the server's instance groups decide


#: Backend name -> loader. The only place backends are registered.
LOADERS: dict[str, Loader] = {
    "onnxruntime": _load_onnxruntime,
    "openvino": _load_openvino,
    "tensorrt": _load_tensorrt,
    "triton": _load_triton,
}

#: Artifact suffix -> backend ``"auto"`` picks. Other suffixes fall back to :data:`DEFAULT_BACKEND`.
AUTO_BY_SUFFIX: dict[str, str] = {
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
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


def open_backend(path: str | os.PathLike[str], backend: str = "auto", *, device: str | None = None,
                 threads: int | None = None, **options: Any) -> Backend:
    """Open the artifact at ``path`` with the named backend (see :data:`LOADERS`).

    ``device=None`` is the backend's natural device: ``"cpu"``, or ``"cuda"`` for tensorrt.
    ``options`` are backend-specific: onnxruntime ``graph_optimization`` ("all" | "extended" |
    "basic" | "disable"), ``io_binding`` (bool); openvino ``precision`` (None | "f32" | "bf16" |
    "f16"), ``requests`` (infer-request pool size, None | int >= 1); tensorrt ``check_versions`` (bool), ``plugin_paths`` (plugin library files or folders);
    triton ``timeout`` (seconds per request, default 30). ``path`` may be a ``grpc://`` / ``http://``
    URL of a model served by Triton (backend ``triton``).

    Raises:
        BackendError: unknown backend or device; ArtifactError: missing / corrupt / non-edgecv
        artifact; MissingDependencyError: the backend or device needs an uninstalled package.
    """
    from edgecv.runtimes.backends.triton import is_server_url

    if is_server_url(path):  # a served model: the URL goes to the loader as is (Path would fold its "//")
        name = str(backend).strip().lower()
        if name not in ("auto", "triton"):
            raise BackendError(f"backend {backend!r} opens files; expected backend 'triton' or 'auto' for {path!r}")
        return LOADERS["triton"](path, device, threads, **options)
    file = Path(path)
    return LOADERS[resolve_backend(file, backend)](file, device, threads, **options)
