"""``edgecv.serve.serve(model, ...)``: deploy an artifact on Ray Serve in one call.

    from edgecv.serve import serve
    with serve("model.onnx", replicas=2, max_batch=8, port=8000) as app:
        print(app.url)                          # http://127.0.0.1:8000  (POST /predict, GET /health)
        doc = app.predict(cv2.imread("a.jpg"))  # the edgecv.result/1 document, via the Python handle

**Batching and the artifact's batch axis.** ``@serve.batch`` gathers up to ``max_batch`` requests
into one ``Predictor.predict_batch`` call; whether that runs as one inference depends on the graph:

* a ``--dynamic`` artifact (batch axis symbolic): one inference of up to ``max_batch`` images;
* a fixed batch B > 1: ``max_batch`` must be B (the predictor pads a short batch to B); anything
  else is refused with an :class:`~edgecv.errors.OptionError` before any replica starts;
* a fixed batch 1: batching is impossible; ``max_batch`` > 1 falls back to one image per call with
  a :class:`BatchingWarning` (export with ``--dynamic`` to batch).

Artifacts that are not files (e.g. a remote backend's URL) are checked by the replica itself.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from edgecv.errors import EdgecvError, OptionError
from edgecv.serve.cluster import LOCALHOST, ClusterError, check_bind, start_cluster, start_http, stop_cluster
from edgecv.serve.http_input import DEFAULT_MAX_BODY_BYTES, DEFAULT_SERVE_MAX_PIXELS

DEFAULT_APP = "edgecv"
REQUEST_TIMEOUT_S = 60.0  # a handle call that waits longer than this raises instead of hanging


class BatchingWarning(UserWarning):
    """``max_batch`` cannot be honoured by the artifact's batch axis; requests run one by one."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{name}: expected an integer >= 1, found {value!r}")
    return value


def plan_batching(artifact_batch: int | None, max_batch: int, where: str = "the artifact") -> tuple[int, str]:
    """``(effective max batch, one-line description)`` for an artifact whose batch axis is
    ``artifact_batch`` (``None``: dynamic); see the module docstring.

    Raises:
        OptionError: a fixed batch B > 1 and ``max_batch`` != B.
    """
    max_batch = _positive_int("max_batch", max_batch)
    if artifact_batch is None:
        return max_batch, f"dynamic batching: up to {max_batch} images per inference ({where} has a dynamic batch axis)"
    if artifact_batch == max_batch:
        return max_batch, f"dynamic batching: {max_batch} images per inference ({where}'s fixed batch)"
    if artifact_batch == 1:
        warnings.warn(f"max_batch {max_batch}: {where} has a fixed batch of 1, so requests run one image per "
                      "inference (export with --dynamic to batch)", BatchingWarning, stacklevel=3)
        return 1, f"no batching: one image per inference ({where} has a fixed batch of 1)"
    raise OptionError(f"max_batch: expected {artifact_batch} ({where}'s fixed batch) or an artifact exported "
                      f"with --dynamic, found {max_batch}")


def artifact_batch(model: str | os.PathLike[str]) -> int | None | str:
    """The batch axis of the artifact file at ``model`` (``None``: dynamic), or ``"unknown"`` for
    what is not a local file (the replicas' Predictor then checks it)."""
    path = Path(model)
    if not path.is_file():
        return "unknown"
    from edgecv.runtimes.info import artifact_info

    batch = int(artifact_info(path).metadata.input_shape[0])
    return batch if batch > 0 else None


@dataclass
class ServeConfig:
    """What one ``edgecv serve`` deploys (see :func:`serve` for the meaning of each field)."""

    replicas: int = 1
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    host: str = LOCALHOST
    port: int = 8000
    max_ongoing_requests: int | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_pixels: int | None = DEFAULT_SERVE_MAX_PIXELS
    app_name: str = DEFAULT_APP

    def check(self) -> None:
        _positive_int("replicas", self.replicas)
        _positive_int("max_batch", self.max_batch)
        _positive_int("max_body_bytes", self.max_body_bytes)
        if self.max_ongoing_requests is not None:
            _positive_int("max_ongoing_requests", self.max_ongoing_requests)
        if isinstance(self.batch_wait_ms, bool) or not isinstance(self.batch_wait_ms, (int, float)) \
                or not 0 <= self.batch_wait_ms <= 10_000:
            raise OptionError(f"batch_wait_ms: expected milliseconds in [0, 10000], found {self.batch_wait_ms!r}")
        check_bind(self.host, self.port)

    @property
    def ongoing(self) -> int:
        """Requests one replica accepts at once: by default two full batches (one running, one gathering)."""
        return self.max_ongoing_requests or 2 * self.max_batch


