"""TensorRT backend: runs an edgecv engine (``model.engine`` + ``model.engine.json``) on an NVIDIA GPU.

* The engine is a raw plan (as ``trtexec`` writes it); its edgecv metadata and build facts
  (TensorRT version, GPU compute capability) come from ``<engine>.json`` beside it, written by
  :func:`edgecv.export.tensorrt_build.build_engine`. Before deserializing, the json's TensorRT
  version and compute capability are compared with this machine's; a mismatch is an
  :class:`~edgecv.errors.ArtifactError` that says which and how to fix it (rebuild the engine
  here), instead of TensorRT's opaque "serialization assertion" failure.
* Name-based IO (TensorRT 10/11 API): ``set_input_shape`` per call, ``set_tensor_address`` for
  every IO tensor, ``execute_async_v3`` on a CUDA stream. Device buffers are allocated for the
  largest shape of optimisation profile 0 and reused; host staging buffers are pinned
  (``cudaMallocHost``) so the async copies really are async.
* CUDA through NVIDIA's ``cuda-python`` (``cuda.bindings.runtime``), not pycuda: it ships
  prebuilt wheels for every CUDA version (pycuda compiles against a local toolkit at install
  time), it is NVIDIA's own maintained binding, and NVIDIA's TensorRT samples and Polygraphy
  moved to it. Every call returns ``(error, value...)``; :func:`cuda_call` checks them.
* One execution context per backend; ``infer`` holds a lock, so threads may share it, and makes
  the backend's device current first (``cudaSetDevice`` is per host thread: without it a call
  from a new thread would run on device 0 with buffers that live on ``cuda:N``).
* The stream's native handle for ``execute_async_v3`` comes from
  ``cuda.bindings.utils.get_cuda_native_handle`` (cuda-bindings 12.9.1+; ``int(stream)`` is
  deprecated there, and ``stream.getPtr()`` is the address *of* the handle, not the handle);
  older cuda-bindings fall back to ``int(stream)``.
* Plugin libraries recorded in the json are found by name, verified by SHA-256 and loaded before
  deserializing (:mod:`edgecv.runtimes.backends.tensorrt_plugins`); edgecv's own plugins
  (``tensorrt.edgecv_plugins`` in the json, kernels embedded in the engine) are registered with
  ``tensorrt.plugin`` first (:func:`edgecv.plugins.engine.register_for_engine`).
* Output buffers are sized from the shapes TensorRT infers for the largest input; an output
  whose shape depends on the data (``-1`` after the inputs are set) is refused with a clear
  error: edgecv's outputs are padded to ``max_det`` precisely so that never happens.

``tensorrt`` and ``cuda-python`` are imported only when an engine is opened
(``pip install edgecv[tensorrt]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgecv.errors import ArtifactError, BackendError, MissingDependencyError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.backends.base import ClosesOnExit, NamedTensors, check_artifact_file, parse_device
from edgecv.runtimes.backends.tensorrt_plugins import load_plugins, parse_records, resolve_plugins


def engine_json_path(engine_path: Path) -> Path:
    """``model.engine`` -> ``model.engine.json`` (same rule as the builder)."""
    return engine_path.with_name(engine_path.name + ".json")


def read_engine_json(engine_path: Path) -> tuple[ArtifactMetadata, dict[str, Any]]:
    """``(metadata, tensorrt build facts)`` from the json beside an engine.

    Raises:
        ArtifactError: no json, invalid json, or no ``tensorrt`` section.
    """
    path = engine_json_path(engine_path)
    if not path.is_file():
        raise ArtifactError(f"expected the engine's metadata at {path} (written by `edgecv build`), found no such "
                            "file; an engine needs its json to be an edgecv artifact")
    text = path.read_text()
    metadata = ArtifactMetadata.from_json(text, source=str(path))
    facts = json.loads(text).get("tensorrt")
    if not isinstance(facts, dict):
        raise ArtifactError(f"{path}: expected a 'tensorrt' section (version, compute_capability), found none")
    return metadata, facts


def check_engine_bytes(plan: bytes, facts: dict[str, Any], source: str) -> None:
    """Raise unless ``plan`` is the engine the json describes (size and SHA-256, when recorded).

    The engine and its json are written together; a different engine beside an old json (copied
    by hand, or a build interrupted by an older edgecv) would otherwise run with wrong metadata.
    """
    size, digest = facts.get("engine_bytes"), facts.get("engine_sha256")
    if size is not None and int(size) != len(plan):
        raise ArtifactError(f"{source}: expected the {size}-byte engine its json describes, found {len(plan)} bytes; "
                            "the engine and its .json do not belong together: rebuild with edgecv build")
    if digest is not None:
        found = hashlib.sha256(plan).hexdigest()
        if found != digest:
            raise ArtifactError(f"{source}: expected SHA-256 {str(digest)[:16]}... (from its json), found "
                                f"{found[:16]}...; the engine and its .json do not belong together: rebuild")


def check_compatibility(facts: dict[str, Any], runtime_version: str, runtime_capability: str, source: str) -> None:
    """Raise unless an engine built with ``facts`` can load here.

    TensorRT plans are tied to the exact TensorRT version (unless built version-compatible) and
    to the GPU's compute capability (unless built hardware-compatible).

    Raises:
        ArtifactError: a clear statement of the mismatch and the fix.
    """
    problems = []
    built_version = str(facts.get("version", ""))
    if built_version and built_version != runtime_version:
        problems.append(f"built with TensorRT {built_version}, this machine has TensorRT {runtime_version}")
    built_cc = str(facts.get("compute_capability", ""))
    if built_cc and built_cc != runtime_capability:
        problems.append(f"built for compute capability {built_cc}, this GPU is {runtime_capability}")
    if problems:
        raise ArtifactError(f"{source}: the engine cannot run here: {'; '.join(problems)}. Rebuild it on this "
                            "machine from the ONNX artifact: edgecv build model.onnx --out model.engine")


#: What to install, said by every MissingDependencyError of the TensorRT path.
INSTALL_HINT = ("pip install edgecv[tensorrt] (CUDA 12) or edgecv[tensorrt-cu13] (CUDA 13, driver 580+); "
                "on Jetson, JetPack's TensorRT (README)")


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:  # also libnvinfer missing: the bindings raise ImportError / OSError-wrapped
        raise MissingDependencyError(f"backend 'tensorrt' needs TensorRT, found it not importable ({exc}): "
                                     f"{INSTALL_HINT}") from exc
    return trt


def import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as exc:
        raise MissingDependencyError(f"backend 'tensorrt' needs NVIDIA's cuda-python (cuda.bindings, 12.6.1+), "
                                     f"found it not importable ({exc}): {INSTALL_HINT}") from exc
    return cudart


def stream_handle(stream: Any) -> int:
    """The native ``cudaStream_t`` of a cuda-python stream object, as an int for ``execute_async_v3``."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:  # cuda-bindings < 12.9.1 has no utils module; int() is the documented way there
        return int(stream)
    return int(get_cuda_native_handle(stream))


