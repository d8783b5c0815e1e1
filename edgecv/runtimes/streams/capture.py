"""Resilient capture of live sources (camera, ``rtsp://``, ``http(s)://`` MJPEG) and video files.

``open_capture(source)`` opens the source (raising :class:`~edgecv.errors.SourceError` if it cannot)
and returns a :class:`ResilientCapture`; iterating it yields :class:`CapturedFrame` s (BGR uint8
``[H, W, 3]``, capture time, index). What it does that a bare ``cv2.VideoCapture`` loop does not:

* **Reconnects.** A stream or camera that fails a read is reopened with bounded exponential
  backoff (0.1 s doubling up to ``backoff_cap``, 1 s by default); the iteration keeps going.
* **Watchdog.** A source that stops delivering without an error (OpenCV/FFmpeg wait 30 s by
  default) is noticed after ``stall_timeout`` seconds. FFmpeg (network streams) honours
  ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC`` through its interrupt callback
  (checked with OpenCV 5 + FFmpeg: a silent HTTP server fails the open after 1.0 s, a stream that
  goes silent fails the read after the read timeout). Cameras get no such options (a backend that
  does not know a parameter refuses to open: "unsupported parameters in .open(), Bailout", seen
  with OpenCV's image-sequence backend), so reads run in a reader thread and this module's own
  watchdog abandons a read that outlives ``stall_timeout`` (the thread exits when the backend
  returns; its capture is released by that thread, never from another one; a camera reopened
  while that thread still holds the device fails and is retried with the backoff).
* **Gaps reported.** Every stretch without frames becomes a :class:`~.result.Gap` (start = last
  frame, end = first frame after it, reason, reopen attempts), logged as a warning when it starts
  and when it ends, attached to the first frame after it and kept in ``ResilientCapture.gaps``.
* **Giving up.** ``give_up_after`` seconds without frames raise ``SourceError`` saying how long
  it tried and how often; ``reconnect=False`` raises at the first drop instead.
* **Damaged files.** A video file whose decoding stops before its frame count is reported
  (``"ended at frame 45 of 90"``, a warning, ``ResilientCapture.damage``) and, in MP4/MOV files,
  reading resumes at the first decodable frame after the damage (a seek: FFmpeg restarts at a key
  frame), with a Gap. (AVI's demuxer skips damage by itself without saying so and fails only at
  the end, so there the frame count comes up short and "ended at frame N of M" is all we know.)
  The normal end of a file is an end, not an error.

**The end of a network stream.** A finite stream (one that states its length, e.g. a media server
playing a recording over RTSP: its SDP range gives FFmpeg a duration, OpenCV a frame count) ends
like a file when its frames are all there (exit 0 in the CLI); one that ends more than
:data:`SHORT_END_TOLERANCE` short of its stated count lost its server or network: ``SourceError``
("ended at frame 40 of 75"), which the CLI prints after the summary and the files written.
A live stream (no stated length) has no such yardstick, and OpenCV cannot tell its server's normal
end from a drop: checked with Debian's GStreamer RTSP server, an end-of-stream (RTCP BYE) and a
SIGKILLed server both make ``read()`` return False within the same millisecond, and OpenCV does not
expose FFmpeg's ``AVERROR_EOF`` apart from network errors. So a live stream that ends is
reconnected like a drop (a server that still runs serves it again, a gap is reported), and
``give_up_after`` ends the run: a ``SourceError`` ("gave up on ... after 30.0 s without frames"),
exit 2 in the CLI, after the summary and the files written (the recording and jsonl are complete).

Measured (``benchmarks/bench_reconnect.py``, server SIGKILLed, down 1.5 s, default options):
frames flow again 0.5-0.8 s (MJPEG) / 1.9 s (RTSP, H.264) after the server listens again: the rest
of the current backoff pause plus the open; FFmpeg's RTSP open probes the stream for ~1.15 s,
cut to ``open_timeout`` by the interrupt, after which it decodes normally.

**Decoder threads.** ``decoder_threads`` sets FFmpeg's decoder thread count
(``CAP_PROP_N_THREADS``) for streams and video files; ``None`` (default) keeps FFmpeg's own (one
per core). 1 avoids FFmpeg's frame threading, which holds a decoded frame per extra thread
before handing any out (a frame of delay per thread on a live source), at the cost of decoding
on one core; ``benchmarks/bench_frame_age.py --decoders ffmpeg,1`` measures both from the
sender's clock (on the loaded 2-core machine it showed no gain, so it is not the default).
Cameras get no such option (see above: unknown parameters make some backends refuse to open).

The reader runs at most two frames ahead of the consumer (one queued, one in hand): a consumer
that wants only the newest frame (policy ``latest``) must keep iterating and drop frames itself.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Iterator

import cv2
import numpy as np

from edgecv.errors import ImageError, SourceError
from edgecv.runtimes.image import DEFAULT_MAX_PIXELS, check_max_pixels, check_pixels, to_bgr_uint8
from edgecv.runtimes.streams.capture_reader import ReaderSession
from edgecv.runtimes.streams.capture_source import (  # capture_kind, CaptureSource: re-exported
    CaptureSource, capture_kind, check_decoder_threads, check_seconds, classify_source,
)
from edgecv.runtimes.streams.result import Gap

__all__ = ["CaptureSource", "CapturedFrame", "ResilientCapture", "capture_kind", "open_capture"]

logger = logging.getLogger(__name__)

DEFAULT_OPEN_TIMEOUT = 1.0  # s; FFmpeg's own default is 30 s
DEFAULT_STALL_TIMEOUT = 2.0  # s without a frame before the watchdog reopens the source (and FFmpeg's read timeout)
DEFAULT_BACKOFF_CAP = 1.0  # s, longest pause between two reopen attempts
OPEN_SLACK = 1.0  # s the watchdog adds to open_timeout: FFmpeg's probe may run a little past it
# A finite stream's frame count is FFmpeg's duration x rate: allow this share (at least 2 frames) of
# slack before an early end counts as a lost connection.
SHORT_END_TOLERANCE = 0.02

@dataclass(frozen=True)
class CapturedFrame:
    """One frame from a :class:`ResilientCapture`.

    ``image``: BGR uint8 ``[H, W, 3]``. ``timestamp``: ``time.time()`` when the read returned.
    ``index``: 0-based; for files the frame's position in the file (damaged frames skipped leave a
    hole), for live sources frames delivered since opening (continuous across reconnects).
    ``media_time``: seconds into a file (``None`` for live sources). ``gap``: set on the first
    frame after a stretch without frames.
    """

    image: np.ndarray
    timestamp: float
    index: int
    media_time: float | None = None
    gap: Gap | None = None


class ResilientCapture:
    """Iterable of :class:`CapturedFrame` over a camera, stream or video file; see the module docstring.

    Attributes:
        kind: ``"camera"``, ``"stream"`` or ``"video"``. ``label``: printable name (no URL password).
        fps / total / width / height: as the source states them at the first open (``None``: unknown).
        frames: frames delivered. reconnects: reopen attempts. gaps: every :class:`Gap` so far.
        damage: one line per damaged stretch of a video file, e.g. ``"ended at frame 45 of 90"``.
    """

    def __init__(self, target: int | str, kind: str, label: str, *, open_timeout: float, read_timeout: float,
                 stall_timeout: float, give_up_after: float | None, reconnect: bool, backoff_cap: float,
                 max_pixels: int | None, decoder_threads: int | None = None) -> None:
        self.target, self.kind, self.label = target, kind, label
        self.decoder_threads = decoder_threads  # asked for; ``decoder_threads_used``: what FFmpeg reports
        self.open_timeout, self.read_timeout, self.stall_timeout = open_timeout, read_timeout, stall_timeout
        self.give_up_after, self.reconnect, self.backoff_cap = give_up_after, reconnect, backoff_cap
        self.frames = self.reconnects = 0
        self.gaps: list[Gap] = []
        self.damage: list[str] = []
        self._closed = threading.Event()
        self._started = False
        self._abandoned: list[ReaderSession] = []  # reader threads that may still be inside a backend call
        self._open_failure = ""
        self._session, info = self._open()
        if info is None:
            self.close()
            raise SourceError(f"expected a readable {kind} at {label}, found one OpenCV cannot open "
                              f"({self._open_failure})")
        self.width, self.height = info["width"], info["height"]
        self.fps, self.total = info["fps"], (int(info["total"]) if info["total"] else None)
        self.decoder_threads_used = info.get("threads")
        if self.width and self.height:  # the stated frame size: refuse before decoding one
            try:
                check_pixels(int(self.width), int(self.height), max_pixels, f"{kind} {label}")
            except ImageError:
                self.close()
                raise

    @property
    def live(self) -> bool:
        """Cameras, and streams without a frame count: sources with no natural end."""
        return self.kind == "camera" or (self.kind == "stream" and self.total is None)

    def _open(self) -> tuple[ReaderSession, dict[str, Any] | None]:
        """Start a reader session and wait (bounded) until it has opened; ``None`` info if it did not."""
        params: list[int] = []
        backend = cv2.CAP_ANY
        if self.kind == "stream":  # FFmpeg honours these; other backends may refuse unknown parameters
            backend = cv2.CAP_FFMPEG
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
        if self.decoder_threads is not None and self.kind in ("stream", "video"):
            backend = cv2.CAP_FFMPEG  # the backend that knows CAP_PROP_N_THREADS
            params += [cv2.CAP_PROP_N_THREADS, int(self.decoder_threads)]
        started = time.monotonic()
        session = ReaderSession(self.target, backend, params, file=self.kind == "video")
        message = session.get(self.open_timeout + OPEN_SLACK)
        if message is None or message[0] != "opened":
            self._open_failure = ("no answer within " f"{self.open_timeout + OPEN_SLACK:.1f} s" if message is None
                                  else f"failed after {time.monotonic() - started:.1f} s")
            self._drop(session)
            return session, None
        return session, message[1]

    def __iter__(self) -> Iterator[CapturedFrame]:
        if self._started:
            raise SourceError(f"expected one pass over {self.kind} {self.label}, found a second iteration")
        self._started = True
        return self._frames()

    def _frames(self) -> Iterator[CapturedFrame]:
        pending: Gap | None = None
        last_time = time.time()
        try:
            while not self._closed.is_set():
                kind, payload = self._next_message()
                if kind == "closed":
                    return
                if kind == "frame":
                    image, now, position, msec = payload
                    last_time = now
                    yield self._frame(image, now, position, msec, pending)
                    pending = None
                elif kind == "damaged":
                    pending = self._damaged(*payload, since=last_time)
                elif not self.live:
                    self._check_finite_end()
                    return  # "ended": the end of a file or of a finite stream
                else:
                    pending = self._recover(self._reason(kind, last_time), since=last_time, gap=pending)
                    if pending is None:
                        return  # closed while reconnecting
        finally:
            self._drop(self._session)

    def _check_finite_end(self) -> None:
        """A finite network stream that ended short of its stated frame count: SourceError.

        (Files report their own early ends as damage; see ``capture_reader``.)"""
        if self.kind != "stream" or self.total is None:
            return
        if self.total - self.frames > max(2, round(SHORT_END_TOLERANCE * self.total)):
            raise SourceError(f"stream {self.label} ended at frame {self.frames} of {self.total} it stated "
                              "(server or network lost)")

    def _reason(self, kind: str, last_time: float) -> str:
        """Why a live source is being reopened: the watchdog, FFmpeg's read timeout, or a failed read."""
        if kind == "stalled":
            return f"stalled {self.stall_timeout:.1f} s"
        if self.kind == "stream" and time.time() - last_time >= 0.9 * self.read_timeout:
            return f"no data for {self.read_timeout:.1f} s (read timeout)"
        return "read failed"  # e.g. the server closed the connection

    def _next_message(self) -> tuple[str, Any]:
        """The reader's next message; ``("stalled", None)`` after ``stall_timeout`` s of silence from a
        live source (files have no watchdog); ``("closed", None)`` soon (0.1 s) after :meth:`close`."""
        deadline = time.monotonic() + self.stall_timeout
        while not self._closed.is_set():
            left = deadline - time.monotonic()
            if self.live and left <= 0:
                return "stalled", None
            message = self._session.get(min(0.1, left) if self.live else 0.1)
            if message is not None:
                return message
        return "closed", None

    def _drop(self, session: ReaderSession) -> None:
        """Stop using ``session``; remember its thread until it has finished (joined by :meth:`close`)."""
        session.abandon()
        self._abandoned = [s for s in self._abandoned if s.thread.is_alive()]
        if session not in self._abandoned:
            self._abandoned.append(session)

    def _frame(self, image: np.ndarray, now: float, position: float, msec: float,
               gap: Gap | None) -> CapturedFrame:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            image, _ = to_bgr_uint8(image)
        if self.kind == "video":
            index = int(position) - 1  # the position after the read: this frame's 0-based index
            media_time = msec / 1000.0 if np.isfinite(msec) and msec >= 0 else None
        else:
            index, media_time = self.frames, None
        self.frames += 1
        if gap is not None:
            gap.end = now
            logger.warning("%s %s: frames again after %.2f s (%s, %d reconnects)", self.kind, self.label,
                           gap.seconds, gap.reason, gap.reconnects)
        return CapturedFrame(image, now, index, media_time, gap)

    def _damaged(self, first_bad: int, resumed_at: int | None, since: float) -> Gap:
        total = self.total if self.total is not None else "?"
        if resumed_at is None:
            line = f"ended at frame {first_bad} of {total}"
        else:
            line = f"frames {first_bad}-{resumed_at - 1} of {total} undecodable, resumed at frame {resumed_at}"
        self.damage.append(line)
        logger.warning("video %s: %s", self.label, line)
        gap = Gap(start=since, end=time.time(), reason=f"decoder error at frame {first_bad}")
        self.gaps.append(gap)
        return gap

    def _recover(self, reason: str, since: float, gap: Gap | None) -> Gap | None:
        """Reopen the live source until it opens (bounded backoff); the Gap, or ``None`` if closed meanwhile.

        ``gap``: the gap still open (a reopened source that stalled before its first frame), which
        this attempt continues rather than counting a second gap.

        Raises:
            SourceError: ``reconnect`` is off, or ``give_up_after`` seconds passed without frames.
        """
        self._drop(self._session)
        if not self.reconnect:
            raise SourceError(f"{self.kind} {self.label} stopped delivering frames after {self.frames} frames "
                              f"({reason}; reconnect is off)")
        if gap is None:
            logger.warning("%s %s: %s after %d frames, reconnecting", self.kind, self.label, reason, self.frames)
            gap = Gap(start=since, end=since, reason=reason)
            self.gaps.append(gap)
        pause = 0.1
        while not self._closed.is_set():
            waited = time.time() - since
            if self.give_up_after is not None and waited >= self.give_up_after:
                gap.end = time.time()
                raise SourceError(f"gave up on {self.kind} {self.label} after {waited:.1f} s without frames "
                                  f"({gap.reconnects} reconnect attempts; {gap.reason})")
            if self._closed.wait(min(pause, self._time_left(since))):
                break
            pause = min(pause * 2, self.backoff_cap)
            gap.reconnects += 1
            self.reconnects += 1
            session, info = self._open()
            self._session = session  # even a failed one: close() joins its thread
            if info is not None and not self._closed.is_set():
                return gap
        return None

    def _time_left(self, since: float) -> float:
        if self.give_up_after is None:
            return float("inf")
        return max(0.0, since + self.give_up_after - time.time())

    def stats(self) -> dict[str, float]:
        """Counters for a summary: frames, reconnects, gaps, seconds without frames."""
        return {"frames": self.frames, "reconnects": self.reconnects, "gaps": len(self.gaps),
                "gap_seconds": round(sum(gap.seconds for gap in self.gaps), 3)}

    def close(self) -> None:
        """Stop reading and join the reader threads (idempotent; callable from another thread).

        Bounded: a reader still inside a backend call after ``read_timeout + open_timeout + 1`` s
        (a camera driver that never returns) is left behind, with a warning.
        """
        self._closed.set()
        self._drop(self._session)
        deadline = time.monotonic() + self.read_timeout + self.open_timeout + 1.0
        for session in self._abandoned:
            if not session.join(max(0.0, deadline - time.monotonic())):
                logger.warning("%s %s: a reader thread is still inside OpenCV after close()", self.kind, self.label)
        self._abandoned = [s for s in self._abandoned if s.thread.is_alive()]

    def __enter__(self) -> ResilientCapture:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResilientCapture(kind={self.kind!r}, label={self.label!r}, frames={self.frames})"


