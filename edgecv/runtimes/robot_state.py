"""What the control loop reads from a :class:`~edgecv.runtimes.robot.BackgroundPredictor`: the
newest result (:class:`Latest`), the heartbeat (:class:`Health`), and the state behind them that the
pipeline's threads write (:class:`LoopState`: a one-slot mailbox swapped whole, so reading it needs
no lock, plus counters, the achieved rate and the rate-limited "falling behind" warning).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable

from edgecv.runtimes.detections import Detections
from edgecv.runtimes.streams.readers import Captured
from edgecv.runtimes.streams.result import StreamResult

logger = logging.getLogger("edgecv.runtimes.robot")  # one logger name for the whole control-loop API

RATE_WINDOW_S = 2.0  # achieved rate = results over the last this many seconds
PERIOD_SLACK = 0.9  # the period counts as met at >= 90 % of the requested rate


@dataclass(frozen=True)
class Latest:
    """The newest result as the control loop sees it.

    ``seq``: 1 for the first result, +1 per result (the same result read twice keeps it).
    ``timestamp``: the source's timestamp of the frame (``time.time()`` seconds when read, or the
    stamp the source carries). ``age``: seconds since the frame was read, at the moment of the
    call that returned this (monotonic clock). ``result``: the whole
    :class:`~edgecv.runtimes.streams.result.StreamResult` (``image`` BGR uint8 ``[H, W, 3]``).
    """

    seq: int
    timestamp: float
    age: float
    result: StreamResult

    @property
    def detections(self) -> Detections:
        """Boxes ``[N, 4]`` float32 x1, y1, x2, y2 in the frame's pixels, scores, class ids, names."""
        return self.result.detections


@dataclass(frozen=True)
class Health:
    """A heartbeat of the background predictor (plain data: ``asdict`` / :meth:`to_dict` for a topic).

    ``frames_in``: frames read from the source; ``frames_out``: results published; ``dropped``:
    frames skipped for a newer one (``latest`` policy). ``rate``: results per second over the last
    :data:`RATE_WINDOW_S` s; ``period_met``: ``rate`` >= 90 % of ``requested_rate`` (``None``
    before a full window, or without a rate cap). ``busy_ms``: median pre + infer + post time per
    result. ``age``: seconds since the newest result's frame was read (``None``: no result yet).
    """

    running: bool
    frames_in: int
    frames_out: int
    dropped: int
    last_error: str | None
    reconnects: int
    gaps: int
    rate: float
    requested_rate: float | None
    period_met: bool | None
    busy_ms: float | None
    age: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoopState:
    """What the pipeline's threads write and the control loop reads (no reference to the facade)."""

    def __init__(self, rate: float | None, on_result: Callable[[Latest], object] | None, warn_every: float,
                 nice: int) -> None:
        self.rate, self.on_result, self.warn_every, self.nice = rate, on_result, warn_every, nice
        self.slot: tuple[int, StreamResult, float] | None = None  # (seq, result, read time): swapped whole
        self.lock = threading.Lock()  # counters and read times; never taken by latest()
        self.read_times: dict[int, float] = {}
        self.frames_in = self.frames_out = self.dropped = self.reconnects = self.gaps = 0
        self.last_error: str | None = None
        self.ready_times: deque[float] = deque(maxlen=512)
        self.busy: deque[float] = deque(maxlen=64)
        self.started = time.monotonic()
        self.running = True
        self.last_warning = -float("inf")
        self.stopped = threading.Event()
        self.finished = threading.Event()

    def frame_read(self, captured: Captured) -> None:
        """Capture thread: count the frame, remember when it was read, note a gap before it."""
        with self.lock:
            self.frames_in += 1
            self.read_times[captured.index] = time.monotonic()
            if captured.gap is not None:
                self.gaps += 1
                self.reconnects += captured.gap.reconnects
                self.last_error = f"source: {captured.gap.reason} ({captured.gap.reconnects} reconnects)"

    def publish(self, result: StreamResult) -> None:
        """Sink thread: number the result, put it in the slot, call the callback, check the rate."""
        now = time.monotonic()
        with self.lock:
            read_at = self.read_times.pop(result.index, now)
            for index in [i for i in self.read_times if i < result.index]:  # frames dropped before it
                del self.read_times[index]
            self.frames_out += 1
            self.dropped += result.dropped
            seq = self.frames_out
            self.ready_times.append(now)
            self.busy.append(sum(result.timing.get(key, 0.0) for key in ("pre", "infer", "post")))
        self.slot = (seq, result, read_at)
        self.warn_if_behind(now)
        if self.on_result is not None:
            self.on_result(Latest(seq, result.timestamp, now - read_at, result))

    def achieved_rate(self, now: float) -> float:
        span = min(RATE_WINDOW_S, now - self.started)
        recent = sum(1 for t in list(self.ready_times) if t > now - RATE_WINDOW_S)
        return recent / span if span > 0 else 0.0

    def period_met(self, now: float, rate: float) -> bool | None:
        if self.rate is None or now - self.started < RATE_WINDOW_S:
            return None
        return rate >= PERIOD_SLACK * self.rate

    def warn_if_behind(self, now: float) -> None:
        """Log (at most once per ``warn_every`` s) while the requested rate is not reached."""
        if not self.running or now - self.last_warning < self.warn_every:
            return
        rate = self.achieved_rate(now)
        if self.period_met(now, rate) is not False:
            return
        self.last_warning = now
        busy = statistics.median(self.busy) if self.busy else 0.0
        why = ("inference is slower than the period" if busy * self.rate > 1000 * PERIOD_SLACK
               else "the source delivers fewer frames than requested")
        logger.warning("edgecv: %.1f results/s of the %.1f Hz requested: %s (%.0f ms per frame, %d dropped)",
                       rate, self.rate, why, busy, self.dropped)

    def failed(self, error: BaseException) -> None:
        self.last_error = f"{type(error).__name__}: {error}"
        logger.error("edgecv: background predictor stopped: %s", self.last_error)

    def health(self) -> Health:
        """The heartbeat now (also logs the "falling behind" warning when due)."""
        now = time.monotonic()
        self.warn_if_behind(now)
        rate = self.achieved_rate(now)
        with self.lock:
            busy = statistics.median(self.busy) if self.busy else None
            counts = (self.frames_in, self.frames_out, self.dropped, self.reconnects, self.gaps)
        slot = self.slot
        return Health(running=self.running, frames_in=counts[0], frames_out=counts[1], dropped=counts[2],
                      last_error=self.last_error, reconnects=counts[3], gaps=counts[4], rate=round(rate, 3),
                      requested_rate=self.rate, period_met=self.period_met(now, rate),
                      busy_ms=None if busy is None else round(busy, 3), age=None if slot is None else now - slot[2])
