"""A recording stand-in for the ``tensorrt`` and ``cuda.bindings.runtime`` modules (tests only).

It exists to check **edgecv's own call sequence** on a machine without a GPU: which TensorRT /
CUDA calls edgecv makes, in what order, with what arguments, and what it does with the results
(a ``None`` from the registry, a refused timing cache, a ``-1`` output shape). It says nothing
about what TensorRT does: it accepts any ONNX file, builds no engine (the "plan" is a fixed byte
string) and computes nothing. Every name it offers is a real TensorRT 10/11 / cuda-bindings name
(the API-name test in ``tests/export/test_tensorrt_build.py`` checks edgecv uses no other).

Use :func:`install` (monkeypatch ``sys.modules``) and read ``standin.calls``: a list of
``(name, args)`` in call order.
"""

from __future__ import annotations

import ctypes
import threading
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PLAN = b"edgecv-standin-plan\x00" * 8


@dataclass
class Options:
    """Knobs for the stand-in's answers."""

    version: str = "10.13.3.9"
    compute_capability: tuple[int, int] = (8, 6)
    parse_ok: bool = True
    build_ok: bool = True
    timing_cache_accepted: bool = True  # set_timing_cache's result for a non-empty cache
    timing_cache_returned: bool = True  # get_timing_cache after the build
    load_library_result: Any = "handle"  # what IPluginRegistry.load_library returns
    deserialize_ok: bool = True
    output_shape: tuple[int, ...] = (1, 5, 4)  # what the context reports for the output
    input_shape: tuple[int, ...] = (-1, 3, 64, 64)
    profile: tuple[tuple[int, ...], ...] = ((1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))
    driver_cuda: int = 12090  # what cudaDriverGetVersion reports (CUDA 12.9)


@dataclass
class StandIn:
    options: Options = field(default_factory=Options)
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    threads: list[tuple[str, int]] = field(default_factory=list)  # (call, thread id)
    _keep: list[Any] = field(default_factory=list)

    def record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        self.threads.append((name, threading.get_ident()))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def args(self, name: str) -> list[tuple]:
        return [args for n, args in self.calls if n == name]


