"""Inference beside a robot's control loop: a background predictor that the loop polls.

    from edgecv.runtimes import BackgroundPredictor
    with BackgroundPredictor("model.onnx", 0, rate=15) as perception:  # camera 0, at most 15 inferences/s
        while running:                                       # the robot's own fixed-rate loop
            seen = perception.latest(max_age=0.2)            # never blocks; None: nothing that fresh
            if seen is not None and seen.seq != last_seq:    # a new result
                last_seq = seen.seq
                steer(seen.detections)                       # Detections in frame pixels
            if perception.health().period_met is False: ...

It sits on the stream pipeline (``streams/pipeline.py``: capture, infer and sink threads): the
newest result is published into a one-slot mailbox that :meth:`BackgroundPredictor.latest` reads
without a lock, so a poll costs microseconds whatever inference is doing. Each result gets a
sequence number (1, 2, ...; the same result read twice keeps its number); its ``age`` is measured
on this process's monotonic clock from the moment its frame was read, so a source whose timestamps
are in the past (a recording's stamps) still ages correctly.

Knobs for sharing 2-8 cores with the robot's own threads (defaults chosen for that):

* ``rate`` (Hz): at most this many inferences per second; the infer thread waits before it takes
  the next frame (so the frame it takes is the newest), it never waits on a frame it already holds.
* ``threads``: ONNX Runtime intra-op threads (1 by default: the other cores stay with the robot).
* ``spinning``: ONNX Runtime's idle threads busy-wait by default; off here (``bench_control_loop.py``:
  with spinning on, a busy neighbour kept 0.65-0.90x of its throughput vs 0.87-1.03x with it off,
  and a 100 Hz loop's median lateness rose).
* ``nice``: the capture, infer and sink threads lower their own scheduling priority by this much
  (Linux: per thread), so the kernel prefers the robot's other threads. 0 (off) by default: on a
  loaded 2-core machine nice 5 had no consistent effect on a 100 Hz loop in the same process
  (a deprioritised thread that holds the GIL can keep that loop waiting too). It may pay where the
  contention is other processes. (With ``threads`` > 1 ONNX Runtime's worker threads, and the
  decoder thread of a video or camera, keep their priority.)

Recordings (a video file, or any source that is not live) are replayed at their recorded pace by
default (``realtime=True``: media time, else the frames' own timestamps), so a replay behaves like
the camera it was recorded with. A process that never calls :meth:`close` still stops cleanly at
exit; while it runs, SIGTERM reaches the main thread as ``KeyboardInterrupt`` (see ``signals.py``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator

from edgecv.errors import OptionError
from edgecv.runtimes.predictor import Predictor
from edgecv.runtimes.robot_state import Health, Latest, LoopState
from edgecv.runtimes.streams.pipeline import Stream, stream
from edgecv.runtimes.streams.readers import Captured, StreamSource, open_source
from edgecv.runtimes.streams.result import POLICIES, StreamResult

__all__ = ["BackgroundPredictor", "Health", "Latest"]

logger = logging.getLogger(__name__)

_REPLAY_STEP_S = 0.05  # a replay's wait is cut into steps this long, so close() is never held up
_MAX_REPLAY_WAIT_S = 1.0  # a jump in a recording's clock (a pause while recording) waits at most this


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's priority by ``nice`` (Linux: a thread id is a PRIO_PROCESS target;
    elsewhere this would renice the whole process, so it is not done)."""
    if nice <= 0 or not os.path.exists("/proc/self/task"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # not permitted here (a locked-down container): run at the normal priority
        logger.debug("edgecv: could not lower a perception thread's priority: %s", exc)


class _Pacer:
    """The rate cap: called by the infer thread before it takes a frame; waits for the next slot."""

    def __init__(self, rate: float | None, nice: int) -> None:
        self.period = 0.0 if rate is None else 1.0 / rate
        self.next_slot: float | None = None
        self.nice: int | None = nice  # applied in the infer thread at its first call, then None

    def __call__(self, stopped: Callable[[], bool]) -> bool:
        if self.nice is not None:
            _lower_priority(self.nice)
            self.nice = None
        if not self.period:
            return True
        while self.next_slot is not None:
            left = self.next_slot - time.monotonic()
            if left <= 0:
                break
            if stopped():
                return False
            time.sleep(min(left, _REPLAY_STEP_S))
        now = time.monotonic()
        # a slot missed (slow inference) is not made up with a burst: the next one is a period away
        self.next_slot = now + self.period if self.next_slot is None else max(now, self.next_slot) + self.period
        return True


class _TrackedSource(StreamSource):
    """An opened source whose frames are counted (and, for a replay, paced at their recorded rate)."""

    def __init__(self, inner: StreamSource, state: LoopState, realtime: bool) -> None:
        super().__init__(inner.kind, inner.label, (), inner.fps, inner.total, closer=inner.close,
                         problems=lambda: inner.problems, root=inner.root)
        self._inner, self._state, self._realtime = inner, state, realtime and not inner.live

    def read(self) -> Iterator[Captured]:
        _lower_priority(self._state.nice)  # in the capture thread
        origin: tuple[float, float] | None = None  # (recording clock, monotonic time) it is replayed from
        last_clock = -float("inf")
        for captured in self._inner.read():
            if self._realtime:
                clock = captured.media_time if captured.media_time is not None else captured.timestamp
                now = time.monotonic()
                if origin is None or clock < last_clock or origin[1] + clock - origin[0] - now > _MAX_REPLAY_WAIT_S:
                    origin = (clock, now)  # the start, or a jump in the recording's clock: replay on from here
                last_clock = clock
                self._wait_until(origin[1] + clock - origin[0])
            self._state.frame_read(captured)
            yield captured

    def _wait_until(self, deadline: float) -> None:
        while not self._state.stopped.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _REPLAY_STEP_S))


