"""Write an edgecv artifact as a Triton Inference Server model repository, and check one.

    write_triton_repository("model.onnx", "repo/", max_batch=8, instances=2)   # API
    edgecv export-triton model.onnx repo/ --max-batch 8 --instances 2          # CLI

writes ``repo/<name>/``::

    config.pbtxt        Triton's model configuration (text protobuf, Triton's own ModelConfig message)
    edgecv.json         the artifact's edgecv metadata (for an engine: its whole .engine.json)
    1/model.onnx        platform onnxruntime_onnx (an .onnx artifact), or
    1/model.plan        platform tensorrt_plan (a TensorRT engine) + 1/model.plan.json beside it, or
    1/model.onnx + 1/model.py   backend python (edgecv's ONNX Runtime model, for servers without
                        the ONNX Runtime backend, e.g. the one nvidia-pytriton bundles)

The config's inputs and outputs come from the graph (names, dtypes, dims; an engine's from the
detection contract in its json). Batching follows the artifact:

* a ``--dynamic`` artifact (batch axis ``-1``): ``max_batch_size = max_batch`` (default 8), dims
  without the batch axis, ``dynamic_batching`` on (``max_queue_delay_microseconds`` =
  ``queue_delay_us``); ``max_batch=0`` turns Triton's batching off (dims keep the ``-1`` batch);
* a fixed-batch artifact: ``max_batch_size: 0`` and the full dims (batch included), no dynamic
  batching; asking for ``max_batch > 0`` is an :class:`~edgecv.errors.OptionError` (re-export with
  ``--dynamic``).

The edgecv metadata also travels inside the config, as the model parameter
:data:`METADATA_PARAMETER` (``string_value`` = the metadata JSON): a client reads it with the
model-config request it makes anyway, so ``Predictor("grpc://host:8001/<name>", backend="triton")``
needs nothing but the URL (:mod:`edgecv.runtimes.backends.triton`). Triton's ONNX Runtime,
TensorRT and Python backends ignore parameters they do not know.

The written config is parsed back with Triton's protobuf definitions (``tritonclient``'s
``model_config_pb2``) and checked against the graph (:func:`check_model_dir`). Every file is
written atomically (:mod:`edgecv.fileio`). Needs ``pip install edgecv[triton]``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecv.errors import ArtifactError, MissingDependencyError, OptionError
from edgecv.fileio import write_json, write_text, write_with
from edgecv.metadata import DETECTION_OUTPUTS, ArtifactMetadata

#: Model-config parameter holding the edgecv metadata JSON (read by the ``triton`` backend).
METADATA_PARAMETER = "edgecv_metadata"
#: ONNX Runtime intra-op threads per instance: the key Triton's ONNX Runtime backend reads (edgecv's model.py too).
THREADS_PARAMETER = "intra_op_thread_count"
#: Platform names (Triton's) -> the artifact file name in the version folder.
PLATFORMS = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan", "python": "model.onnx"}
KINDS = ("cpu", "gpu")
VERSION = "1"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
#: ONNX Runtime type strings -> Triton data types.
_ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(double)": "TYPE_FP64",
              "tensor(bfloat16)": "TYPE_BF16", "tensor(int8)": "TYPE_INT8", "tensor(int16)": "TYPE_INT16",
              "tensor(int32)": "TYPE_INT32", "tensor(int64)": "TYPE_INT64", "tensor(uint8)": "TYPE_UINT8",
              "tensor(uint16)": "TYPE_UINT16", "tensor(bool)": "TYPE_BOOL"}
_METADATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}
_TRITON_PY = Path(__file__).with_name("triton_python_model.py")
INSTALL_HINT = "pip install edgecv[triton]"


@dataclass(frozen=True)
class Tensor:
    """One graph input or output: ``dims`` with ``-1`` for a dynamic axis, ``dtype`` a Triton ``TYPE_*`` name."""

    name: str
    dtype: str
    dims: tuple[int, ...]


@dataclass
class GraphIO:
    """What the config must agree with: the graph's inputs and outputs and the artifact's metadata."""

    inputs: list[Tensor]
    outputs: list[Tensor]
    metadata: ArtifactMetadata
    metadata_doc: dict[str, Any] = field(default_factory=dict)  # what edgecv.json holds
    max_profile_batch: int | None = None  # an engine's largest batch (optimisation profile 0)


@dataclass
class TritonModel:
    """A written model folder: ``dir`` (``repo/<name>``), its ``config`` (a ``ModelConfig`` message)."""

    name: str
    dir: Path
    platform: str
    config: Any

    @property
    def config_path(self) -> Path:
        return self.dir / "config.pbtxt"


def model_config_pb2() -> Any:
    """Triton's ``model_config_pb2`` module (from tritonclient); MissingDependencyError without it."""
    try:
        from tritonclient.grpc import model_config_pb2 as pb2
    except ImportError as exc:
        raise MissingDependencyError(f"Triton model configs need tritonclient (Triton's protobuf definitions), "
                                     f"found it not importable ({exc}): {INSTALL_HINT}") from exc
    return pb2


