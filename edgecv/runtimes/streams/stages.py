"""The stages of a stream and their threads, behind :class:`~edgecv.runtimes.streams.pipeline.Stream`.

:class:`Pipeline` runs capture (read + decode [+ pre]), infer ([pre +] infer + post) and sinks
(track, sinks in order) either in three threads joined by small bounded channels
(:mod:`~edgecv.runtimes.streams.channel`), or one after another in the caller's thread; and it
shuts them all down. The design, the frame policies and the shutdown rules are described in
:mod:`edgecv.runtimes.streams.pipeline`, whose :func:`~edgecv.runtimes.streams.pipeline.stream`
builds a Pipeline and wraps it in a ``Stream``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

from edgecv.runtimes.detections import Detections
from edgecv.runtimes.predictor import Predictor, Result
from edgecv.runtimes.semantic_map import SemanticMap
from edgecv.runtimes.streams.channel import Channel as _Channel
from edgecv.runtimes.streams.channel import End as _End
from edgecv.runtimes.streams.priority import SINK_NICE, lower_current_thread
from edgecv.runtimes.streams.readers import Captured, StreamSource
from edgecv.runtimes.streams.result import Sink, StreamResult
from edgecv.runtimes.streams.signals import SigtermAsInterrupt

JOIN_TIMEOUT_S = 10.0  # per thread at close: an inference call or a blocking read finishes well within


class Pipeline:
    """The stages and their threads; holds no reference to the :class:`Stream` facade, so a
    forgotten stream is collected and its finalizer can stop the threads."""

    def __init__(self, predictor: Predictor, source: StreamSource, policy: str, tracker: Any,
                 sinks: Sequence[Sink], max_frames: int | None, conf: float | None) -> None:
        self.predictor, self.source, self.policy, self.tracker = predictor, source, policy, tracker
        self.sinks, self.max_frames, self.conf = list(sinks), max_frames, conf
        self.stop = threading.Event()  # everything stops now (close, error downstream)
        self.enough = threading.Event()  # max_frames reached: capture and infer stop
        self.frames = source.read()
        self.emitted = 0
        self.threads: list[threading.Thread] = []
        self.closed = False
        self.sigterm = False
        self._close_lock = threading.Lock()
        self._pending: deque[StreamResult] = deque()  # threaded=False: results of the last batch
        # rate cap (runtimes/robot.py): called by the infer thread before it takes a frame, so the frame
        # it then takes is the newest; returns False if the pipeline stopped while it waited
        self.pace: Callable[[Callable[[], bool]], bool] | None = None
        self.sink_nice = SINK_NICE  # see streams/priority.py
        self.inflight = 1  # inferences in flight (``stream(inflight=)``; >1 pays on OpenVINO's async requests)

    # -- the three stages, shared by the threaded and the in-caller forms -------------------------

    def prepare(self, captured: Captured) -> None:
        """Pre-process one frame ahead, in the capture thread, when the infer stage would take it
        as a batch of one anyway (``every`` policy: no frame is pre-processed only to be dropped)."""
        if self.policy == "every" and (self.predictor.batch_size or 1) == 1:
            start = time.perf_counter()
            captured.tensor, captured.infos = self.predictor.prepare_tensor([captured.image])
            captured.pre_ms = (time.perf_counter() - start) * 1e3

    def submit(self, batch: list[Captured]) -> Callable[[], list[tuple[Captured, Result, dict[str, float]]]]:
        """Start ``batch``'s inference; the returned function finishes it (:meth:`infer`'s result).
        A pre-processed frame goes through :meth:`Predictor.submit_tensor` (asynchronous on OpenVINO)."""
        if len(batch) != 1 or batch[0].tensor is None:
            return lambda: self.infer(batch)
        done = batch[0]
        finish = self.predictor.submit_tensor(done.tensor, done.infos, conf=self.conf)
        done.tensor = None  # the request holds it until it is finished

        def complete() -> list[tuple[Captured, Result, dict[str, float]]]:
            detections, run = finish()
            return [(done, detections[0], {"read": done.read_ms, "pre": done.pre_ms, "infer": run["infer_ms"],
                                           "post": run["postprocess_ms"]})]
        return complete

    def infer(self, batch: list[Captured]) -> list[tuple[Captured, Result, dict[str, float]]]:
        """Pre-process + infer + post-process ``batch``; each frame gets its share of the timing."""
        if len(batch) == 1 and batch[0].tensor is not None:
            return self.submit(batch)()
        detections, timing = self.predictor.predict_timed([c.image for c in batch], conf=self.conf)
        share = {"pre": timing["preprocess_ms"], "infer": timing["infer_ms"], "post": timing["postprocess_ms"]}
        share = {k: v / len(batch) for k, v in share.items()}
        return [(c, d, {"read": c.read_ms, **share}) for c, d in zip(batch, detections)]

    def emit(self, captured: Captured, detections: Result, timing: dict[str, float]) -> StreamResult:
        """Track, build the result, hand it to every sink in order (a label map rides in
        ``StreamResult.semantic`` beside empty detections: nothing to track)."""
        semantic = detections if isinstance(detections, SemanticMap) else None
        if semantic is not None:
            detections = Detections.empty(semantic.class_names)
        elif self.tracker is not None:
            start = time.perf_counter()
            detections = self.tracker.update(detections, captured.timestamp)
            timing["track"] = (time.perf_counter() - start) * 1e3
        result = StreamResult(image=captured.image, detections=detections, index=captured.index,
                              name=captured.name, timestamp=captured.timestamp, media_time=captured.media_time,
                              timing=timing, dropped=captured.dropped, gap=captured.gap, semantic=semantic,
                              header=captured.header)
        start = time.perf_counter()
        for sink in self.sinks:
            sink.write(result)
        timing["sinks"] = (time.perf_counter() - start) * 1e3
        result.age = time.time() - captured.timestamp
        self.emitted += 1
        return result

    def sink_asked_to_stop(self) -> bool:
        """A sink that sets ``stop_requested`` (a window closed with q / Esc) ends the stream normally."""
        return any(getattr(sink, "stop_requested", False) for sink in self.sinks)

    # -- threaded form ----------------------------------------------------------------------------

    def start(self) -> None:
        self.captured = _Channel(1 if self.policy == "latest" else 2, latest=self.policy == "latest")
        self.inferred = _Channel(2)
        self.results = _Channel(2)
        for name, target in (("capture", self._capture), ("infer", self._infer), ("sinks", self._sink)):
            # daemon + joined at close / exit: a non-daemon thread would block exit before atexit runs
            thread = threading.Thread(target=target, name=f"edgecv-stream-{name}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def _upstream_stopped(self) -> bool:
        return self.stop.is_set() or self.enough.is_set()

    def _capture(self) -> None:
        end = _End()
        try:
            for count, captured in enumerate(self.frames, 1):
                self.prepare(captured)
                if not self.captured.put(captured, self._upstream_stopped):
                    return
                if self.policy == "every" and count == self.max_frames:
                    break
        except BaseException as exc:  # handed to the caller's thread, in order after the frames
            end = _End(exc)
        self.captured.put(end, self.stop.is_set)

    def _infer(self) -> None:
        pending: deque[Callable[[], list[Any]]] = deque()  # started, not yet finished (oldest first)
        while True:
            # the rate cap (runtimes/robot.py) waits before a frame is taken, so the one taken is the newest
            if not pending and self.pace is not None and not self.pace(self._upstream_stopped):
                return
            # with results in flight, take only a frame already waiting; else finish the oldest
            item = self.captured.get(lambda: True) if pending else self.captured.get(self._upstream_stopped)
            if item is None and not pending:
                return
            try:
                batch: list[Captured] = []
                if item is not None:
                    item, batch = self._gather(item)
                if batch:
                    pending.append(self.submit(batch))
                while pending and (len(pending) >= self.inflight or item is None or isinstance(item, _End)):
                    for out in pending.popleft()():
                        if not self.inferred.put(out, self._upstream_stopped):
                            return
                    if item is None:
                        break
            except BaseException as exc:
                item = _End(exc)
            if isinstance(item, _End):
                self.inferred.put(item, self.stop.is_set)
                return

    def _gather(self, item: Any) -> tuple[Any, list[Captured]]:
        """The batch starting with ``item`` (``every``: plus frames already waiting, up to the
        artifact's batch); returns the channel's ``_End`` if one was met, else ``item``, and the batch."""
        batch = [item] if isinstance(item, Captured) else []
        while batch and len(batch) < (self.predictor.batch_size or 1) and self.policy == "every":
            more = self.captured.get(lambda: True)  # only what is already waiting
            if more is None:
                break
            if isinstance(more, _End):
                return more, batch
            batch.append(more)
        return item, batch

    def _sink(self) -> None:
        if self.policy == "every":  # files: throughput; the sinks have slack, inference has none
            lower_current_thread(self.sink_nice)
        while True:
            item = self.inferred.get(self.stop.is_set)
            if item is None:
                return
            if not isinstance(item, _End):
                try:
                    result = self.emit(*item)
                except BaseException as exc:
                    item = _End(exc)
                else:
                    if not self.results.put(result, self.stop.is_set):
                        return
                    if self.emitted != self.max_frames and not self.sink_asked_to_stop():
                        continue
                    self.enough.set()
                    item = _End()
            self.results.put(item, self.stop.is_set)
            return

    def next_threaded(self) -> StreamResult:
        item = self.results.get(self.stop.is_set)
        if item is None:
            raise StopIteration
        if isinstance(item, _End):
            self.close()
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    # -- in-caller form ---------------------------------------------------------------------------

    def next_inline(self) -> StreamResult:
        if not self._pending:
            if self.closed or self.emitted == self.max_frames or self.sink_asked_to_stop():
                raise StopIteration
            batch: list[Captured] = []
            limit = self.predictor.batch_size or 1
            if self.max_frames is not None:
                limit = min(limit, self.max_frames - self.emitted)
            for captured in self.frames:
                batch.append(captured)
                if len(batch) == limit:
                    break
            if not batch:
                raise StopIteration
            self._pending.extend(self.emit(*out) for out in self.infer(batch))
        return self._pending.popleft()

    # -- shutdown ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop and join every thread, then close the sinks (in order) and the source. Idempotent;
        the first sink error is raised after everything else was closed."""
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
        # a second Ctrl-C / SIGTERM must not cut the finalisation short: hold them until it is done
        main = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
        held = {signal.SIGINT, signal.SIGTERM} if main else set()
        if held:
            signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            self._shut_down()
        finally:
            if held:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, held)

    def _shut_down(self) -> None:
        self.stop.set()
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(JOIN_TIMEOUT_S)
        if not any(thread.is_alive() for thread in self.threads[:1]):  # not mid-read in the capture thread
            self.frames.close()  # the reader's own cleanup (a VideoCapture released) runs now, not at GC
        error: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # close the others first, then report the first failure
                error = error or exc
        self.source.close()
        if self.sigterm:
            SigtermAsInterrupt.leave()
        if error is not None:
            raise error
