"""The pure-Python half of a TensorRT engine build: everything decided before the first TensorRT call.

:func:`plan_build` reads the ONNX with the ``onnx`` package (no TensorRT, tested on a CPU): the
input name and shape (``-1`` for dynamic axes), the edgecv metadata, optimisation profiles
computed from the ONNX input shape + the user's min/opt/max (:func:`compute_profile`, errors that
say expected vs found), plugin libraries checked to exist (:func:`check_plugins`), the workspace
and timing cache paths, edgecv's own plugins the graph uses. Its result, a :class:`BuildPlan`,
also writes the document that goes beside the engine (:meth:`BuildPlan.engine_json`).

:mod:`edgecv.export.tensorrt_build` makes the TensorRT calls from a plan (and re-exports these
names, so ``from edgecv.export.tensorrt_build import plan_build`` keeps working).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgecv.errors import ArtifactError, ExportError, MissingDependencyError
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.runtimes.backends.tensorrt_plugins import plugin_record

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