def platform_for(artifact: Path, platform: str | None) -> str:
    """The Triton platform for ``artifact``: ``platform`` itself, or by suffix (``.onnx`` -> onnxruntime_onnx,
    ``.engine``/``.plan`` -> tensorrt_plan)."""
    suffix = artifact.suffix.lower()
    found = platform or ("tensorrt_plan" if suffix in (".engine", ".plan") else "onnxruntime_onnx")
    if found not in PLATFORMS:
        raise OptionError(f"platform: expected one of {list(PLATFORMS)}, found {platform!r}")
    wants_engine = found == "tensorrt_plan"
    if wants_engine != (suffix in (".engine", ".plan")) or (not wants_engine and suffix != ".onnx"):
        raise OptionError(f"platform {found!r}: expected {'a .engine/.plan' if wants_engine else 'an .onnx'} "
                          f"artifact, found {artifact.name}")
    return found


def read_graph_io(artifact: Path) -> GraphIO:
    """Inputs, outputs and metadata of an ``.onnx`` (read by ONNX Runtime) or an engine (its json).

    Raises:
        ArtifactError: missing file, not an edgecv artifact, or an engine whose task has no fixed contract here.
    """
    if artifact.suffix.lower() in (".engine", ".plan"):
        return _engine_io(artifact)
    from edgecv.runtimes.backends.onnxruntime import OnnxRuntimeBackend

    with OnnxRuntimeBackend.open(artifact, graph_optimization="disable") as backend:
        session = backend.session
        assert session is not None  # just opened
        inputs = [_ort_tensor(node, artifact) for node in session.get_inputs()]
        outputs = [_ort_tensor(node, artifact) for node in session.get_outputs()]
        metadata = backend.metadata
    return GraphIO(inputs, outputs, metadata, json.loads(metadata.to_json()))


def _ort_tensor(node: Any, artifact: Path) -> Tensor:
    dtype = _ORT_TYPES.get(node.type)
    if dtype is None:
        raise ArtifactError(f"{artifact}: tensor {node.name!r} has type {node.type}, expected one of "
                            f"{sorted(_ORT_TYPES)} (Triton has no counterpart)")
    return Tensor(node.name, dtype, tuple(d if isinstance(d, int) and d > 0 else -1 for d in node.shape))


def _engine_io(artifact: Path) -> GraphIO:
    from edgecv.runtimes.backends.tensorrt import check_engine_bytes, engine_json_path, read_engine_json

    if not artifact.is_file():
        raise ArtifactError(f"expected a TensorRT engine at {artifact}, found no such file")
    metadata, facts = read_engine_json(artifact)
    check_engine_bytes(artifact.read_bytes(), facts, str(artifact))  # the json must describe this very plan
    if metadata.task != "detect" or list(metadata.outputs) != list(DETECTION_OUTPUTS):
        raise ArtifactError(f"{artifact}: expected a detect engine (outputs {list(DETECTION_OUTPUTS)}) to write its "
                            f"Triton config from the contract, found task {metadata.task!r} outputs {metadata.outputs}; "
                            "write the repository from its ONNX graph instead")
    batch, k = int(metadata.input_shape[0]), int(metadata.max_det)
    inputs = [Tensor(metadata.input_name, _METADATA_TYPES[metadata.input_dtype], tuple(metadata.input_shape))]
    outputs = [Tensor("num_dets", "TYPE_INT32", (batch, 1)), Tensor("boxes", "TYPE_FP32", (batch, k, 4)),
               Tensor("scores", "TYPE_FP32", (batch, k)), Tensor("classes", "TYPE_INT32", (batch, k))]
    profiles = facts.get("profiles") or []
    top = int(profiles[0]["max"][0]) if profiles and isinstance(profiles[0], dict) and profiles[0].get("max") else None
    doc = json.loads(engine_json_path(artifact).read_text())
    return GraphIO(inputs, outputs, metadata, doc, top)


def _batch_of(io: GraphIO, source: Path) -> int:
    """The graph's batch axis: ``-1`` (dynamic) or the fixed size; every tensor must agree."""
    batches = {t.dims[0] if t.dims else None for t in io.inputs + io.outputs}
    if len(batches) != 1 or None in batches:
        listing = ", ".join(f"{t.name} {list(t.dims)}" for t in io.inputs + io.outputs)
        raise ArtifactError(f"{source}: expected one batch axis leading every input and output, found {listing}")
    return batches.pop()


