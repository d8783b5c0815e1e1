"""Triton backend: a model served by a Triton Inference Server, used like a local artifact.

    with Predictor("grpc://127.0.0.1:8001/yolo", backend="triton") as predictor:   # or http://host:8000/yolo
        dets = predictor(cv2.imread("photo.jpg"))                                   # Detections, as locally

The URL is ``grpc://host:port/<model>[/<version>]`` or ``http://host:port/<model>[/<version>]``
(``backend="auto"`` picks this backend for such URLs). The server runs the raw network: it gets
the pre-processed input tensor ``[B, 3, H, W]`` and returns the artifact's contract tensors (for
detection ``num_dets``, ``boxes``, ``scores``, ``classes``); the client keeps edgecv's
pre- and post-processing, so results are :class:`~edgecv.runtimes.detections.Detections` in
original-image pixels, the same as a local predictor's.

The edgecv metadata comes from the server, in the model-config request every client makes: the
config parameter ``edgecv_metadata`` (``string_value`` = the metadata JSON), which
``edgecv export-triton`` writes (:mod:`edgecv.serve.triton_repo`). A model without it is refused
with an :class:`~edgecv.errors.ArtifactError` that says so.

Batches larger than the model's ``max_batch_size`` are sent in chunks of that size (a dynamic
artifact's predictor sends all images at once); a fixed-batch model (``max_batch_size: 0``) gets
the padded batch the predictor already makes. The device and thread count are the server's
business (the repository's instance groups): ``device`` must be ``None``, ``threads`` is ignored.
Every request has a deadline (``timeout`` seconds, default 30).

``tritonclient`` is imported only when a model is opened (``pip install edgecv[triton]``: the gRPC
client; ``http://`` also needs ``geventhttpclient``, in the same extra).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.errors import ArtifactError, BackendError, MissingDependencyError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.backends.base import ClosesOnExit, NamedTensors

#: Model-config parameter with the edgecv metadata JSON (same name as edgecv.serve.triton_repo's).
METADATA_PARAMETER = "edgecv_metadata"
SCHEMES = ("grpc", "http")
_URL = re.compile(r"^(?P<scheme>[a-z]+)://(?P<host>[^/\s]+:\d+)/(?P<model>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
                  r"(?:/(?P<version>\d+))?/?$")
_NUMPY_TO_TRITON = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16"}
INSTALL_HINT = "pip install edgecv[triton]"


def is_server_url(path: object) -> bool:
    """True for a ``grpc://`` / ``http://`` string (a served model, not a file)."""
    return isinstance(path, str) and path.split("://", 1)[0].lower() in SCHEMES and "://" in path


def parse_url(url: str) -> tuple[str, str, str, str]:
    """``"grpc://host:8001/yolo/2"`` -> ``("grpc", "host:8001", "yolo", "2")`` (version ``""`` = the server's latest).

    Raises:
        BackendError: anything else.
    """
    match = _URL.match(str(url).strip())
    if not match or match.group("scheme") not in SCHEMES:
        raise BackendError(f"backend 'triton': expected a URL like grpc://host:8001/<model>[/<version>] or "
                           f"http://host:8000/<model>, found {url!r}")
    return match.group("scheme"), match.group("host"), match.group("model"), match.group("version") or ""


def _client_module(scheme: str) -> Any:
    try:
        if scheme == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as exc:
        raise MissingDependencyError(f"backend 'triton' ({scheme}://) needs tritonclient, found it not importable "
                                     f"({exc}): {INSTALL_HINT}") from exc
    return module