class ServeHandle:
    """A running application: its HTTP ``url``, the Serve ``handle`` for in-cluster callers, and
    :meth:`shutdown` (also on leaving a ``with`` block)."""

    def __init__(self, handle: Any, config: ServeConfig, batching: str, owns_cluster: bool) -> None:
        self.handle = handle  # ray.serve.handle.DeploymentHandle of EdgecvModel
        self.config = config
        self.batching = batching
        self.owns_cluster = owns_cluster
        self.url = f"http://{config.host}:{config.port}"
        self._closed = False

    @property
    def app_name(self) -> str:
        return self.config.app_name

    def predict(self, image: np.ndarray | bytes, timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """One image (BGR uint8 ``[H, W, 3]`` or encoded bytes) -> its ``edgecv.result/1`` document."""
        return self.handle.predict.remote(image).result(timeout_s=timeout)

    def health(self, timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """One replica's health document (pid, rss_mb, served, batches, ...)."""
        return self.handle.health.remote().result(timeout_s=timeout)

    def shutdown(self) -> None:
        """Delete the application; stop Serve and Ray too when :func:`serve` started them (idempotent)."""
        if not self._closed:
            self._closed = True
            stop_cluster(self.owns_cluster, self.config.app_name)

    def __enter__(self) -> ServeHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"ServeHandle({self.url!r}, app={self.app_name!r}, replicas={self.config.replicas}, {self.batching})"


def serve(model: str | os.PathLike[str], *, replicas: int = 1, max_batch: int = 8, batch_wait_ms: float = 5.0,
          port: int = 8000, host: str = LOCALHOST, backend: str = "auto", device: str | None = None,
          threads: int | None = None, conf: float | None = None, max_ongoing_requests: int | None = None,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_pixels: int | None = DEFAULT_SERVE_MAX_PIXELS,
          app_name: str = DEFAULT_APP, num_cpus: int | None = None) -> ServeHandle:
    """Deploy ``model`` on Ray Serve and return when every replica is up.

    Args:
        model: an edgecv artifact (``.onnx``, ``.engine``) or what ``backend`` takes.
        replicas: replicas, each holding one ``Predictor(model, backend=, device=, threads=, conf=)``.
        max_batch / batch_wait_ms: ``@serve.batch`` size and wait (see the module docstring).
        port / host: the HTTP endpoint (127.0.0.1 by default; another host warns).
        max_ongoing_requests: requests one replica takes at once (default ``2 * max_batch``);
            Serve queues the rest at the proxy.
        max_body_bytes / max_pixels: the largest request body and decoded image accepted (413 beyond).
        num_cpus: CPUs the local Ray node advertises when this call starts it (default: all).

    Starts a local Ray (127.0.0.1, no dashboard) unless one is running in this process or
    ``RAY_ADDRESS`` names one; :meth:`ServeHandle.shutdown` stops what this call started.

    Raises:
        OptionError: a bad option or a ``max_batch`` the artifact's batch axis cannot take.
        ArtifactError / BackendError: from the artifact check or the replicas' Predictor.
        MissingDependencyError: Ray Serve is not installed (``pip install 'edgecv[serve]'``).
    """
    config = ServeConfig(replicas, max_batch, batch_wait_ms, host, port, max_ongoing_requests, max_body_bytes,
                         max_pixels, app_name)
    config.check()
    batch = artifact_batch(model)
    if batch == "unknown":
        effective, batching = config.max_batch, f"up to {config.max_batch} images per call (batch axis checked by the replicas)"
    else:
        effective, batching = plan_batching(batch, config.max_batch, Path(model).name)
    predictor_options = {"backend": backend, "device": device, "threads": threads, "conf": conf}
    owned = start_cluster(num_cpus)
    try:
        start_http(config.host, config.port)
        handle = _deploy(str(model), config, effective, predictor_options)
    except EdgecvError:
        stop_cluster(owned, None)
        raise
    except Exception as exc:  # Ray's errors (a replica's constructor failing, a proxy that died): one line
        stop_cluster(owned, None)
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise ClusterError(f"Ray Serve: expected {config.app_name!r} to start, found {type(exc).__name__}: "
                           f"{lines[-1][:300] if lines else ''}") from exc
    except BaseException:
        stop_cluster(owned, None)
        raise
    return ServeHandle(handle, config, batching, owned)


def _deploy(model: str, config: ServeConfig, max_batch: int, predictor_options: dict[str, Any]) -> Any:
    from ray import serve as ray_serve

    from edgecv.serve.deployment import EdgecvModel

    deployment = ray_serve.deployment(
        EdgecvModel, name="EdgecvModel", num_replicas=config.replicas, max_ongoing_requests=config.ongoing,
        # replicas claim no CPU from Ray's scheduler: the backend's threads are set by `threads`, and
        # a 2-core machine could otherwise not place 2 replicas beside the camera actors
        ray_actor_options={"num_cpus": 0}, health_check_period_s=2.0, health_check_timeout_s=30.0)
    app = deployment.bind(model, predictor_options, max_batch, config.batch_wait_ms / 1e3, config.max_body_bytes,
                          config.max_pixels)
    return ray_serve.run(app, name=config.app_name, route_prefix="/")
