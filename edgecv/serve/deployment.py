"""The Ray Serve deployment: each replica holds one :class:`~edgecv.runtimes.predictor.Predictor`.

Routes (the application is mounted at ``/``):

* ``POST /predict`` (or ``POST /``): body = an encoded image (``image/jpeg``, ``image/png``,
  ``image/*``, ``application/octet-stream``) or ``multipart/form-data`` with one file part ->
  ``200`` and the ``edgecv.result/1`` document of the artifact's task (the same dict as a line of
  ``predictions.jsonl`` without its ``name``: ``{"schema", "boxes": [[x1, y1, x2, y2], ...]`` in
  original pixels, ``"scores", "class_ids", "labels"}``; ``masks`` / ``semantic`` by task).
  Refused requests get a 4xx and ``{"error": "<one line>"}`` (:mod:`edgecv.serve.http_input`).
* ``GET /health`` -> ``{"status": "ok", "pid", "rss_mb", "served", "batches", "max_batch", ...}``.

In-cluster callers use the Python handle: ``await handle.predict.remote(image)`` with a BGR uint8
array ``[H, W, 3]`` or encoded bytes -> the same document.

Requests meet in :meth:`EdgecvModel.infer_batch` (``@serve.batch``): up to ``max_batch`` images
that arrive within ``batch_wait_s`` of the first run as one ``predict_batch`` call. That call runs
in a one-thread executor so the replica's event loop keeps accepting and decoding requests (and
collecting the next batch) while the backend works; the backend's own intra-op threads do the
parallel work.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgecv.errors import ImageError
from edgecv.serve.http_input import RequestRejected, check_length, decode_image, image_bytes

PREDICT_PATHS = ("/", "/predict")
HEALTH_PATH = "/health"


def rss_mb() -> float | None:
    """This process's resident memory in MB (Linux ``/proc``), or ``None`` elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _refusal(status: int, reason: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers or None)


class EdgecvModel:
    """One replica. ``model``: the artifact path (or what the chosen backend takes);
    ``predictor_options``: keyword options of ``Predictor`` (``backend``, ``device``, ``threads``,
    ``conf``, ...); ``max_batch`` / ``batch_wait_s``: the dynamic batching of :meth:`infer_batch`."""

    def __init__(self, model: str, predictor_options: dict[str, Any], max_batch: int, batch_wait_s: float,
                 max_body_bytes: int, max_pixels: int | None) -> None:
        from edgecv.runtimes.predictor import Predictor  # in the replica process only

        self.predictor = Predictor(model, **predictor_options)
        self.model = model
        self.max_batch, self.max_body_bytes, self.max_pixels = max_batch, max_body_bytes, max_pixels
        self.infer_batch.set_max_batch_size(max_batch)
        self.infer_batch.set_batch_wait_timeout_s(batch_wait_s)
        # one inference at a time per replica: two would only split the backend's threads
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="edgecv-infer")
        self.served = 0
        self.batches = 0
        self.started = time.time()

    async def __call__(self, request: Request) -> Response:
        """The HTTP entry point (see the module docstring for routes and answers)."""
        path = request.url.path.rstrip("/") or "/"
        if path == HEALTH_PATH:
            if request.method not in ("GET", "HEAD"):
                return _refusal(405, f"method: expected GET on {HEALTH_PATH}, found {request.method}", Allow="GET")
            return JSONResponse(self.health())
        if path not in PREDICT_PATHS:
            return _refusal(404, f"path: expected POST /predict or GET {HEALTH_PATH}, found {path}")
        if request.method != "POST":
            return _refusal(405, f"method: expected POST with an encoded image on {path}, found {request.method}",
                            Allow="POST")
        try:
            check_length(request.headers.get("content-length"), self.max_body_bytes)
            body = await request.body()
            data = image_bytes(request.headers.get("content-type"), body, self.max_body_bytes)
            image = await asyncio.to_thread(decode_image, data, self.max_pixels)  # OpenCV releases the GIL
        except RequestRejected as exc:
            return _refusal(exc.status, exc.reason)
        doc = await self.infer_batch(image)
        return JSONResponse(doc, headers={"X-Edgecv-Pid": str(os.getpid())})

    async def predict(self, image: np.ndarray | bytes) -> dict[str, Any]:
        """The Python handle's call: a BGR uint8 image ``[H, W, 3]`` (or encoded bytes) -> the
        result document. Raises :class:`~edgecv.errors.ImageError` for what HTTP answers with a 4xx."""
        if isinstance(image, (bytes, bytearray, memoryview)):
            try:
                image = await asyncio.to_thread(decode_image, bytes(image), self.max_pixels)
            except RequestRejected as exc:
                raise ImageError(exc.reason) from None
        elif not isinstance(image, np.ndarray):
            raise ImageError(f"image: expected a BGR uint8 array [H, W, 3] or encoded bytes, "
                             f"found {type(image).__name__}")
        return await self.infer_batch(image)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)  # replaced per deployment in __init__
    async def infer_batch(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        """Up to ``max_batch`` images -> their result documents, in order (one ``predict_batch``)."""
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._pool, self.predictor.predict_batch, images)
        self.served += len(images)
        self.batches += 1
        return [result.to_dict() for result in results]

    def health(self) -> dict[str, Any]:
        """Liveness and what this replica serves: pid, memory, counts, the model and its batching."""
        rss = rss_mb()
        return {"status": "ok", "pid": os.getpid(), "rss_mb": None if rss is None else round(rss, 1),
                "served": self.served, "batches": self.batches, "max_batch": self.max_batch,
                "model": os.path.basename(str(self.model)), "backend": self.predictor.backend.name,
                "task": self.predictor.metadata.task, "uptime_s": round(time.time() - self.started, 1)}

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)
        predictor = getattr(self, "predictor", None)
        if predictor is not None:
            predictor.close()