def _server_errors() -> tuple[type[Exception], ...]:
    """What a client call raises for a server-side or network failure (the HTTP client lets socket errors through)."""
    from tritonclient.utils import InferenceServerException

    return InferenceServerException, OSError


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class TritonBackend(ClosesOnExit, NamedTensors):
    """One model on a Triton server behind the :class:`~edgecv.runtimes.backends.base.Backend` protocol.

    Attributes:
        url: the URL it was opened with; ``path`` is ``Path(url)`` for the protocol's sake.
        config: the model's configuration as a dict (Triton's JSON form of ``ModelConfig``).
        max_batch_size: the model's ``max_batch_size`` (0: no Triton batching, the full shape is sent).
    """

    name = "triton"

    def __init__(self, url: str, module: Any, client: Any, config: dict[str, Any], metadata: ArtifactMetadata,
                 timeout: float) -> None:
        self.url = url
        self.path = Path(url)
        self.scheme, _, self.model, self.version = parse_url(url)
        self._module = module
        self.client: Any = client
        self.config = config
        self.metadata = metadata
        self.timeout = float(timeout)
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self._input_names = [entry["name"] for entry in config.get("input", [])]
        self._output_names = [entry["name"] for entry in config.get("output", [])]

    @classmethod
    def open(cls, url: str, *, device: str | None = None, timeout: float = 30.0) -> TritonBackend:
        """Connect to the model at ``url`` and read its config and edgecv metadata.

        Raises:
            BackendError: a malformed URL, a ``device``, an unreachable server or an unknown model.
            ArtifactError: the model has no (valid) edgecv metadata parameter.
            MissingDependencyError: tritonclient is not installed.
        """
        scheme, host, model, version = parse_url(url)
        if device is not None:
            raise BackendError(f"backend 'triton': expected device None (the server's instance groups choose it), "
                               f"found {device!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise BackendError(f"backend 'triton': expected timeout a number of seconds > 0, found {timeout!r}")
        module = _client_module(scheme)
        if scheme == "grpc":
            client = module.InferenceServerClient(host)
        else:
            client = module.InferenceServerClient(host, connection_timeout=timeout, network_timeout=timeout)
        try:
            config = cls._read_config(scheme, client, model, version, timeout)
            metadata = cls._metadata(config, url)
        except _server_errors() as exc:
            client.close()
            raise BackendError(f"backend 'triton': cannot get model {model!r} from {scheme}://{host}: "
                               f"{_first_line(exc)}") from exc
        except BaseException:
            client.close()
            raise
        return cls(url, module, client, config, metadata, timeout)

    @staticmethod
    def _read_config(scheme: str, client: Any, model: str, version: str, timeout: float) -> dict[str, Any]:
        """The model config as Triton's JSON form (the HTTP client's; the gRPC message converted to it)."""
        if scheme == "http":
            return dict(client.get_model_config(model, version))
        from google.protobuf import json_format

        message = client.get_model_config(model, version, client_timeout=timeout).config
        return json_format.MessageToDict(message, preserving_proto_field_name=True)

    @staticmethod
    def _metadata(config: dict[str, Any], url: str) -> ArtifactMetadata:
        entry = (config.get("parameters") or {}).get(METADATA_PARAMETER) or {}
        text = entry.get("string_value") if isinstance(entry, dict) else None
        if not text:
            found = sorted(config.get("parameters") or {}) or "none"
            raise ArtifactError(f"{url}: expected a model-config parameter {METADATA_PARAMETER!r} with the edgecv "
                                f"metadata, found parameters {found}; write the model repository with "
                                "`edgecv export-triton`")
        return ArtifactMetadata.from_json(text, source=url)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Send ``batch`` (``[B, 3, H, W]``, the artifact's input dtype) and return every output by name.

        Raises:
            BackendError: closed backend, an input dtype Triton cannot take, or the server's error / timeout.
        """
        if self.client is None:
            raise BackendError(f"the triton backend for {self.url} is closed")
        dtype = _NUMPY_TO_TRITON.get(np.dtype(batch.dtype))
        if dtype is None:
            raise BackendError(f"backend 'triton': expected a float32 or float16 input, found {batch.dtype}")
        step = self.max_batch_size if self.max_batch_size > 0 else len(batch)
        parts = [self._infer_chunk(batch[first:first + step], dtype) for first in range(0, len(batch), max(step, 1))]
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([part[name] for part in parts]) for name in self._output_names}

    def _infer_chunk(self, chunk: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
        module = self._module
        tensor = module.InferInput(self._input_names[0], list(chunk.shape), dtype)
        tensor.set_data_from_numpy(np.ascontiguousarray(chunk))
        wanted = [module.InferRequestedOutput(name) for name in self._output_names]
        extra = {"client_timeout": self.timeout} if self.scheme == "grpc" else {}
        try:
            result = self.client.infer(self.model, [tensor], model_version=self.version, outputs=wanted, **extra)
        except _server_errors() as exc:
            raise BackendError(f"triton model {self.model!r} at {self.url} failed on input {list(chunk.shape)} "
                               f"{chunk.dtype}: {_first_line(exc)}") from exc
        return {name: result.as_numpy(name) for name in self._output_names}

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self.client is not None:
            self.client.close()
            self.client = None
