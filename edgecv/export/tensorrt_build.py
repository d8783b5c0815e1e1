"""Build a TensorRT engine from an edgecv ONNX artifact (TensorRT 10.x and 11.x Python APIs).

    from edgecv.export.tensorrt_build import build_engine
    build_engine("model.onnx", "model.engine", opt_shape=(4, 3, 640, 640), max_shape=(8, 3, 640, 640),
                 workspace_mb=2048, timing_cache="timing.cache", plugins=["libedgecv_plugins.so"])

Two halves:

* :func:`plan_build` is pure Python (reads the ONNX with the ``onnx`` package, no TensorRT):
  input name and shape, the edgecv metadata, optimisation profiles computed from the ONNX input
  shape + the user's min/opt/max with errors that say expected vs found, plugin libraries checked
  to exist, workspace and timing cache paths. Its result, a :class:`BuildPlan`, is tested on a CPU.
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

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgecv.errors import ArtifactError, ExportError, MissingDependencyError
from edgecv.fileio import WriteError, atomic_path, write_bytes
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.runtimes.backends.tensorrt_plugins import load_plugins, plugin_record

#: TensorRT major versions whose Python API this module is written (and tested) against.
SUPPORTED_TENSORRT = ("10", "11")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    """One optimisation profile for the single network input: min <= opt <= max, every axis."""

    min: Shape
    opt: Shape
    max: Shape


@dataclass
class BuildPlan:
    """Everything decided before the first TensorRT call."""

    onnx_path: Path
    engine_path: Path
    input_name: str
    onnx_input_shape: list[int]  # -1 for dynamic axes
    profiles: list[Profile]
    metadata: ArtifactMetadata
    workspace_bytes: int | None = None
    timing_cache: Path | None = None
    plugins: list[Path] = field(default_factory=list)
    #: ``{"name", "sha256"}`` of each plugin library, in load order (what the engine json records).
    plugin_records: list[dict[str, str]] = field(default_factory=list)
    #: edgecv's own plugins the graph uses (:data:`edgecv.plugins.PLUGINS` names; no library file).
    edgecv_plugins: list[str] = field(default_factory=list)
    #: Their kernels compiled for the build GPU (:func:`edgecv.plugins.engine.kernel_records`).
    kernel_records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def json_path(self) -> Path:
        return engine_json_path(self.engine_path)

    def engine_json(self, tensorrt_version: str, compute_capability: str, engine: bytes | None = None
                    ) -> dict[str, Any]:
        """The document written beside the engine: edgecv metadata + the TensorRT build facts.

        ``engine``: the serialized plan, whose size and SHA-256 are recorded so the runtime can
        tell a json from the engine it describes.
        """
        doc = asdict(self.metadata)
        doc["tensorrt"] = {
            "version": tensorrt_version,
            "compute_capability": compute_capability,
            "input_name": self.input_name,
            "profiles": [{"min": list(p.min), "opt": list(p.opt), "max": list(p.max)} for p in self.profiles],
            "plugins": [dict(r) for r in self.plugin_records],
            "edgecv_plugins": [dict(r) for r in self.kernel_records],
            "strongly_typed": True,
            "source_onnx": self.onnx_path.name,
        }
        if engine is not None:
            doc["tensorrt"]["engine_bytes"] = len(engine)
            doc["tensorrt"]["engine_sha256"] = hashlib.sha256(engine).hexdigest()
        return doc


def engine_json_path(engine_path: str | os.PathLike[str]) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    path = Path(engine_path)
    return path.with_name(path.name + ".json")


def _shape(value: Sequence[int] | None, what: str) -> Shape | None:
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{what}: expected a shape like (1, 3, 640, 640), found {value!r}") from exc
    if any(v <= 0 for v in shape):
        raise ExportError(f"{what}: expected positive dimensions, found {list(shape)}")
    return shape


def parse_shape(text: str | None) -> Shape | None:
    """``"1x3x640x640"`` (or ``"1,3,640,640"``) -> ``(1, 3, 640, 640)``; ``None`` -> ``None``.

    Raises:
        ExportError: anything else.
    """
    if text is None:
        return None
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        return _shape([int(p) for p in parts], "shape")
    except ValueError as exc:
        raise ExportError(f"expected a shape like 1x3x640x640, found {text!r}") from exc


def compute_profile(onnx_shape: Sequence[int], default_hw: Sequence[int], *, min_shape: Sequence[int] | None = None,
                    opt_shape: Sequence[int] | None = None, max_shape: Sequence[int] | None = None,
                    hw_axes: tuple[int, int] = (2, 3)) -> Profile:
    """One profile from the ONNX input shape (``-1`` = dynamic) and the user's min/opt/max.

    Static axes are fixed by the graph (a user shape must repeat them). Defaults for dynamic
    axes: ``opt`` = the user's opt, else the user's max, else batch 1 at ``default_hw`` (the
    metadata's letterbox size, on ``hw_axes``: (2, 3) for NCHW, (1, 2) for a uint8 NHWC input);
    ``min`` = ``opt`` with batch 1; ``max`` = ``opt``.

    Raises:
        ExportError: a shape of the wrong rank, a static axis changed, non-positive axes,
        or min <= opt <= max violated; each message names expected and found.
    """
    rank = len(onnx_shape)
    given = {"min_shape": _shape(min_shape, "min_shape"), "opt_shape": _shape(opt_shape, "opt_shape"),
             "max_shape": _shape(max_shape, "max_shape")}
    for what, shape in given.items():
        if shape is None:
            continue
        if len(shape) != rank:
            raise ExportError(f"{what}: expected {rank} dimensions like the ONNX input {list(onnx_shape)}, "
                              f"found {list(shape)}")
        for axis, (dim, want) in enumerate(zip(shape, onnx_shape)):
            if want > 0 and dim != want:
                raise ExportError(f"{what}: axis {axis} is static in the ONNX graph ({list(onnx_shape)}), "
                                  f"expected {want}, found {dim}; re-export with --dynamic to vary it")
    default = tuple(
        want if want > 0 else int(default_hw[hw_axes.index(axis)]) if axis in hw_axes else 1
        for axis, want in enumerate(onnx_shape)
    )
    opt = given["opt_shape"] or given["max_shape"] or default
    opt = tuple(o if w <= 0 else w for o, w in zip(opt, onnx_shape))
    minimum = given["min_shape"] or tuple(1 if (axis == 0 and w <= 0) else o
                                          for axis, (o, w) in enumerate(zip(opt, onnx_shape)))
    maximum = given["max_shape"] or opt
    for axis in range(rank):
        if not minimum[axis] <= opt[axis] <= maximum[axis]:
            raise ExportError(f"optimisation profile axis {axis}: expected min <= opt <= max, found "
                              f"min {list(minimum)}, opt {list(opt)}, max {list(maximum)}")
    return Profile(tuple(minimum), tuple(opt), tuple(maximum))


def check_plugins(plugins: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Plugin shared libraries as paths; each must be an existing ``.so`` / ``.dll`` file.

    Raises:
        ExportError: a missing file or a file that is not a shared library, all listed at once.
    """
    paths, problems = [], []
    for item in plugins:
        path = Path(item)
        if not path.is_file():
            problems.append(f"{path}: no such file")
        elif not (path.suffix in (".so", ".dll") or ".so." in path.name):
            problems.append(f"{path}: expected a shared library (.so / .dll), found {path.suffix or 'no suffix'}")
        paths.append(path)
    if problems:
        raise ExportError("plugin libraries: " + "; ".join(problems))
    return paths


def read_onnx_input(onnx_path: Path) -> tuple[str, list[int], ArtifactMetadata]:
    """``(input name, shape with -1 for dynamic axes, edgecv metadata)`` of an ONNX artifact.

    Raises:
        ArtifactError: not a readable ONNX model, not exactly one input, or no edgecv metadata.
        MissingDependencyError: the ``onnx`` package (``edgecv[export]``) is missing.
    """
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("building an engine reads the ONNX graph with the onnx package: "
                                     "pip install edgecv[export]") from exc
    if not onnx_path.is_file():
        raise ArtifactError(f"expected an ONNX artifact at {onnx_path}, found no such file")
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a non-ONNX file
        raise ArtifactError(f"expected an ONNX model at {onnx_path}, found an unreadable file ({exc})") from exc
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ArtifactError(f"{onnx_path}: expected one network input, found {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in dims]
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ArtifactError(f"{onnx_path} is not an edgecv export: expected an {METADATA_KEY!r} metadata_props "
                            f"entry, found {sorted(props) or 'none'}")
    return inputs[0].name, shape, ArtifactMetadata.from_json(props[METADATA_KEY], source=str(onnx_path))


def plan_build(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str], *,
               min_shape: Sequence[int] | None = None, opt_shape: Sequence[int] | None = None,
               max_shape: Sequence[int] | None = None,
               profiles: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]] | None = None,
               workspace_mb: int | None = None, timing_cache: str | os.PathLike[str] | None = None,
               plugins: Sequence[str | os.PathLike[str]] = ()) -> BuildPlan:
    """Everything :func:`build_engine` decides before TensorRT: see the module docstring.

    ``profiles`` (a list of ``(min, opt, max)``) gives several optimisation profiles; otherwise
    ``min_shape`` / ``opt_shape`` / ``max_shape`` make one.

    Raises:
        ArtifactError, ExportError, MissingDependencyError.
    """
    source = Path(onnx_path)
    name, shape, metadata = read_onnx_input(source)
    hw = metadata.letterbox_size
    if profiles:
        if any(v is not None for v in (min_shape, opt_shape, max_shape)):
            raise ExportError("give either profiles=[(min, opt, max), ...] or min/opt/max_shape, found both")
        built = [compute_profile(shape, hw, min_shape=lo, opt_shape=mid, max_shape=hi, hw_axes=metadata.hw_axes)
                 for lo, mid, hi in profiles]
    else:
        built = [compute_profile(shape, hw, min_shape=min_shape, opt_shape=opt_shape, max_shape=max_shape,
                                 hw_axes=metadata.hw_axes)]
    if workspace_mb is not None and (isinstance(workspace_mb, bool) or int(workspace_mb) <= 0):
        raise ExportError(f"workspace_mb: expected a positive number of MiB or None, found {workspace_mb!r}")
    engine_file = Path(engine_path)
    if engine_file.suffix not in (".engine", ".plan"):
        raise ExportError(f"engine path: expected a .engine or .plan file, found {engine_file.name!r}")
    libraries = check_plugins(plugins)
    names = [p.name for p in libraries]
    if len(set(names)) != len(names):  # the runtime finds libraries by file name
        raise ExportError(f"plugin libraries: expected distinct file names, found {names}")
    return BuildPlan(
        onnx_path=source, engine_path=engine_file, input_name=name, onnx_input_shape=shape, profiles=built,
        metadata=metadata, workspace_bytes=None if workspace_mb is None else int(workspace_mb) << 20,
        timing_cache=None if timing_cache is None else Path(timing_cache), plugins=libraries,
        plugin_records=[plugin_record(p) for p in libraries], edgecv_plugins=edgecv_plugins_of(source),
    )


def edgecv_plugins_of(onnx_path: Path) -> list[str]:
    """edgecv plugin names whose nodes the ONNX holds (a TensorRT-flavoured graph from ``--plugins``)."""
    from edgecv.plugins.engine import graph_plugins

    return graph_plugins(onnx_path)


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
        raise ExportError(f"TensorRT's ONNX parser rejected {plan.onnx_path}: " + " | ".join(errors))
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
        raise ExportError(f"TensorRT failed to build an engine from {plan.onnx_path} (see the log above)")
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