def resolve_max_batch(io: GraphIO, max_batch: int | None, source: Path) -> int:
    """Triton's ``max_batch_size`` for this artifact (see the module docstring).

    Raises:
        OptionError: a negative value, batching asked of a fixed-batch artifact, or above an engine's profile.
    """
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 0):
        raise OptionError(f"max_batch: expected an integer >= 0 (0 = no Triton batching), found {max_batch!r}")
    batch = _batch_of(io, source)
    first = io.inputs[0]
    if batch > 0:
        if max_batch:
            raise OptionError(f"--max-batch {max_batch}: expected 0 for a fixed-batch artifact, found input "
                              f"{first.name!r} with batch {batch} {list(first.dims)} in {source.name}; re-export "
                              "with --dynamic for Triton's batching")
        return 0
    wanted = min(8, io.max_profile_batch or 8) if max_batch is None else max_batch
    if io.max_profile_batch is not None and wanted > io.max_profile_batch:
        raise OptionError(f"--max-batch {wanted}: expected at most {io.max_profile_batch}, the largest batch of "
                          f"{source.name}'s optimisation profile; rebuild the engine with a larger --max-shape")
    return wanted


def build_config(name: str, platform: str, io: GraphIO, max_batch: int, instances: int, kind: str,
                 queue_delay_us: int, threads: int | None = None) -> Any:
    """The ``ModelConfig`` message (Triton's protobuf) for the model folder ``name``."""
    pb2 = model_config_pb2()
    config = pb2.ModelConfig(name=name, max_batch_size=max_batch)
    if platform == "python":
        config.backend = "python"
    else:
        config.platform = platform
    cut = 1 if max_batch > 0 else 0  # batched: Triton's dims leave out the batch axis
    for tensor, field_ in [(t, config.input) for t in io.inputs] + [(t, config.output) for t in io.outputs]:
        field_.add(name=tensor.name, data_type=pb2.DataType.Value(tensor.dtype), dims=list(tensor.dims[cut:]))
    if max_batch > 0:
        config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    kind_value = pb2.ModelInstanceGroup.Kind.Value("KIND_GPU" if kind == "gpu" else "KIND_CPU")
    config.instance_group.add(kind=kind_value, count=instances)
    config.parameters[METADATA_PARAMETER].string_value = io.metadata.to_json()
    if threads is not None:
        config.parameters[THREADS_PARAMETER].string_value = str(threads)
    return config