def open_capture(source: CaptureSource, *, open_timeout: float = DEFAULT_OPEN_TIMEOUT,
                 read_timeout: float | None = None, stall_timeout: float = DEFAULT_STALL_TIMEOUT,
                 give_up_after: float | None = None, reconnect: bool = True,
                 backoff_cap: float = DEFAULT_BACKOFF_CAP,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 decoder_threads: int | None = None) -> ResilientCapture:
    """Open a camera index, ``rtsp://`` / ``http(s)://`` URL or video file for resilient reading.

    Timeouts in seconds: ``open_timeout`` / ``read_timeout`` (default: ``stall_timeout``) go to
    FFmpeg for network streams; ``stall_timeout`` is this module's watchdog for every live source;
    ``give_up_after`` (``None``: never) bounds a stretch without frames; ``backoff_cap`` the
    longest pause between reopen attempts (0.1 s, doubling). ``decoder_threads``: FFmpeg decoder
    threads for streams and files (``None``: FFmpeg's default; ignored for cameras).

    Raises:
        SourceError: the source is not one of those kinds or cannot be opened within
            ``open_timeout`` (+ 1 s of slack) at the first attempt (no retry: a wrong URL says so now).
        ImageError: the stated frame size is above ``max_pixels``.
        OptionError: a timeout is not a positive number, ``decoder_threads`` not a positive int.
    """
    for name, value in (("open_timeout", open_timeout), ("stall_timeout", stall_timeout),
                        ("read_timeout", stall_timeout if read_timeout is None else read_timeout),
                        ("backoff_cap", backoff_cap)):
        check_seconds(name, value)
    read_timeout = stall_timeout if read_timeout is None else read_timeout
    check_seconds("give_up_after", give_up_after, allow_none=True)
    check_max_pixels(max_pixels)
    target, kind, label = classify_source(source)
    threads = check_decoder_threads(decoder_threads)
    return ResilientCapture(target, kind, label, open_timeout=float(open_timeout), read_timeout=float(read_timeout),
                            stall_timeout=float(stall_timeout), give_up_after=give_up_after,
                            reconnect=bool(reconnect), backoff_cap=float(backoff_cap), max_pixels=max_pixels,
                            decoder_threads=threads)