def cuda_call(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(error, value...)`` tuple; raise :class:`BackendError` on an error code."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise BackendError(f"CUDA {what} failed: {error!r}")
    return values[0] if len(values) == 1 else (tuple(values) if values else None)


class TensorRtBackend(ClosesOnExit, NamedTensors):
    """A deserialized TensorRT engine behind the :class:`~edgecv.runtimes.backends.base.Backend` protocol."""

    name = "tensorrt"

    def __init__(self, path: Path, metadata: ArtifactMetadata, engine: Any, trt: Any, cudart: Any, device: int) -> None:
        self.path = path
        self.metadata = metadata
        self.device = device
        self._trt = trt
        self._cudart = cudart
        self._lock = threading.Lock()
        self.engine: Any | None = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._input_names = [n for n in names if is_input[n]]
        self._output_names = [n for n in names if not is_input[n]]
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.stream = cuda_call(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._stream_handle = stream_handle(self.stream)
        self._device_ptrs: dict[str, int] = {}
        self._host: dict[str, np.ndarray] = {}
        self._host_ptrs: list[int] = []
        self._allocate()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, device: str = "cuda", check_versions: bool = True,
             plugin_paths: Sequence[str | os.PathLike[str]] = ()) -> TensorRtBackend:
        """Deserialize the engine at ``path`` on ``device`` (``"cuda"`` / ``"cuda:N"``).

        ``plugin_paths``: plugin library files or folders searched first for the plugins the json
        records (then the engine's folder, then ``EDGECV_TRT_PLUGIN_PATH``).

        Raises:
            ArtifactError: missing engine or json, version / compute capability mismatch, corrupt
            plan, engine bytes that are not the ones the json describes, a plugin library not
            found / with another SHA-256 / not loadable.
            BackendError: a CPU device.
            MissingDependencyError: tensorrt or cuda-python not installed.
        """
        file = Path(path)
        kind, index = parse_device(device)
        if kind != "cuda":
            raise BackendError(f"backend 'tensorrt' runs on 'cuda' / 'cuda:N', found device {device!r}; "
                               "run the .onnx artifact with backend 'onnxruntime' or 'openvino' on a CPU")
        check_artifact_file(file)
        metadata, facts = read_engine_json(file)
        # Pure Python, before TensorRT: a missing or different plugin is the user's to fix.
        plugins = resolve_plugins(parse_records(facts.get("plugins"), str(engine_json_path(file))), file, plugin_paths)
        plan = file.read_bytes()
        check_engine_bytes(plan, facts, str(file))
        trt = import_tensorrt()
        cudart = import_cudart()
        cuda_call(cudart.cudaSetDevice(index), "cudaSetDevice")
        if check_versions:
            major = cuda_call(cudart.cudaDeviceGetAttribute(
                cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, index), "cudaDeviceGetAttribute")
            minor = cuda_call(cudart.cudaDeviceGetAttribute(
                cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, index), "cudaDeviceGetAttribute")
            check_compatibility(facts, str(trt.__version__), f"{major}.{minor}", str(file))
        logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(logger, "")
        load_plugins(trt, plugins)  # before deserializing: the plan names its plugin creators
        if facts.get("edgecv_plugins"):  # edgecv's own (tensorrt.plugin) plugins; imports tensorrt only
            from edgecv.plugins.engine import register_for_engine

            register_for_engine(facts, engine_json_path(file))
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            loaded = f"; plugins loaded: {[str(p) for p in plugins]}" if plugins else ""
            raise ArtifactError(f"TensorRT could not deserialize {file} (see TensorRT's log above: a plugin "
                                f"creator missing, or a plan built by another TensorRT / for another GPU){loaded}")
        return cls(file, metadata, engine, trt, cudart, index)

    def _allocate(self) -> None:
        """Device + pinned host buffers for the static shapes, or the largest shapes of profile 0."""
        cudart = self._cudart
        for name in self._input_names:
            static = tuple(self.engine.get_tensor_shape(name))
            if -1 in static:  # dynamic axes: size buffers for profile 0's max shape
                _, _, biggest = self.engine.get_tensor_profile_shape(name, 0)
                self.context.set_input_shape(name, tuple(biggest))
        for name in self._input_names + self._output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(int(d) < 0 for d in shape):
                raise ArtifactError(
                    f"{self.path}: tensor {name!r} has shape {list(shape)} after setting every input to its largest "
                    "shape: a data-dependent shape (-1) cannot be given a buffer in advance. edgecv engines pad "
                    "their outputs (max_det rows); rebuild from an edgecv ONNX export")
            nbytes = int(np.prod(shape)) * self._dtypes[name].itemsize
            ptr = cuda_call(cudart.cudaMalloc(nbytes), "cudaMalloc")
            self._device_ptrs[name] = int(ptr)
            self.context.set_tensor_address(name, int(ptr))
            host_ptr = int(cuda_call(cudart.cudaMallocHost(nbytes), "cudaMallocHost"))
            self._host_ptrs.append(host_ptr)
            buffer = (np.ctypeslib.as_array((np.ctypeslib.ctypes.c_byte * nbytes).from_address(host_ptr)))
            self._host[name] = buffer.view(self._dtypes[name])

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Copy ``batch`` in (pinned, async), run ``execute_async_v3``, copy every output out."""
        if self.engine is None:
            raise BackendError(f"the tensorrt backend for {self.path} is closed")
        cudart = self._cudart
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        name = self._input_names[0]
        data = np.ascontiguousarray(batch, dtype=self._dtypes[name])
        with self._lock:
            # The current device is per host thread: make ours current for a caller on another thread.
            cuda_call(cudart.cudaSetDevice(self.device), "cudaSetDevice")
            if not self.context.set_input_shape(name, tuple(data.shape)):
                raise BackendError(f"tensorrt rejected input {name!r} shape {list(data.shape)} for {self.path}; "
                                   f"profile 0 allows {[list(s) for s in self.engine.get_tensor_profile_shape(name, 0)]}")
            host_in = self._host[name][:data.size]
            host_in[...] = data.reshape(-1)
            cuda_call(cudart.cudaMemcpyAsync(self._device_ptrs[name], host_in.ctypes.data, data.nbytes, h2d,
                                             self.stream), "cudaMemcpyAsync")
            if not self.context.execute_async_v3(self._stream_handle):
                raise BackendError(f"tensorrt execute_async_v3 failed on {self.path}")
            shapes = {out: tuple(self.context.get_tensor_shape(out)) for out in self._output_names}
            for out in self._output_names:
                count = int(np.prod(shapes[out]))
                nbytes = count * self._dtypes[out].itemsize
                cuda_call(cudart.cudaMemcpyAsync(self._host[out].ctypes.data, self._device_ptrs[out], nbytes, d2h,
                                                 self.stream), "cudaMemcpyAsync")
            cuda_call(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
            return {out: self._host[out][:int(np.prod(shapes[out]))].reshape(shapes[out]).copy()
                    for out in self._output_names}

    def close(self) -> None:
        """Free buffers, stream, context and engine (idempotent)."""
        if self.engine is None:
            return
        cudart = self._cudart
        cudart.cudaSetDevice(self.device)  # free on the device that owns the buffers, from any thread
        for ptr in self._device_ptrs.values():
            cudart.cudaFree(ptr)
        for ptr in self._host_ptrs:
            cudart.cudaFreeHost(ptr)
        cudart.cudaStreamDestroy(self.stream)
        self._device_ptrs.clear()
        self._host_ptrs.clear()
        self._host.clear()
        self.context = None
        self.engine = None