def _check_options(name: str, instances: int, kind: str, platform: str, queue_delay_us: int,
                   threads: int | None) -> None:
    if not _NAME.match(name):
        raise OptionError(f"name: expected letters, digits, '_', '.' or '-' (a folder name Triton accepts), "
                          f"found {name!r}")
    for label, value, low in (("instances", instances, 1), ("queue_delay_us", queue_delay_us, 0),
                              ("threads", 1 if threads is None else threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise OptionError(f"{label}: expected an integer >= {low}, found {value!r}")
    if kind not in KINDS:
        raise OptionError(f"kind: expected one of {list(KINDS)}, found {kind!r}")
    if platform == "tensorrt_plan" and kind != "gpu":
        raise OptionError("kind: expected 'gpu' for a TensorRT engine (tensorrt_plan runs on GPUs only), found "
                          f"{kind!r}")
    if platform == "tensorrt_plan" and threads is not None:
        raise OptionError(f"threads: expected none for a TensorRT engine (ONNX Runtime's setting), found {threads!r}")
    if platform == "python" and kind != "cpu":
        raise OptionError(f"kind: expected 'cpu' for platform 'python' (edgecv's model.py runs ONNX Runtime on the "
                          f"CPU), found {kind!r}")


def write_triton_repository(artifact: str | os.PathLike[str], repo: str | os.PathLike[str], *,
                            name: str | None = None, max_batch: int | None = None, instances: int = 1,
                            kind: str = "cpu", platform: str | None = None, queue_delay_us: int = 100,
                            threads: int | None = None) -> TritonModel:
    """Write ``artifact`` as the model ``repo/<name>`` (see the module docstring) and check it.

    ``name`` defaults to the metadata's model family (else the file stem). ``kind`` is the instance
    group kind (``cpu`` | ``gpu``), ``instances`` its count. ``platform``: ``None`` (by suffix),
    ``"onnxruntime_onnx"``, ``"tensorrt_plan"`` or ``"python"``. ``threads``: ONNX Runtime intra-op
    threads per instance (parameter :data:`THREADS_PARAMETER`; ``None``: ONNX Runtime's default).

    Raises:
        ArtifactError: missing or non-edgecv artifact; OptionError: a bad option (one line, expected vs found);
        MissingDependencyError: tritonclient missing (``pip install edgecv[triton]``).
    """
    source = Path(artifact)
    chosen = platform_for(source, platform)
    model_config_pb2()  # fail on the missing extra before any work
    io = read_graph_io(source)
    name = name or io.metadata.model_family or source.stem
    _check_options(name, instances, kind, chosen, queue_delay_us, threads)
    batch = resolve_max_batch(io, max_batch, source)
    config = build_config(name, chosen, io, batch, instances, kind, queue_delay_us, threads)
    folder = Path(repo) / name
    target = folder / VERSION / PLATFORMS[chosen]
    write_with(target, lambda tmp: shutil.copyfile(source, tmp))
    if chosen == "tensorrt_plan":
        write_json(target.with_name(target.name + ".json"), io.metadata_doc, indent=2)
    if chosen == "python":
        write_text(folder / VERSION / "model.py", _TRITON_PY.read_text())
    write_json(folder / "edgecv.json", io.metadata_doc, indent=2)
    from google.protobuf import text_format

    write_text(folder / "config.pbtxt", text_format.MessageToString(config))
    check_model_dir(folder)
    return TritonModel(name, folder, chosen, config)


def load_config(model_dir: str | os.PathLike[str]) -> Any:
    """Parse ``model_dir/config.pbtxt`` with Triton's ``ModelConfig`` message.

    Raises:
        ArtifactError: no config, or text that is not a valid ModelConfig.
    """
    from google.protobuf import text_format

    path = Path(model_dir) / "config.pbtxt"
    if not path.is_file():
        raise ArtifactError(f"expected a Triton model config at {path}, found no such file")
    try:
        return text_format.Parse(path.read_text(), model_config_pb2().ModelConfig())
    except text_format.ParseError as exc:
        raise ArtifactError(f"{path}: not a valid Triton ModelConfig: {exc}") from exc


def config_problems(config: Any, io: GraphIO) -> list[str]:
    """Every disagreement between a ``ModelConfig`` and the graph it serves (empty when they agree)."""
    pb2 = model_config_pb2()
    problems: list[str] = []
    batch = _batch_of(io, Path(config.name))
    if config.max_batch_size < 0 or (batch > 0 and config.max_batch_size != 0):
        problems.append(f"max_batch_size: expected 0 for the graph's fixed batch {batch}, found {config.max_batch_size}")
    cut = 1 if config.max_batch_size > 0 else 0
    for kind, declared, graph in (("input", config.input, io.inputs), ("output", config.output, io.outputs)):
        if [t.name for t in declared] != [t.name for t in graph]:
            problems.append(f"{kind} names: expected {[t.name for t in graph]}, found {[t.name for t in declared]}")
            continue
        for tensor, entry in zip(graph, declared):
            dtype = pb2.DataType.Name(entry.data_type)
            if dtype != tensor.dtype:
                problems.append(f"{kind} {tensor.name!r} data_type: expected {tensor.dtype}, found {dtype}")
            if list(entry.dims) != list(tensor.dims[cut:]):
                problems.append(f"{kind} {tensor.name!r} dims: expected {list(tensor.dims[cut:])} (graph "
                                f"{list(tensor.dims)}, max_batch_size {config.max_batch_size}), found {list(entry.dims)}")
    if config.max_batch_size == 0 and config.HasField("dynamic_batching"):
        problems.append("dynamic_batching: expected none with max_batch_size 0 (Triton refuses it)")
    text = config.parameters[METADATA_PARAMETER].string_value if METADATA_PARAMETER in config.parameters else ""
    if not text or json.loads(text) != json.loads(io.metadata.to_json()):
        problems.append(f"parameters[{METADATA_PARAMETER!r}]: expected the artifact's edgecv metadata JSON")
    return problems


def check_model_dir(model_dir: str | os.PathLike[str]) -> Any:
    """Parse ``model_dir``'s config with Triton's protobuf definitions and check it against the artifact in
    its version folder (names, dims, dtypes, batch, metadata). Returns the ``ModelConfig``.

    Raises:
        ArtifactError: every problem found, in one message.
    """
    folder = Path(model_dir)
    config = load_config(folder)
    if config.name != folder.name:
        raise ArtifactError(f"{folder}/config.pbtxt: expected name {folder.name!r} (the folder), found {config.name!r}")
    platform = "python" if config.backend == "python" else config.platform
    if platform not in PLATFORMS:
        raise ArtifactError(f"{folder}/config.pbtxt: expected platform one of {list(PLATFORMS)}, found {platform!r}")
    problems = config_problems(config, read_graph_io(folder / VERSION / PLATFORMS[platform]))
    if problems:
        raise ArtifactError(f"{folder}/config.pbtxt disagrees with its graph: " + "; ".join(problems))
    return config
