"""One predictor over every backend: image(s) in, the task's result in original pixels out.

    with Predictor("model.onnx") as predictor:
        dets = predictor(cv2.imread("photo.jpg"))          # Detections (task detect / segment)
        many = predictor([frame_a, frame_b, frame_c])      # list[Detections]

The artifact's ``task`` picks the output contract and the post-processing
(:mod:`edgecv.runtimes.tasks`): ``detect`` -> :class:`Detections`, ``segment`` ->
:class:`Detections` with :class:`~edgecv.runtimes.masks.InstanceMasks`, ``semantic`` ->
:class:`~edgecv.runtimes.semantic_map.SemanticMap`.

Pre- and post-processing (:mod:`~edgecv.runtimes.preprocess`,
:mod:`~edgecv.runtimes.postprocess`) are shared and backend-agnostic; the backend only runs
the tensor. Images that are not HxWx3 uint8 BGR (grayscale, BGRA, 16-bit) are converted and
reported with one :class:`~edgecv.runtimes.image.ImageConversionWarning` per kind of
conversion per predictor (``warnings`` filters can silence or escalate them).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Sequence, overload

import numpy as np

from edgecv.errors import OptionError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.backends import Backend, open_backend
from edgecv.runtimes.buffers import TensorPool
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.image import DEFAULT_MAX_PIXELS, ConversionNotes, check_max_pixels, read_image, to_bgr_uint8
from edgecv.runtimes.lineage import warn_if_stale
from edgecv.runtimes.preprocess import LetterboxInfo, check_rect, input_hw, network_hw, preprocess_batch
from edgecv.runtimes.semantic_map import SemanticMap
from edgecv.runtimes.tasks import PostContext, task_for
from edgecv.runtimes.tasks import task_options as resolve_task_options
# the detect task's check, re-exported for callers of its old home
from edgecv.runtimes.tasks.detect import check_detection_artifact, graph_class_count  # noqa: F401

#: What one input may be: an image array (see :func:`~edgecv.runtimes.image.to_bgr_uint8`) or an image file path.
ImageInput = np.ndarray | str | os.PathLike

#: What a prediction returns per image, following the artifact's task (see the module docstring).
Result = Detections | SemanticMap


def check_conf(conf: float | None) -> float | None:
    """``conf`` as a float, or ``None``; :class:`OptionError` unless it is a score in [0, 1]."""
    if conf is not None and (isinstance(conf, bool) or not isinstance(conf, (int, float, np.floating))
                             or not 0.0 <= float(conf) <= 1.0):
        raise OptionError(f"conf: expected a score in [0, 1] or None, found {conf!r}")
    return None if conf is None else float(conf)


class Predictor:
    """Run an edgecv artifact (task ``detect``, ``segment`` or ``semantic``).

    Args:
        path: the artifact (``.onnx``), or the URL of a model served by Triton
            (``grpc://host:8001/<model>``, ``http://host:8000/<model>``: backend ``triton``).
        backend: ``"auto"`` (by file suffix: ``.onnx`` -> onnxruntime, ``.engine``/``.plan`` ->
            tensorrt; a URL -> triton) or a name from :data:`edgecv.runtimes.backends.LOADERS`
            (``"onnxruntime"``, ``"openvino"``, ``"tensorrt"``, ``"triton"``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``None``: the backend's own (cpu; cuda for tensorrt).
        threads: intra-op threads for the backend (``None``: backend default).
        conf: keep only detections scoring at least this, on top of the threshold baked
            into the graph (``metadata.conf_threshold``); lower values cannot bring back
            what the graph already dropped.
        backend_options: backend-specific keyword options (see
            :func:`~edgecv.runtimes.backends.open_backend`), e.g. ``{"precision": "f32"}`` for openvino.
        rect: letterbox each batch to the smallest stride-multiple rectangle instead of the full
            square (a 640x480 camera frame runs at 480x640); needs an artifact exported with
            ``--dynamic`` (checked here, :class:`~edgecv.errors.ArtifactError` otherwise).
        max_pixels: largest image file decoded for path inputs, in pixels (checked on the file
            header first; ``None``: no limit); see :func:`~edgecv.runtimes.image.read_image`.
            ``predict_source`` applies it to its sources too.
        task_options: options of the artifact's task (:mod:`edgecv.runtimes.tasks`): ``semantic``:
            ``{"probs": True}`` adds class probabilities to each :class:`SemanticMap`; ``segment``:
            ``{"mask_threshold": 0.5}``. Unknown keys are an :class:`~edgecv.errors.OptionError`.

    Attributes:
        metadata: the artifact's :class:`~edgecv.metadata.ArtifactMetadata`.
        task: the artifact's :class:`~edgecv.runtimes.tasks.base.Task` (``task.name``).
        backend: the opened :class:`~edgecv.runtimes.backends.Backend`.
        batch_size: the artifact's fixed batch size, or ``None`` if the batch axis is dynamic.

    Timing is per call, never shared state (two threads may use one predictor):
    :meth:`predict_timed` returns it beside the results.
    """

    def __init__(self, path: str | os.PathLike[str], *, backend: str = "auto", device: str | None = None,
                 threads: int | None = None, conf: float | None = None,
                 backend_options: dict[str, Any] | None = None, rect: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 task_options: dict[str, Any] | None = None) -> None:
        self.conf = check_conf(conf)
        self.max_pixels = check_max_pixels(max_pixels)
        self.backend: Backend = open_backend(path, backend, device=device, threads=threads,
                                             **dict(backend_options or {}))
        try:
            self.metadata: ArtifactMetadata = self.backend.metadata
            self.task = task_for(self.metadata, str(path))
            self.task_options = resolve_task_options(self.task, task_options)
            self.task.check_artifact(self.metadata, self.backend, self.task_options)
            if rect:
                check_rect(self.metadata)
        except BaseException:
            self.backend.close()
            raise
        self.path = Path(path)
        warn_if_stale(self.path, self.metadata)  # an int8/fp16 graph whose fp32 parent beside it has changed
        self.rect = rect
        self.class_names: tuple[str, ...] = tuple(self.metadata.class_names)
        batch = int(self.metadata.input_shape[0])
        self.batch_size: int | None = batch if batch > 0 else None
        self._notes = ConversionNotes()
        # Input tensors are lent from here and given back after inference (edgecv.runtimes.buffers):
        # no per-frame allocation of the network input, safe across threads and in-flight requests.
        self.buffers = TensorPool()
        self._warned_conf = False
        self._warn_if_conf_ineffective(self.conf)

    @overload
    def __call__(self, images: ImageInput, *, conf: float | None = None) -> Result: ...

    @overload
    def __call__(self, images: Sequence[ImageInput], *, conf: float | None = None) -> list[Result]: ...

    def __call__(self, images: ImageInput | Sequence[ImageInput], *, conf: float | None = None
                 ) -> Result | list[Result]:
        """Predict one image (-> the task's result: :class:`Detections` or :class:`SemanticMap`) or
        a list of images (-> list, same order). ``conf`` means nothing to a semantic artifact.

        ``conf`` overrides the predictor's ``conf`` for this call. A list runs in batches:
        chunks of ``batch_size`` (the last one zero-padded) for a fixed-batch artifact, all at
        once for a dynamic one.
        """
        if isinstance(images, (list, tuple)):
            return self.predict_batch(images, conf=conf)
        return self.predict_batch([images], conf=conf)[0]

    def predict_batch(self, images: Sequence[ImageInput], *, conf: float | None = None) -> list[Result]:
        """The list form of :meth:`__call__`."""
        return self.predict_timed(images, conf=conf)[0]

    def predict_timed(self, images: Sequence[ImageInput], *, conf: float | None = None
                      ) -> tuple[list[Result], dict[str, float]]:
        """:meth:`predict_batch` plus this call's timing: ``{"preprocess_ms", "infer_ms",
        "postprocess_ms", "total_ms", "images"}`` (milliseconds, summed over the call's batches)."""
        conf = self.conf if conf is None else check_conf(conf)
        self._warn_if_conf_ineffective(conf)
        start = time.perf_counter()
        frames = [self._prepare(image) for image in images]
        timing = {"preprocess_ms": (time.perf_counter() - start) * 1e3, "infer_ms": 0.0, "postprocess_ms": 0.0}
        step = self.batch_size or max(1, len(frames))
        results: list[Result] = []
        for first in range(0, len(frames), step):
            t0 = time.perf_counter()
            tensor, infos = preprocess_batch(frames[first:first + step], self.metadata, self.batch_size,
                                            rect=self.rect, allocate=self.buffers.acquire)
            timing["preprocess_ms"] += (time.perf_counter() - t0) * 1e3
            detections, run = self.run_tensor(tensor, infos, conf=conf)
            results.extend(detections)
            timing["infer_ms"] += run["infer_ms"]
            timing["postprocess_ms"] += run["postprocess_ms"]
        timing["total_ms"] = (time.perf_counter() - start) * 1e3
        timing["images"] = float(len(frames))
        return results, timing

    def prepare_tensor(self, images: Sequence[ImageInput]) -> tuple[np.ndarray, list[LetterboxInfo]]:
        """First half of a prediction, for pipelines that pre-process in another thread: up to
        ``batch_size`` images -> the input tensor ``[B, 3, H, W]`` float (``[B, H, W, 3]`` uint8 for
        a uint8 artifact; padded to a fixed batch) and one :class:`~edgecv.runtimes.preprocess.LetterboxInfo`
        per image. Give both to :meth:`run_tensor` (or :meth:`submit_tensor`) once: the tensor is a
        buffer of this predictor's pool, reused for a later frame after it has run."""
        if self.batch_size is not None and len(images) > self.batch_size:
            raise OptionError(f"images: expected at most {self.batch_size} (the artifact's batch) per tensor, "
                              f"found {len(images)}")
        frames = [self._prepare(image) for image in images]
        return preprocess_batch(frames, self.metadata, self.batch_size, rect=self.rect, allocate=self.buffers.acquire)

    def run_tensor(self, tensor: np.ndarray, infos: Sequence[LetterboxInfo], *, conf: float | None = None
                   ) -> tuple[list[Result], dict[str, float]]:
        """Second half: infer ``tensor`` and post-process into the task's results in original
        pixels (one per ``infos`` entry); timing ``{"infer_ms", "postprocess_ms"}`` of this call."""
        conf = self.conf if conf is None else check_conf(conf)
        t1 = time.perf_counter()
        try:
            outputs = self.backend.infer(tensor)
        finally:
            self.buffers.release(tensor)  # a pooled tensor is free once run (a caller's own: untouched)
        t2 = time.perf_counter()
        results = self._postprocess(outputs, infos, conf, tensor.shape)
        t3 = time.perf_counter()
        return results, {"infer_ms": (t2 - t1) * 1e3, "postprocess_ms": (t3 - t2) * 1e3}

    def submit_tensor(self, tensor: np.ndarray, infos: Sequence[LetterboxInfo], *, conf: float | None = None
                      ) -> Callable[[], tuple[list[Result], dict[str, float]]]:
        """:meth:`run_tensor` in two steps: start inference now, without waiting where the backend
        can (OpenVINO's asynchronous infer requests); the returned function waits and post-processes.
        Call it exactly once. With other backends the work happens when it is called. ``infer_ms``
        then spans submit to outputs (queueing behind earlier requests included)."""
        conf = self.conf if conf is None else check_conf(conf)
        submit = getattr(self.backend, "submit", None)
        if submit is None:
            return lambda: self.run_tensor(tensor, infos, conf=conf)
        t1 = time.perf_counter()
        wait = submit(tensor)

        def finish() -> tuple[list[Result], dict[str, float]]:
            try:
                outputs = wait()
            finally:
                self.buffers.release(tensor)
            t2 = time.perf_counter()
            results = self._postprocess(outputs, infos, conf, tensor.shape)
            return results, {"infer_ms": (t2 - t1) * 1e3, "postprocess_ms": (time.perf_counter() - t2) * 1e3}
        return finish

    def _postprocess(self, outputs: dict[str, np.ndarray], infos: Sequence[LetterboxInfo], conf: float | None,
                     shape: tuple[int, ...]) -> list[Result]:
        """The task's results from raw ``outputs`` of an input of ``shape`` (in the artifact's layout)."""
        context = PostContext(self.class_names, conf, network_hw(self.metadata, shape), self.task_options)
        return self.task.postprocess(outputs, infos, context)

    def _prepare(self, image: ImageInput) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            image = read_image(image, self.max_pixels)
        bgr, note = to_bgr_uint8(image)
        self._notes.report(note)
        return bgr

    def _warn_if_conf_ineffective(self, conf: float | None) -> None:
        baked = float(self.metadata.conf_threshold)
        if conf is not None and conf < baked and not self._warned_conf and self.task.uses_conf:
            self._warned_conf = True
            warnings.warn(f"edgecv: conf {conf} is below the threshold {baked} baked into {self.path.name}; "
                          f"scores below {baked} were already dropped in the graph (re-export to lower it)",
                          UserWarning, stacklevel=4)

    def stream(self, source: Any, **options: Any) -> Any:
        """Run this predictor over a live or file source in a pipelined stream: see
        :func:`edgecv.runtimes.streams.pipeline.stream` for ``source`` and the options
        (``policy``, ``track``, ``sinks``, ``max_frames``, ``conf``), plus ``topic``: the image
        topic of a ROS bag source (``.bag``, ``.db3``, ``.mcap``, a folder with ``metadata.yaml``).

            with predictor.stream("clip.mp4", sinks=[JsonlSink("out.jsonl")]) as results:
                for result in results:      # StreamResult: .image, .detections, .index, .timing
                    ...
        """
        from edgecv.runtimes.streams.pipeline import stream

        topic = options.pop("topic", None)  # a ROS bag's image topic: the bag is opened here
        if topic is None:
            return stream(self, source, **options)
        from edgecv.runtimes.streams.readers import open_source

        opened = open_source(source, self.max_pixels, options.get("capture"), topic=topic)
        try:
            return stream(self, opened, **options)
        except BaseException:
            opened.close()
            raise

    def close(self) -> None:
        """Release the backend (idempotent)."""
        self.backend.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        batch = self.batch_size or "dynamic"
        return (f"Predictor({str(self.path)!r}, backend={self.backend.name!r}, task={self.metadata.task!r}, "
                f"classes={len(self.class_names)}, input={list(input_hw(self.metadata))}, batch={batch})")