def _consume(results: Stream, state: LoopState) -> None:
    """The thread that drives the stream (results go to the slot through the sink)."""
    try:
        for _ in results:
            pass
    except BaseException as exc:  # the stream is over either way; the control loop reads it in health()
        state.failed(exc)
    finally:
        state.running = False
        state.finished.set()


def _shut_down(state: LoopState, results: Stream, thread: threading.Thread, owned: Predictor | None) -> None:
    state.stopped.set()
    try:
        results.close()
    finally:
        thread.join(timeout=15.0)
        if owned is not None:
            owned.close()


def _check_rate(rate: float | None) -> float | None:
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0):
        raise OptionError(f"rate: expected inferences per second > 0 or None, found {rate!r}")
    return None if rate is None else float(rate)


def _check_max_age(max_age: float | None) -> float | None:
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age < 0):
        raise OptionError(f"max_age: expected seconds >= 0 or None, found {max_age!r}")
    return max_age


def _open_predictor(model: Any, backend: str, threads: int | None, spinning: bool | None) -> tuple[Predictor, bool]:
    """``(predictor, owned)``: ``model`` itself, or a predictor opened with the robot's defaults."""
    if isinstance(model, Predictor):
        if spinning is not None or threads != 1:
            raise OptionError("threads / spinning: expected them unset with an opened Predictor (it has its own), "
                              f"found threads={threads!r}, spinning={spinning!r}; pass the model path instead")
        return model, False
    from edgecv.runtimes.backends import resolve_backend

    options: dict[str, Any] = {}
    if resolve_backend(Path(model), backend) == "onnxruntime":
        options["spinning"] = bool(spinning)  # None (the default here): off
    elif spinning:
        raise OptionError(f"spinning: expected it with the onnxruntime backend, found backend {backend!r}")
    return Predictor(model, backend=backend, threads=threads, backend_options=options), True


