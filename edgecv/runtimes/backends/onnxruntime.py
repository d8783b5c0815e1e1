"""ONNX Runtime backend: runs an edgecv ``.onnx`` artifact (fp32, fp16 or int8 QDQ) on CPU or GPU.

Devices:

* ``"cpu"``: ``CPUExecutionProvider``.
* ``"cuda"`` / ``"cuda:N"``: ``TensorrtExecutionProvider`` first when this ONNX Runtime
  build has it (engines cached under ``$XDG_CACHE_HOME/edgecv/ort-tensorrt`` so only the
  first run builds them), then ``CUDAExecutionProvider``, then CPU for nodes neither
  supports. Needs the ``onnxruntime-gpu`` package; without it a
  :class:`~edgecv.errors.MissingDependencyError` says so (no silent CPU fallback).

Sessions use ``ORT_ENABLE_ALL`` graph optimisations unless ``graph_optimization`` says
otherwise (``"all"``, ``"extended"``, ``"basic"``, ``"disable"``); ``threads`` sets
``intra_op_num_threads``. The edgecv metadata is read from the model's ``metadata_props``
(``custom_metadata_map``).

IO binding: on a CUDA device (``io_binding=None`` -> on) the input is bound from host memory
and outputs are bound to CPU memory, so ONNX Runtime copies device results straight into the
arrays returned, without its per-run output allocation on the device side and a second host copy.
On the CPU it saves nothing (``run`` already hands over the same buffers), so it is off there
unless ``io_binding=True`` is passed (which the tests use to keep the path checked on a CPU).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from edgecv.errors import ArtifactError, BackendError, MissingDependencyError
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.runtimes.backends.base import (ClosesOnExit, NamedTensors, check_artifact_file, check_threads,
                                           describe_file, parse_device)

#: Everything ONNX Runtime raises from its C++ core (they derive from Exception directly).
ORT_ERRORS: tuple[type[Exception], ...] = tuple(
    value for value in vars(ort_state).values() if isinstance(value, type) and issubclass(value, Exception)
) + (RuntimeError,)


def providers_for(device: str, available: list[str]) -> list[Any]:
    """ONNX Runtime provider list for ``device`` given the ``available`` providers.

    Raises:
        BackendError: a device string that is not ``cpu`` / ``cuda[:N]``.
        MissingDependencyError: ``cuda`` asked for but this ONNX Runtime has no GPU provider.
    """
    kind, index = parse_device(device)
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgecv" / "ort-tensorrt"
        providers.append(("TensorrtExecutionProvider", {
            "device_id": index, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
        }))
    if "CUDAExecutionProvider" in available:
        providers.append(("CUDAExecutionProvider", {"device_id": index}))
    if not providers:
        raise MissingDependencyError(
            f"device {device!r} needs ONNX Runtime's CUDA or TensorRT execution provider, found only {available}; "
            "install the GPU build: pip uninstall onnxruntime && pip install onnxruntime-gpu"
        )
    return [*providers, "CPUExecutionProvider"]


#: ``graph_optimization=`` values -> ONNX Runtime levels.
GRAPH_OPTIMIZATION = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


#: Domain of edgecv's plugin nodes (their CPU twins are onnxruntime-extensions Python ops).
PLUGIN_DOMAIN = "ai.onnx.contrib"


def _session_options(threads: int | None, graph_optimization: str = "all", spinning: bool = True) -> ort.SessionOptions:
    level = GRAPH_OPTIMIZATION.get(str(graph_optimization).strip().lower())
    if level is None:
        raise BackendError(f"graph_optimization: expected one of {list(GRAPH_OPTIMIZATION)}, "
                           f"found {graph_optimization!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 3  # errors only: QDQ graphs make ORT log one warning per unused initializer
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spinning:  # idle intra-op threads sleep instead of busy-waiting: they leave the cores to
        # the decode / draw / encode threads of a stream (and to a robot's own loop)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _create_session(path: Path, options: ort.SessionOptions, providers: list[Any],
                    twins: bool = False) -> ort.InferenceSession:
    """Open the session; translate ONNX Runtime's load errors into :class:`ArtifactError`.

    A graph with edgecv plugin nodes (``model.trt.onnx`` from ``--plugins``; domain
    ``ai.onnx.contrib``) is retried once with the plugins' CPU twins registered
    (:func:`edgecv.plugins.twins.session_options`; numpy + onnxruntime-extensions, no torch).
    """
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except ORT_ERRORS as exc:
        if not twins and PLUGIN_DOMAIN in str(exc):
            from edgecv.plugins.twins import session_options

            return _create_session(path, session_options(options=options), providers, twins=True)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if isinstance(exc, (ort_state.InvalidProtobuf, ort_state.InvalidArgument)):
            raise ArtifactError(f"expected an ONNX model at {path}, found {describe_file(path)} "
                                f"(onnxruntime: {reason})") from exc
        raise ArtifactError(f"ONNX Runtime cannot load the ONNX model at {path}: {reason}") from exc


def read_metadata(session: ort.InferenceSession, path: Path) -> ArtifactMetadata:
    """Parse the edgecv metadata of an opened session.

    Raises:
        ArtifactError: the model carries no edgecv metadata (not an edgecv export) or it is invalid.
    """
    props = session.get_modelmeta().custom_metadata_map
    text = props.get(METADATA_KEY)
    if text is None:
        raise ArtifactError(
            f"{path} is an ONNX model but not an edgecv export: expected a {METADATA_KEY!r} entry in its "
            f"metadata_props, found {sorted(props) or 'none'}; create an artifact with `edgecv export`"
        )
    return ArtifactMetadata.from_json(text, source=str(path))


class OnnxRuntimeBackend(ClosesOnExit, NamedTensors):
    """An ``onnxruntime.InferenceSession`` behind the :class:`~edgecv.runtimes.backends.base.Backend` protocol."""

    name = "onnxruntime"

    def __init__(self, path: Path, session: ort.InferenceSession, metadata: ArtifactMetadata,
                 io_binding: bool = False) -> None:
        self.path = path
        self.io_binding = bool(io_binding)
        self.session: ort.InferenceSession | None = session
        self.metadata = metadata
        self._input_names = [node.name for node in session.get_inputs()]
        self._output_names = [node.name for node in session.get_outputs()]
        self._input_shapes = [list(node.shape) for node in session.get_inputs()]

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, device: str = "cpu", threads: int | None = None,
             graph_optimization: str = "all", io_binding: bool | None = None,
             spinning: bool = True) -> OnnxRuntimeBackend:
        """Load the artifact at ``path`` for ``device``.

        ``io_binding=None`` turns IO binding on for CUDA devices only (see the module docstring).
        ``spinning=False`` stops idle intra-op threads busy-waiting (ONNX Runtime spins by default:
        fastest for a bare inference loop, but it takes the cores other threads need).

        Raises:
            ArtifactError: missing file, not an ONNX model, or an ONNX model without edgecv metadata.
            BackendError: a bad ``device`` or ``threads`` value.
            MissingDependencyError: ``device="cuda"`` without onnxruntime-gpu.
        """
        file = Path(path)
        check_threads(threads)
        providers = providers_for(device, ort.get_available_providers())
        check_artifact_file(file)
        options = _session_options(threads, graph_optimization, bool(spinning))
        session = _create_session(file, options, providers)
        if io_binding is None:
            io_binding = parse_device(device)[0] == "cuda"
        return cls(file, session, read_metadata(session, file), io_binding=io_binding)

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, in priority order."""
        return [] if self.session is None else list(self.session.get_providers())

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``batch`` (the single model input) and return every output by name.

        Raises:
            BackendError: the session is closed or ONNX Runtime rejects the input / fails.
        """
        if self.session is None:
            raise BackendError(f"the onnxruntime backend for {self.path} is closed")
        try:
            if self.io_binding:
                binding = self.session.io_binding()  # one per call: thread-safe, nothing shared
                binding.bind_cpu_input(self._input_names[0], np.ascontiguousarray(batch))
                for name in self._output_names:
                    binding.bind_output(name, "cpu")
                self.session.run_with_iobinding(binding)
                outputs = binding.copy_outputs_to_cpu()
            else:
                outputs = self.session.run(None, {self._input_names[0]: batch})
        except ORT_ERRORS as exc:
            raise BackendError(
                f"onnxruntime failed on {self.path}: input {self._input_names[0]!r} expected shape "
                f"{self._input_shapes[0]}, found {list(batch.shape)} {batch.dtype}: {str(exc).strip()}"
            ) from exc
        return dict(zip(self._output_names, outputs))

    def close(self) -> None:
        """Release the session (idempotent)."""
        self.session = None
