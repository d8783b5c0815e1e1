"""The stream pipeline: the one frame loop of edgecv (``Predictor.stream``, ``predict_source``,
``edgecv predict`` all run on it).

Three stages overlap in three threads, joined by small bounded channels, so throughput
approaches the slowest stage rather than the sum (decoding, ONNX Runtime and OpenCV's drawing
and encoding release the GIL)::

    capture (read + decode [+ pre]) ─[policy channel]─► infer ([pre +] infer + post) ─[2]─► sinks
    (track, sinks in order, one thread) ─[2]─► the caller's ``for result in stream``

With the ``every`` policy and a batch of one, pre-processing (letterbox resize + normalise) runs
in the capture thread, ahead of inference; with ``latest`` it runs in the infer thread, so no
frame is pre-processed only to be dropped.

The capture channel follows the frame policy: ``every`` (a queue of 2, the reader waits: files)
or ``latest`` (a slot of 1 where a new frame replaces an unprocessed one, counted in
``StreamResult.dropped``: live sources never lag behind). Image and folder sources run the same
stages one after another in the caller's thread (``threaded=False``): every finished image's
line is then on disk before the next image is read.

Shutdown: ``close()`` (also on leaving ``with``, on garbage collection and at interpreter exit)
stops every thread, joins them (none is left inside ONNX Runtime at exit), closes every sink and
the source. While a stream is open in the main thread, SIGTERM is handled like Ctrl-C (a
``KeyboardInterrupt`` in the main thread), so ``docker stop`` finalises outputs too.

This module is the public face (:func:`stream`, :class:`Stream`, option checks); the stages, their
threads and the shutdown live in :mod:`edgecv.runtimes.streams.stages`.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterable, Iterator

from edgecv.errors import OptionError
from edgecv.runtimes.predictor import Predictor, check_conf
from edgecv.runtimes.streams.priority import SINK_NICE
from edgecv.runtimes.streams.readers import check_policy, open_source
from edgecv.runtimes.streams.result import Sink, StreamResult
from edgecv.runtimes.streams.signals import SigtermAsInterrupt
from edgecv.runtimes.streams.stages import JOIN_TIMEOUT_S, Pipeline

__all__ = ["DEFAULT_INFLIGHT", "JOIN_TIMEOUT_S", "SINK_NICE", "Stream", "check_inflight", "check_max_frames", "stream"]

DEFAULT_INFLIGHT = 1  # see stream(inflight=) and the README's stream figures


def _make_tracker(track: Any) -> Any:
    """``None``, a tracker object (anything with ``update(detections, timestamp)``) or a new ``Tracker``."""
    if not track:
        return None
    if hasattr(track, "update"):
        return track
    try:
        from edgecv.runtimes.streams.tracking import Tracker
    except ModuleNotFoundError as exc:
        if exc.name != "edgecv.runtimes.streams.tracking":
            raise
        raise OptionError("track: expected edgecv.runtimes.streams.tracking in this install, found none "
                          "(tracking is not part of this build)") from None
    return Tracker()


class Stream:
    """A running stream: an iterator of :class:`StreamResult` and a context manager.

    ``close()`` (or leaving ``with``) stops it; a stream that is never closed is stopped when it
    is garbage collected or at interpreter exit. Errors of any stage (a camera that vanished, a
    sink that cannot write) are raised by the iteration after the results before them.

    Attributes:
        source: the opened :class:`~edgecv.runtimes.streams.readers.StreamSource` (``kind``,
            ``label``, ``fps``, ``total``, ``live``).
        policy: ``latest`` or ``every``.
    """

    def __init__(self, pipeline: Pipeline, threaded: bool) -> None:
        self._pipeline = pipeline
        self.source, self.policy = pipeline.source, pipeline.policy
        self._next = pipeline.next_threaded if threaded else pipeline.next_inline
        pipeline.sigterm = SigtermAsInterrupt.enter()
        self._finalizer = weakref.finalize(self, pipeline.close)
        if threaded:
            pipeline.start()

    @property
    def frames(self) -> int:
        """Results produced so far."""
        return self._pipeline.emitted

    def __iter__(self) -> Iterator[StreamResult]:
        return self

    def __next__(self) -> StreamResult:
        try:
            return self._next()
        except BaseException:
            self.close()
            raise

    def run(self) -> int:
        """Consume the whole stream (for sinks-only use); returns the number of results."""
        for _ in self:
            pass
        return self.frames

    def close(self) -> None:
        """Stop every thread, finalise every sink, release the source (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def check_max_frames(max_frames: int | None) -> int | None:
    """``max_frames`` unchanged; :class:`OptionError` unless a positive int or None."""
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or max_frames < 1):
        raise OptionError(f"max_frames: expected a positive int or None, found {max_frames!r}")
    return max_frames