class BackgroundPredictor:
    """Run a predictor over ``source`` in background threads; the control loop polls :meth:`latest`.

    Args:
        model: an artifact path (opened here with ``backend``, ``threads``, ``spinning``) or an
            opened :class:`~edgecv.runtimes.predictor.Predictor` (then leave those unset).
        source: anything :func:`~edgecv.runtimes.streams.pipeline.stream` takes: camera index,
            URL, video file, folder, iterable of BGR frames or ``(frame, timestamp)`` pairs.
        rate: at most this many inferences per second (Hz); ``None``: as fast as it goes.
        threads: intra-op threads of the backend (1: leave the other cores to the robot).
        spinning: ONNX Runtime's busy-waiting idle threads; ``None`` = off.
        on_result: called with a :class:`Latest` for every result, from the pipeline's sink
            thread (keep it short: it delays the next result).
        policy: ``"latest"`` (default: act on the newest frame) or ``"every"``.
        realtime: replay a recording at its recorded pace (default); ``False``: as fast as read.
        warn_every: seconds between two "behind the requested rate" warnings (logging).
        nice: how much lower than the caller the perception threads are scheduled (Linux; 0: same).
        conf / capture: as for :func:`~edgecv.runtimes.streams.pipeline.stream`.
        topic: the image topic when ``source`` is a ROS bag (a recorded drive to replay).

    Raises:
        OptionError: a bad knob; SourceError / ArtifactError: the source or the model cannot be opened.
    """

    def __init__(self, model: Any, source: Any, *, rate: float | None = 15.0, threads: int | None = 1,
                 spinning: bool | None = None, on_result: Callable[[Latest], object] | None = None,
                 policy: str = "latest", realtime: bool = True, warn_every: float = 10.0,
                 nice: int = 0, conf: float | None = None, backend: str = "auto",
                 capture: dict[str, Any] | None = None, topic: str | None = None) -> None:
        self.rate = _check_rate(rate)
        if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
            raise OptionError(f"nice: expected an int in 0..19 (how much lower the perception threads run), "
                              f"found {nice!r}")
        if policy not in POLICIES:
            raise OptionError(f"policy: expected one of {', '.join(POLICIES)}, found {policy!r}")
        self._state = LoopState(self.rate, on_result, float(warn_every), nice)
        self.predictor, owned = _open_predictor(model, backend, threads, spinning)
        try:
            opened = open_source(source, self.predictor.max_pixels, capture, topic=topic)
            self.source = _TrackedSource(opened, self._state, bool(realtime))
            self._stream = stream(self.predictor, self.source, policy=policy, sinks=[_Publisher(self._state)],
                                  conf=conf, threaded=True)
        except BaseException:
            if owned:
                self.predictor.close()
            raise
        # set after the threads started: only the first frame may come unpaced (and at normal priority)
        self._stream._pipeline.pace = _Pacer(self.rate, nice)
        self._state.started = time.monotonic()  # the achieved rate counts from here, not from the model load
        self._thread = threading.Thread(target=_consume, args=(self._stream, self._state),
                                        name="edgecv-background", daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, _shut_down, self._state, self._stream, self._thread,
                                           self.predictor if owned else None)

    def latest(self, max_age: float | None = None) -> Latest | None:
        """The newest result, without blocking; ``None`` before the first one, or when the newest
        is older than ``max_age`` seconds (so a stale result is never acted on)."""
        slot = self._state.slot  # one read of a tuple swapped whole by the sink thread: no lock needed
        if slot is None:
            return None
        seq, result, read_at = slot
        age = time.monotonic() - read_at
        if max_age is not None and age > _check_max_age(max_age):
            return None
        return Latest(seq, result.timestamp, age, result)

    def health(self) -> Health:
        """Counters, the achieved vs requested rate and the last error (see :class:`Health`)."""
        return self._state.health()

    @property
    def running(self) -> bool:
        """False once the source ended, failed, or :meth:`close` was called."""
        return self._state.running

    def wait(self, timeout: float) -> bool:
        """Block until the source has ended (a recording played out) or failed; False on timeout."""
        return self._state.finished.wait(timeout)

    def close(self) -> None:
        """Stop the threads, release the source and (if opened here) the model. Idempotent."""
        self._finalizer()

    def __enter__(self) -> BackgroundPredictor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class _Publisher:
    """The sink through which every result reaches the slot (runs in the pipeline's sink thread)."""

    def __init__(self, state: LoopState) -> None:
        self._state = state
        self._reniced = False

    def write(self, result: StreamResult) -> None:
        if not self._reniced:  # in the sink thread
            _lower_priority(self._state.nice)
            self._reniced = True
        self._state.publish(result)

    def close(self) -> None:
        self._state.running = False