def _tensorrt(s: StandIn) -> types.ModuleType:
    o = s.options
    trt = types.ModuleType("tensorrt")
    trt.__version__ = o.version

    class Logger:
        WARNING, VERBOSE = "WARNING", "VERBOSE"

        def __init__(self, severity: str) -> None:
            s.record("Logger", severity)

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 5

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class Registry:
        def load_library(self, path: str) -> Any:
            s.record("load_library", path)
            return o.load_library_result

    class Cache:
        def serialize(self) -> bytes:
            s.record("serialize")
            return b"timing-cache-bytes"

    class Config:
        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            s.record("set_memory_pool_limit", pool, size)

        def create_timing_cache(self, data: bytes) -> Cache:
            s.record("create_timing_cache", bytes(data))
            return Cache()

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            attached = o.timing_cache_accepted or not s.args("create_timing_cache")[-1][0]
            s.record("set_timing_cache", ignore_mismatch, attached)
            return attached

        def get_timing_cache(self) -> Cache | None:
            s.record("get_timing_cache")
            return Cache() if o.timing_cache_returned else None

        def add_optimization_profile(self, profile: Any) -> int:
            s.record("add_optimization_profile")
            return 0

    class Profile:
        def set_shape(self, name: str, lo: tuple, mid: tuple, hi: tuple) -> None:
            s.record("set_shape", name, tuple(lo), tuple(mid), tuple(hi))

    class Builder:
        def __init__(self, logger: Logger) -> None:
            s.record("Builder")

        def create_network(self, flags: int) -> object:
            s.record("create_network", flags)
            return object()

        def create_builder_config(self) -> Config:
            s.record("create_builder_config")
            return Config()

        def create_optimization_profile(self) -> Profile:
            s.record("create_optimization_profile")
            return Profile()

        def build_serialized_network(self, network: object, config: Config) -> bytes | None:
            s.record("build_serialized_network")
            return PLAN if o.build_ok else None

    class OnnxParser:
        num_errors = 0 if o.parse_ok else 2

        def __init__(self, network: object, logger: Logger) -> None:
            s.record("OnnxParser")

        def parse_from_file(self, path: str) -> bool:
            s.record("parse_from_file", path)
            return o.parse_ok

        def get_error(self, index: int) -> str:
            return f"parser error {index}"

    class Context:
        def __init__(self) -> None:
            self.shapes = {"images": o.input_shape, "out": o.output_shape}

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            s.record("set_input_shape", name, tuple(shape))
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple:
            return self.shapes[name]

        def set_tensor_address(self, name: str, ptr: int) -> None:
            s.record("set_tensor_address", name, ptr)

        def execute_async_v3(self, stream: int) -> bool:
            s.record("execute_async_v3", stream)
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, index: int) -> str:
            return ("images", "out")[index]

        def get_tensor_mode(self, name: str) -> str:
            return TensorIOMode.INPUT if name == "images" else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> str:
            return "float32"

        def get_tensor_shape(self, name: str) -> tuple:
            return o.input_shape if name == "images" else o.output_shape

        def get_tensor_profile_shape(self, name: str, profile: int) -> tuple:
            return o.profile

        def create_execution_context(self) -> Context:
            s.record("create_execution_context")
            return Context()

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            s.record("Runtime")

        def deserialize_cuda_engine(self, plan: bytes) -> Engine | None:
            s.record("deserialize_cuda_engine", len(plan))
            return Engine() if o.deserialize_ok else None

    registry = Registry()

    def get_plugin_registry() -> Registry:
        s.record("get_plugin_registry")
        return registry

    def init_libnvinfer_plugins(logger: Logger, namespace: str) -> bool:
        s.record("init_libnvinfer_plugins", namespace)
        return True

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    trt.NetworkDefinitionCreationFlag, trt.MemoryPoolType, trt.TensorIOMode = (
        NetworkDefinitionCreationFlag, MemoryPoolType, TensorIOMode)
    trt.get_plugin_registry, trt.init_libnvinfer_plugins = get_plugin_registry, init_libnvinfer_plugins
    trt.nptype = lambda dtype: np.float32
    return trt


