"""OpenVINO backend: runs the same edgecv ``.onnx`` artifact (fp32, fp16 or int8 QDQ) on an x86/ARM CPU.

* The ONNX file is read by OpenVINO's own ONNX frontend (no ``onnx`` package, no torch); the
  edgecv metadata comes from the model's ``rt_info["framework"]["edgecv"]``, where the frontend
  puts every ONNX ``metadata_props`` entry.
* Compiled for ``CPU`` with ``PERFORMANCE_HINT=LATENCY`` (one stream, all ``threads`` on one
  request). ``precision=None`` leaves ``INFERENCE_PRECISION_HINT`` to the device: bf16 on CPUs
  with AVX512-BF16 or AMX, f32 elsewhere. ``precision="f32"`` (or ``"bf16"``, ``"f16"``) forces it.
  int8 QDQ graphs run as int8 (OpenVINO's low-precision transformations fold the Q/DQ pairs).
* Thread-safe: every calling thread gets its own ``InferRequest`` (created on first use) on the
  shared compiled model, so two threads never share output buffers; outputs are copied out.
* Conformance (``tests/runtimes/test_conformance.py``): detections vs ONNX Runtime fp32 matched
  at IoU >= 0.9, same class, |score diff| <= 0.05 in bf16 (<= 1e-3 with ``precision="f32"``).

``pip install edgecv[openvino]`` installs the dependency; without it, opening this backend raises
:class:`~edgecv.errors.MissingDependencyError` naming that extra.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.errors import ArtifactError, BackendError, MissingDependencyError
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.runtimes.backends.base import (ClosesOnExit, check_artifact_file, check_threads, describe_file,
                                           parse_device)

#: ``precision=`` values -> OpenVINO ``INFERENCE_PRECISION_HINT`` strings.
PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}


def import_openvino() -> Any:
    """``import openvino`` or a :class:`MissingDependencyError` naming the extra."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependencyError(
            "backend 'openvino' needs the openvino package, found it not installed: "
            "pip install edgecv[openvino]"
        ) from exc
    return openvino


def compile_config(precision: str | None, threads: int | None) -> dict[str, str]:
    """The ``compile_model`` properties for ``precision`` / ``threads`` (pure, tested without OpenVINO).

    Raises:
        BackendError: an unknown precision.
    """
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        key = str(precision).strip().lower()
        if key not in PRECISIONS:
            raise BackendError(f"openvino precision: expected None or one of {sorted(set(PRECISIONS))}, "
                               f"found {precision!r}")
        config["INFERENCE_PRECISION_HINT"] = PRECISIONS[key]
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return config


def read_metadata(model: Any, path: Path) -> ArtifactMetadata:
    """The edgecv metadata of an ``openvino.Model`` read from an ONNX file.

    Raises:
        ArtifactError: the model carries no edgecv metadata.
    """
    text = None
    if model.has_rt_info(["framework", METADATA_KEY]):
        try:
            text = model.get_rt_info(["framework", METADATA_KEY]).astype(str)
        except RuntimeError:
            text = None
    if text is None:
        raise ArtifactError(
            f"{path} is an ONNX model but not an edgecv export: expected a {METADATA_KEY!r} entry in its "
            "metadata_props, found none; create an artifact with `edgecv export`"
        )
    return ArtifactMetadata.from_json(text, source=str(path))


def _port_name(port: Any, wanted: set[str]) -> str:
    """The ONNX graph name of a port: a tensor can carry several names (the graph output plus the
    name of the node that produced it); prefer the one the metadata knows."""
    names = sorted(port.get_names())
    return next((name for name in names if name in wanted), port.get_any_name())


class OpenVinoBackend(ClosesOnExit):
    """An OpenVINO ``CompiledModel`` behind the :class:`~edgecv.runtimes.backends.base.Backend` protocol."""

    name = "openvino"

    def __init__(self, path: Path, compiled: Any, metadata: ArtifactMetadata, config: dict[str, str]) -> None:
        self.path = path
        self.compiled: Any | None = compiled
        self.metadata = metadata
        self.config = dict(config)
        wanted = {metadata.input_name, *metadata.outputs}
        self._input_names = [_port_name(port, wanted) for port in compiled.inputs]
        self._output_names = [_port_name(port, wanted) for port in compiled.outputs]
        self._local = threading.local()
        self._lock = threading.Lock()
        self._requests: list[Any] = []

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, device: str = "cpu", threads: int | None = None,
             precision: str | None = None) -> OpenVinoBackend:
        """Read and compile the ONNX artifact at ``path`` for the CPU.

        Raises:
            ArtifactError: missing file, not an ONNX model, or no edgecv metadata.
            BackendError: a device other than ``cpu``, bad ``threads`` or ``precision``.
            MissingDependencyError: openvino is not installed.
        """
        file = Path(path)
        check_threads(threads)
        kind, _ = parse_device(device)
        if kind != "cpu":
            raise BackendError(f"backend 'openvino' runs on device 'cpu', found {device!r}; "
                               "use backend 'onnxruntime' or 'tensorrt' for CUDA")
        config = compile_config(precision, threads)
        ov = import_openvino()
        check_artifact_file(file)
        core = ov.Core()
        try:
            model = core.read_model(str(file))
        except RuntimeError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ArtifactError(f"expected an ONNX model at {file}, found {describe_file(file)} "
                                f"(openvino: {reason})") from exc
        metadata = read_metadata(model, file)
        if metadata.precision == "int8" and metadata.calibration.get("target") == "tensorrt":
            # Measured: the signed-activation graph lost 7 mAP points on OpenVINO (fine in ONNX Runtime).
            warnings.warn(f"{file} is an int8 graph for target 'tensorrt' (signed activations); OpenVINO "
                          "runs it with reduced accuracy. Quantize with --target openvino for this backend.",
                          UserWarning, stacklevel=3)
        try:
            compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise BackendError(f"openvino cannot compile {file} for CPU with {config}: {str(exc).strip()}") from exc
        return cls(file, compiled, metadata, config)

    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)

    @property
    def inference_precision(self) -> str:
        """The precision the device actually runs (``"bf16"``, ``"f32"``, ``"f16"``)."""
        if self.compiled is None:
            return ""
        name = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        short = {"bfloat16": "bf16", "float32": "f32", "float16": "f16"}
        return next((v for k, v in short.items() if k in name), name)

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            if self.compiled is None:
                raise BackendError(f"the openvino backend for {self.path} is closed")
            request = self.compiled.create_infer_request()
            self._local.request = request
            with self._lock:
                self._requests.append(request)
        return request

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``batch`` on this thread's infer request; return copies of every output by name.

        Raises:
            BackendError: the backend is closed or OpenVINO rejects the input / fails.
        """
        if self.compiled is None:
            raise BackendError(f"the openvino backend for {self.path} is closed")
        request = self._request()
        try:
            request.infer({0: np.ascontiguousarray(batch)}, share_inputs=True)
        except RuntimeError as exc:
            expected = self.compiled.inputs[0].get_partial_shape()
            raise BackendError(
                f"openvino failed on {self.path}: input {self._input_names[0]!r} expected shape {expected}, "
                f"found {list(batch.shape)} {batch.dtype}: {str(exc).strip()}"
            ) from exc
        return {name: np.array(request.get_output_tensor(i).data, copy=True)
                for i, name in enumerate(self._output_names)}

    def close(self) -> None:
        """Release the compiled model and infer requests (idempotent)."""
        with self._lock:
            self._requests.clear()
        self._local = threading.local()
        self.compiled = None
