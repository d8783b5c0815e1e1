"""OpenVINO backend: runs the same edgecv ``.onnx`` artifact (fp32, fp16 or int8 QDQ) on an x86/ARM CPU.

* The ONNX file is read by OpenVINO's own ONNX frontend (no ``onnx`` package, no torch); the
  edgecv metadata comes from the model's ``rt_info["framework"]["edgecv"]``, where the frontend
  puts every ONNX ``metadata_props`` entry.
* Compiled for ``CPU`` with ``PERFORMANCE_HINT=LATENCY`` (one stream, all ``threads`` on one
  request). ``precision=None`` leaves ``INFERENCE_PRECISION_HINT`` to the device: bf16 on CPUs
  with AVX512-BF16 or AMX, f32 elsewhere. ``precision="f32"`` (or ``"bf16"``, ``"f16"``) forces it.
  int8 QDQ graphs run as int8 (OpenVINO's low-precision transformations fold the Q/DQ pairs).
* Thread-safe with bounded memory: calling threads borrow an ``InferRequest`` from a fixed pool
  (:class:`RequestPool`, ``requests`` of them, created on first need) and return it after the
  outputs are copied out, so two threads never share output buffers and a thousand short-lived
  threads cost no more than ``requests`` requests (one request per thread, kept forever, grew RSS
  by 1.2 GB over 1,000 threads at 320 px: ``tools/rss_threads.py``). A thread finding every
  request busy waits for one.
* Conformance (``tests/runtimes/test_conformance.py``): detections vs ONNX Runtime fp32 matched
  at IoU >= 0.9, same class, |score diff| <= 0.05 in bf16 (<= 1e-3 with ``precision="f32"``).

``pip install edgecv[openvino]`` installs the dependency; without it, opening this backend raises
:class:`~edgecv.errors.MissingDependencyError` naming that extra.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgecv.errors import ArtifactError, BackendError, MissingDependencyError
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.runtimes.backends.base import (ClosesOnExit, NamedTensors, check_artifact_file, check_threads,
                                           describe_file, parse_device)

#: ``precision=`` values -> OpenVINO ``INFERENCE_PRECISION_HINT`` strings.
PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}

#: Default size of the infer-request pool. The model is compiled with one stream
#: (``PERFORMANCE_HINT=LATENCY``), so more requests than callers that can usefully overlap only
#: hold memory; two let one thread copy its outputs / pre-process while another infers.
DEFAULT_REQUESTS = 2


def check_requests(requests: int | None) -> int:
    """The pool size for ``requests`` (``None``: :data:`DEFAULT_REQUESTS`).

    Raises:
        BackendError: not a positive int.
    """
    if requests is None:
        return DEFAULT_REQUESTS
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise BackendError(f"openvino requests: expected a positive integer (infer-request pool size) or None, "
                           f"found {requests!r}")
    return requests


class RequestPool:
    """At most ``size`` objects made by ``create`` (infer requests), lent to one thread at a time.

    ``with pool.borrow() as request:`` takes a free request (the most recently returned one, whose
    buffers are warm), makes a new one while fewer than ``size`` exist, or waits for one. After
    :meth:`close`, borrowing raises :class:`BackendError` and returned requests are dropped.
    """

    def __init__(self, create: Callable[[], Any], size: int, what: str) -> None:
        self._create = create
        self.size = size
        self._what = what
        self._free: list[Any] = []
        self.created = 0
        self._closed = False
        self._cond = threading.Condition()

    def _take(self) -> Any | None:
        """A free request, or ``None`` after reserving a slot for a new one (the caller creates it)."""
        with self._cond:
            while not self._free and self.created >= self.size and not self._closed:
                self._cond.wait()
            if self._closed:
                raise BackendError(f"{self._what} is closed")
            if self._free:
                return self._free.pop()
            self.created += 1
            return None

    def _give_back(self, request: Any | None) -> None:
        with self._cond:
            if request is None:  # creation failed: free the reserved slot
                self.created -= 1
            elif not self._closed:
                self._free.append(request)
            self._cond.notify()

    def acquire(self) -> Any:
        """Take a request (made here if the pool may still grow); hand it back with :meth:`release`."""
        request = self._take()
        if request is None:
            try:
                request = self._create()
            except BaseException:
                self._give_back(None)
                raise
        return request

    def release(self, request: Any) -> None:
        """Return a request taken with :meth:`acquire`."""
        self._give_back(request)

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Any]:
        """Lend one request for the duration of the ``with`` block."""
        request = self._take()
        try:
            if request is None:
                request = self._create()  # outside the lock: compiling buffers takes a while
            yield request
        finally:
            self._give_back(request)

    def close(self) -> None:
        """Drop every free request and wake waiting threads (they raise BackendError)."""
        with self._cond:
            self._closed = True
            self._free.clear()
            self._cond.notify_all()


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


class OpenVinoBackend(ClosesOnExit, NamedTensors):
    """An OpenVINO ``CompiledModel`` behind the :class:`~edgecv.runtimes.backends.base.Backend` protocol."""

    name = "openvino"

    def __init__(self, path: Path, compiled: Any, metadata: ArtifactMetadata, config: dict[str, str],
                 requests: int | None = None) -> None:
        self.path = path
        self.compiled: Any | None = compiled
        self.metadata = metadata
        self.config = dict(config)
        wanted = {metadata.input_name, *metadata.outputs}
        self._input_names = [_port_name(port, wanted) for port in compiled.inputs]
        self._output_names = [_port_name(port, wanted) for port in compiled.outputs]
        self.requests = RequestPool(compiled.create_infer_request, check_requests(requests),
                                    f"the openvino backend for {path}")

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, device: str = "cpu", threads: int | None = None,
             precision: str | None = None, requests: int | None = None) -> OpenVinoBackend:
        """Read and compile the ONNX artifact at ``path`` for the CPU.

        ``requests`` is the size of the infer-request pool shared by calling threads (``None``:
        :data:`DEFAULT_REQUESTS`); raise it when more threads than that call concurrently and the
        device has the cores to overlap them.

        Raises:
            ArtifactError: missing file, not an ONNX model, or no edgecv metadata.
            BackendError: a device other than ``cpu``, bad ``threads``, ``precision`` or ``requests``.
            MissingDependencyError: openvino is not installed.
        """
        file = Path(path)
        check_threads(threads)
        check_requests(requests)
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
        return cls(file, compiled, metadata, config, requests)

    @property
    def inference_precision(self) -> str:
        """The precision the device actually runs (``"bf16"``, ``"f32"``, ``"f16"``)."""
        if self.compiled is None:
            return ""
        name = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        short = {"bfloat16": "bf16", "float32": "f32", "float16": "f16"}
        return next((v for k, v in short.items() if k in name), name)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``batch`` ``[B, 3, H, W]`` on a pooled infer request; return copies of every output by name.

        Raises:
            BackendError: the backend is closed or OpenVINO rejects the input / fails.
        """
        compiled = self.compiled
        if compiled is None:
            raise BackendError(f"the openvino backend for {self.path} is closed")
        with self.requests.borrow() as request:
            try:
                request.infer({0: np.ascontiguousarray(batch)}, share_inputs=True)
            except RuntimeError as exc:
                expected = compiled.inputs[0].get_partial_shape()
                raise BackendError(
                    f"openvino failed on {self.path}: input {self._input_names[0]!r} expected shape {expected}, "
                    f"found {list(batch.shape)} {batch.dtype}: {str(exc).strip()}"
                ) from exc
            # copied before the request goes back to the pool: its buffers are the next borrower's
            return {name: np.array(request.get_output_tensor(i).data, copy=True)
                    for i, name in enumerate(self._output_names)}

    def submit(self, batch: np.ndarray) -> Callable[[], dict[str, np.ndarray]]:
        """Start ``batch`` ``[B, 3, H, W]`` on a pooled request (OpenVINO's ``start_async``) and return
        at once; call the returned function exactly once to wait for the outputs (copies, by name).

        Lets a pipeline keep up to ``requests`` inferences in flight: the next frame is handed over
        while the previous one runs. ``batch`` must not be changed until the outputs are back
        (the request reads it in place).

        Raises:
            BackendError: the backend is closed or OpenVINO rejects the input (here or when waiting).
        """
        if self.compiled is None:
            raise BackendError(f"the openvino backend for {self.path} is closed")
        request = self.requests.acquire()
        batch = np.ascontiguousarray(batch)
        try:
            request.start_async({0: batch}, share_inputs=True)
        except RuntimeError as exc:
            self.requests.release(request)
            raise self._failure(batch, exc) from exc

        def wait() -> dict[str, np.ndarray]:
            try:
                request.wait()
                return {name: np.array(request.get_output_tensor(i).data, copy=True)
                        for i, name in enumerate(self._output_names)}
            except RuntimeError as exc:
                raise self._failure(batch, exc) from exc
            finally:
                self.requests.release(request)
        return wait

    def _failure(self, batch: np.ndarray, exc: RuntimeError) -> BackendError:
        expected = self.compiled.inputs[0].get_partial_shape() if self.compiled is not None else "?"
        return BackendError(f"openvino failed on {self.path}: input {self._input_names[0]!r} expected shape "
                            f"{expected}, found {list(batch.shape)} {batch.dtype}: {str(exc).strip()}")

    def close(self) -> None:
        """Release the compiled model and infer requests (idempotent)."""
        self.requests.close()
        self.compiled = None
