"""Build a TensorRT engine from an edgecv ONNX artifact (TensorRT 10.x and 11.x Python APIs).

    from edgecv.export.tensorrt_build import build_engine
    build_engine("model.onnx", "model.engine", opt_shape=(4, 3, 640, 640), max_shape=(8, 3, 640, 640),
                 workspace_mb=2048, timing_cache="timing.cache", plugins=["libedgecv_plugins.so"])

Two halves:

* :func:`plan_build` is pure Python (reads the ONNX with the ``onnx`` package, no TensorRT):
  input name and shape, the edgecv metadata, optimisation profiles computed from the ONNX input
  shape + the user's min/opt/max with errors that say expected vs found, plugin libraries checked
  to exist, workspace and timing cache paths. Its result, a :class:`BuildPlan`, is tested on a CPU.
  It lives in :mod:`edgecv.export.tensorrt_plan`; this module re-exports its names.
* :func:`build_from_plan` makes the TensorRT calls: plugin libraries loaded *before* parsing
  (a plugin node's creator must be registered when the parser meets it; both self-registering
  libraries and ``getPluginCreators`` ones, see :mod:`edgecv.runtimes.backends.tensorrt_plugins`),
  a **strongly typed**
  network (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: the precision of every tensor is the
  ONNX graph's, so fp16 / int8-QDQ graphs build as exported and nothing is silently re-typed —
  TensorRT 11 removed the precision builder flags and implicit int8 calibration altogether),
  workspace limit via ``set_memory_pool_limit``, one optimisation profile per requested shape
  range, a timing cache read before and written after the build. A graph holding edgecv's own
  plugin nodes (``--plugins``) has its Triton kernels compiled for this GPU first, refused when
  the GPU is not a claimed target or the driver cannot load the kernels' PTX ISA, recorded
  (``tensorrt.edgecv_plugins``: kernel, target, PTX ISA, minimum driver) and registered with
  ``tensorrt.plugin`` before parsing (:mod:`edgecv.plugins.engine`). A timing cache TensorRT will not
  attach (made on another GPU or TensorRT version) is a warning and the build goes on without it,
  then writes a fresh one.

The engine stays a raw plan (``trtexec --loadEngine`` works); ``<engine>.json`` beside it holds
the edgecv metadata plus ``tensorrt``: version, GPU compute capability, profiles, the engine's
size and SHA-256, and each plugin library's file name and SHA-256 (the runtime finds it by name
and checks the hash: build paths do not exist in a deployment container). Engine and json are
written atomically and together: both are complete in temporary files before either is renamed
into place, so a failure leaves the previous pair untouched.
``tensorrt`` and ``cuda-python`` are imported only inside :func:`build_from_plan`
(``pip install edgecv[tensorrt]``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from edgecv.errors import ExportError, MissingDependencyError
from edgecv.export.tensorrt_plan import (  # the plan half, re-exported: callers import it from here
    BuildPlan, Profile, Shape, check_plugins, compute_profile, edgecv_plugins_of, engine_json_path, parse_shape,
    plan_build, read_onnx_input,
)
from edgecv.fileio import WriteError, atomic_path, write_bytes
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.backends.tensorrt_plugins import load_plugins

__all__ = [
    "SUPPORTED_TENSORRT", "BuildPlan", "Profile", "Shape", "attach_timing_cache", "build_engine", "build_from_plan",
    "check_build_dependencies", "check_plugins", "compute_capability", "compute_profile", "driver_cuda_version",
    "edgecv_plugins_of", "engine_json_path", "import_tensorrt", "parse_shape", "plan_build", "prepare_edgecv_plugins",
    "read_onnx_input", "save_timing_cache", "static_shapes_hint", "write_engine",
]

#: TensorRT major versions whose Python API this module is written (and tested) against.
SUPPORTED_TENSORRT = ("10", "11")


def prepare_edgecv_plugins(plan: BuildPlan, capability: str) -> None:
    """Before parsing: compile + check the plugin kernels for this GPU / driver, then register the plugins.

    Raises:
        ExportError: a GPU edgecv's kernels are not claimed for, or a driver too old for their PTX.
    """
    if not plan.edgecv_plugins:
        return
    from edgecv.plugins.engine import kernel_records, register_tensorrt

    plan.kernel_records = kernel_records(plan.onnx_path, capability, driver_cuda_version())
    register_tensorrt(plan.edgecv_plugins)


def driver_cuda_version() -> str:
    """``"12.4"``-style CUDA version the installed driver supports (``cudaDriverGetVersion``)."""
    from edgecv.runtimes.backends.tensorrt import cuda_call, import_cudart

    version = int(cuda_call(import_cudart().cudaDriverGetVersion(), "cudaDriverGetVersion"))
    return f"{version // 1000}.{version % 1000 // 10}"


def import_tensorrt() -> Any:
    """``import tensorrt`` (10.x / 11.x) or a :class:`MissingDependencyError` naming the extra."""
    from edgecv.runtimes.backends.tensorrt import INSTALL_HINT

    try:
        import tensorrt as trt
    except ImportError as exc:  # also OSError-wrapped ImportError when libnvinfer is absent
        raise MissingDependencyError(
            f"building an engine needs TensorRT, found it not importable ({exc}); on a machine with an NVIDIA "
            f"GPU: {INSTALL_HINT}"
        ) from exc
    major = str(trt.__version__).split(".")[0]
    if major not in SUPPORTED_TENSORRT:
        raise MissingDependencyError(f"expected TensorRT {' or '.join(SUPPORTED_TENSORRT)}.x, found {trt.__version__}")
    return trt


def check_build_dependencies() -> None:
    """Raise :class:`MissingDependencyError` now unless TensorRT and cuda-python import.

    For callers with minutes of work before the build (``export --int8 --engine`` exports and
    calibrates first): fail before that work, not after it.
    """
    from edgecv.runtimes.backends.tensorrt import import_cudart

    import_tensorrt()
    import_cudart()


def compute_capability(device: int = 0) -> str:
    """``"8.6"``-style compute capability of CUDA device ``device`` via cuda-python's runtime API."""
    from edgecv.runtimes.backends.tensorrt import cuda_call, import_cudart

    cudart = import_cudart()
    major = cuda_call(cudart.cudaDeviceGetAttribute(
        cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute")
    minor = cuda_call(cudart.cudaDeviceGetAttribute(
        cudart.cudaDeviceAttr.cudaDevAttrComputeCapabilityMinor, device), "cudaDeviceGetAttribute")
    return f"{major}.{minor}"


def static_shapes_hint(metadata: ArtifactMetadata) -> str:
    """The way out a failed build of a two-stage graph with data-dependent shapes has (its export
    options, recorded with its fidelity report, say so), else ``""``: that path has not met a GPU."""
    graph = (metadata.fidelity or {}).get("graph") or {}
    if graph.get("static_shapes") is False:
        return ("; this two-stage graph has data-dependent shapes (per-level RoI Align, masks on the detected "
                "rows), untested on TensorRT: export it again with --static-shapes")
    return ""


def build_from_plan(plan: BuildPlan, *, verbose: bool = False) -> Path:
    """Run the TensorRT build described by ``plan``; write the engine and its json. Returns the engine path.

    Raises:
        ExportError: a plugin library that cannot be loaded, the parser or builder failed (every
        parser error listed).
        MissingDependencyError: tensorrt / cuda-python are not installed.
        WriteError: the engine or its json could not be written (the previous pair is kept).
    """
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    load_plugins(trt, plan.plugins, ExportError)  # before parsing: the parser looks plugin creators up by name
    capability = compute_capability()
    prepare_edgecv_plugins(plan, capability)  # edgecv's own plugins: checked, then registered, before parsing
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT's ONNX parser rejected {plan.onnx_path}: " + " | ".join(errors)
                          + static_shapes_hint(plan.metadata))
    config = builder.create_builder_config()
    if plan.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    cache_attached = plan.timing_cache is not None and attach_timing_cache(config, plan.timing_cache)
    for item in plan.profiles:
        profile = builder.create_optimization_profile()
        profile.set_shape(plan.input_name, item.min, item.opt, item.max)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {plan.onnx_path} (see the log above)"
                          + static_shapes_hint(plan.metadata))
    engine = bytes(memoryview(serialized))
    doc = plan.engine_json(str(trt.__version__), capability, engine)  # may raise: before any write
    write_engine(plan, engine, doc)
    if cache_attached:
        save_timing_cache(config, plan.timing_cache)
    return plan.engine_path