class _Stream:
    """A stream object whose ``int()`` warns, as cuda-bindings 12.9.1+ deprecates it."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __int__(self) -> int:
        warnings.warn("int(cuda_obj) is deprecated: use get_cuda_native_handle", DeprecationWarning, stacklevel=2)
        return self.handle


def _cudart(s: StandIn) -> tuple[types.ModuleType, types.ModuleType]:
    o = s.options
    rt = types.ModuleType("cuda.bindings.runtime")

    class cudaDeviceAttr:  # noqa: N801 - the real names
        cudaDevAttrComputeCapabilityMajor = "major"
        cudaDevAttrComputeCapabilityMinor = "minor"

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = "H2D", "D2H"

    def alloc(nbytes: int) -> int:
        buffer = ctypes.create_string_buffer(max(int(nbytes), 1))  # real memory: edgecv views host buffers
        s._keep.append(buffer)
        return ctypes.addressof(buffer)

    def call(name: str, result: Any = None) -> Any:
        def fn(*args: Any) -> tuple:
            s.record(name, *args)
            value = result(*args) if callable(result) else result
            return (0,) if value is None else (0, value)
        return fn

    rt.cudaDeviceAttr, rt.cudaMemcpyKind = cudaDeviceAttr, cudaMemcpyKind
    rt.cudaSetDevice = call("cudaSetDevice")
    rt.cudaDeviceGetAttribute = call("cudaDeviceGetAttribute", lambda attr, dev: o.compute_capability[
        0 if attr == "major" else 1])
    rt.cudaStreamCreate = call("cudaStreamCreate", lambda: _Stream(0xC0FFEE))
    rt.cudaMalloc = call("cudaMalloc", alloc)
    rt.cudaMallocHost = call("cudaMallocHost", alloc)
    rt.cudaMemcpyAsync = call("cudaMemcpyAsync")
    rt.cudaStreamSynchronize = call("cudaStreamSynchronize")
    rt.cudaFree = call("cudaFree")
    rt.cudaFreeHost = call("cudaFreeHost")
    rt.cudaStreamDestroy = call("cudaStreamDestroy")
    rt.cudaDriverGetVersion = call("cudaDriverGetVersion", lambda: o.driver_cuda)
    utils = types.ModuleType("cuda.bindings.utils")
    utils.get_cuda_native_handle = lambda obj: obj.handle
    return rt, utils


def _trt_plugin(s: StandIn) -> types.ModuleType:
    """``tensorrt.plugin``: ``register`` / ``aot_impl`` record the plugin id (the names edgecv's trt.py uses)."""
    trtp = types.ModuleType("tensorrt.plugin")

    def decorator(name: str) -> Any:
        def make(plugin_id: str) -> Any:
            def wrap(fn: Any) -> Any:
                s.record(name, plugin_id)
                return fn
            return wrap
        return make

    trtp.register, trtp.aot_impl = decorator("trtp.register"), decorator("trtp.aot_impl")
    for cls in ("TensorDesc", "KernelLaunchParams", "SymExprs", "SymIntExprs", "SymInt32"):
        setattr(trtp, cls, type(cls, (), {}))
    trtp.from_shape_expr = lambda *a, **k: None
    return trtp


def install(monkeypatch: Any, options: Options | None = None) -> StandIn:
    """Put the stand-in ``tensorrt`` and ``cuda.bindings.runtime`` / ``.utils`` into ``sys.modules``."""
    import sys

    standin = StandIn(options or Options())
    runtime, utils = _cudart(standin)
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    cuda.__path__, bindings.__path__ = [], []  # packages, so `from cuda.bindings import runtime` resolves
    cuda.bindings, bindings.runtime, bindings.utils = bindings, runtime, utils
    trt, trtp = _tensorrt(standin), _trt_plugin(standin)
    trt.__path__, trt.plugin = [], trtp  # a package, so `import tensorrt.plugin` resolves
    trt.int32, trt.float32 = "int32", "float32"
    for name, module in (("tensorrt", trt), ("tensorrt.plugin", trtp), ("cuda", cuda), ("cuda.bindings", bindings),
                         ("cuda.bindings.runtime", runtime), ("cuda.bindings.utils", utils)):
        monkeypatch.setitem(sys.modules, name, module)
    return standin


# --- real plugin libraries (tiny C shared objects) -------------------------------------------------------------

_SELF_REGISTERING = """
static int loads = 0;
/* Runs when the library is mapped, like REGISTER_TENSORRT_PLUGIN's static registrar. */
__attribute__((constructor)) static void register_on_load(void) { loads++; }
int edgecv_test_loads(void) { return loads; }
int edgecv_test_version(void) { return VERSION; }
"""
_REGISTRY_ENTRY = """
/* The entry point IPluginRegistry::loadLibrary looks for (IPluginV2 creators). */
void *getPluginCreators(int *count) { *count = 0; return 0; }
int edgecv_test_version(void) { return VERSION; }
"""


def compile_plugin(folder: Any, name: str, kind: str = "self", version: int = 1) -> Any:
    """Compile a real shared library ``folder/name``: ``kind`` "self" (a load-time constructor, as
    ``REGISTER_TENSORRT_PLUGIN`` libraries have) or "registry" (exports ``getPluginCreators``).
    ``version`` changes the bytes (hence the SHA-256). Returns the path; skips the test without a C compiler."""
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build a test plugin library")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{name}.c"
    source.write_text(_SELF_REGISTERING if kind == "self" else _REGISTRY_ENTRY)
    out = folder / name
    subprocess.run([compiler, "-shared", "-fPIC", f"-DVERSION={version}", "-o", str(out), str(source)], check=True)
    source.unlink()
    return out


def is_mapped(path: Any) -> bool:
    """Whether the shared library at ``path`` is mapped into this process (Linux ``/proc/self/maps``)."""
    from pathlib import Path

    return str(Path(path).resolve()) in Path("/proc/self/maps").read_text()