def stream(predictor: Predictor, source: Any, policy: str | None = None, track: Any = False,
           sinks: Iterable[Sink] = (), max_frames: int | None = None, *, conf: float | None = None,
           threaded: bool | None = None, capture: dict[str, Any] | None = None,
           inflight: int | None = None) -> Stream:
    """Run ``predictor`` over ``source`` frame by frame; returns a :class:`Stream` to iterate.

    Args:
        source: an image, a folder, a video file, a camera index, a URL, a
            :class:`~edgecv.runtimes.sources.FrameSource`, or an iterable of BGR uint8 frames
            ``[H, W, 3]`` (or of ``(frame, time.time() stamp)`` pairs).
        policy: ``"latest"`` (keep only the newest frame; the default for cameras and URLs
            without a frame count) or ``"every"`` (every frame in order; the default otherwise).
        track: ``True`` for persistent ``track_ids`` (``streams/tracking.py``), or a tracker object.
        sinks: objects with ``write(result)`` / ``close()``, called in order from one thread.
        max_frames: stop after this many results.
        conf: extra score threshold (see :class:`~edgecv.runtimes.predictor.Predictor`).
        threaded: run the stages in threads; default: yes, except for image and folder sources.
        capture: options of :func:`~edgecv.runtimes.streams.capture.open_capture` for cameras, URLs
            and video files, e.g. ``{"give_up_after": 30, "stall_timeout": 2.0, "decoder_threads": 1}``.
        inflight: inferences kept in flight with the ``every`` policy (``None``: 1). Above 1 the next
            frame is submitted while the previous one runs, which needs a backend with asynchronous
            requests (OpenVINO, with ``backend_options={"requests": n}``, n >= ``inflight``); other
            backends run one at a time whatever this says. ``latest`` always uses 1 (fresh frames).

    Raises:
        OptionError: a bad option; SourceError / ImageError: the source cannot be opened.
    """
    conf = check_conf(conf)
    check_max_frames(max_frames)
    check_inflight(inflight)
    opened = open_source(source, predictor.max_pixels, capture)
    try:
        chosen = check_policy(policy, opened)
        tracker = _make_tracker(track)
    except BaseException:
        opened.close()
        raise
    if threaded is None:
        threaded = opened.kind not in ("image", "folder")
    pipeline = Pipeline(predictor, opened, chosen, tracker, list(sinks), max_frames, conf)
    pipeline.sink_nice = SINK_NICE  # read here, at start, so setting pipeline.SINK_NICE (benchmarks, tests) counts
    if chosen == "every":
        pipeline.inflight = inflight or DEFAULT_INFLIGHT
    return Stream(pipeline, threaded)


def check_inflight(inflight: int | None) -> int | None:
    """``inflight`` unchanged; :class:`OptionError` unless a positive int or None."""
    if inflight is not None and (isinstance(inflight, bool) or not isinstance(inflight, int) or inflight < 1):
        raise OptionError(f"inflight: expected a positive int or None, found {inflight!r}")
    return inflight