def attach_timing_cache(config: Any, path: Path) -> bool:
    """Attach the timing cache at ``path`` (empty if the file does not exist) to ``config``.

    TensorRT refuses a cache made on another GPU or TensorRT version (``set_timing_cache``
    returns False). That is a warning, not a failure: the build goes on with a fresh, empty cache
    (written to ``path`` afterwards). Returns whether a cache is attached.
    """
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, False):
        return True
    if data:
        warnings.warn(f"timing cache {path} was not accepted by TensorRT (made on another GPU or TensorRT "
                      "version?); building without it and writing a fresh one", stacklevel=2)
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, False):
            return True
    warnings.warn(f"TensorRT could not create a timing cache; {path} will not be written", stacklevel=2)
    return False


def save_timing_cache(config: Any, path: Path) -> None:
    """Write the builder's timing cache to ``path`` (atomically); a cache TensorRT does not return is a warning."""
    cache = config.get_timing_cache()
    data = cache.serialize() if cache is not None else None
    if data is None:
        warnings.warn(f"TensorRT returned no timing cache after the build; {path} left as it was", stacklevel=2)
        return
    try:
        write_bytes(path, memoryview(data))
    except WriteError as exc:  # the engine is built and written: a cache is only a speed-up for next time
        warnings.warn(f"{exc}; the engine was written", stacklevel=2)


def write_engine(plan: BuildPlan, engine: bytes, doc: dict[str, Any]) -> None:
    """Write the engine and its json atomically and together.

    Both are written in full to temporary files beside their destinations before either is
    renamed; the json is renamed first. A failure while writing leaves the previous pair as it
    was; the json records the engine's size and SHA-256, so a pair that still ends up mixed is
    refused when opened.
    """
    with atomic_path(plan.engine_path) as engine_tmp, atomic_path(plan.json_path) as json_tmp:
        engine_tmp.write_bytes(engine)
        json_tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))


def build_engine(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str], *,
                 min_shape: Sequence[int] | None = None, opt_shape: Sequence[int] | None = None,
                 max_shape: Sequence[int] | None = None,
                 profiles: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]] | None = None,
                 workspace_mb: int | None = None, timing_cache: str | os.PathLike[str] | None = None,
                 plugins: Sequence[str | os.PathLike[str]] = (), verbose: bool = False) -> Path:
    """Plan (:func:`plan_build`) then build (:func:`build_from_plan`); returns the engine path."""
    plan = plan_build(onnx_path, engine_path, min_shape=min_shape, opt_shape=opt_shape, max_shape=max_shape,
                      profiles=profiles, workspace_mb=workspace_mb, timing_cache=timing_cache, plugins=plugins)
    return build_from_plan(plan, verbose=verbose)
