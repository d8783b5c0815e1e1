"""The reader thread behind :class:`~edgecv.runtimes.streams.capture.ResilientCapture`.

One :class:`ReaderSession` = one ``cv2.VideoCapture`` opened, read and released by one thread,
which hands messages to the consumer through a one-slot queue. A session the consumer gives up
on (a stall) is abandoned, never released from another thread: the backend call it is blocked
in returns in its own time (FFmpeg: the read timeout). At interpreter exit every running session
is stopped and joined (bounded).
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from typing import Any

import cv2
import numpy as np

RESYNC_BUDGET = 10.0  # s spent seeking past damage in a file before calling it the end
# Containers whose demuxer stops at damage and seeks by timestamp from an index: seeking past the
# damage lands where it says. AVI does neither: its demuxer skips damaged chunks silently, counts
# the frames after them from the skip (frame 50 reported as 36) and fails only at the real end,
# so a seek "past the damage" would deliver frames a second time (seen); there the early end is
# reported without seeking.
SEEKABLE_SUFFIXES = frozenset({".mp4", ".mov", ".m4v"})

# Reader threads still running: stopped and joined at interpreter exit, because a daemon thread
# still inside cv2 (a read, a release) while the interpreter finalises aborts the process (seen:
# exit 134 after a clean read of a file; "FATAL: exception not rethrown" after a `break` out of a
# live stream whose capture was never closed).
_RUNNING: set[ReaderSession] = set()
_RUNNING_LOCK = threading.Lock()
EXIT_JOIN = 5.0  # s, at most, spent joining reader threads at interpreter exit


class ReaderSession:
    """One ``cv2.VideoCapture`` owned by one reader thread, which hands over messages.

    Messages (``queue`` holds one, so the reader is at most two frames ahead: one queued, one in hand):
    ``("opened", info)``, ``("failed", reason)``, ``("frame", (image, time, pos_frames, pos_msec))``,
    ``("damaged", (first_bad, resumed_at | None))``, ``("ended", pos_frames)``. ``abandon()`` makes the
    thread stop after its current backend call; only that thread touches the capture.
    """

    def __init__(self, target: int | str, backend: int, params: list[int], file: bool) -> None:
        self.target, self.backend, self.params, self.file = target, backend, params, file
        self.seekable = file and str(target).lower().endswith(tuple(SEEKABLE_SUFFIXES))
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="edgecv-capture", daemon=True)
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        self.thread.start()

    def abandon(self) -> None:
        self.stopped.set()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the reader thread to finish; ``True`` if it did."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def get(self, timeout: float | None) -> tuple[str, Any] | None:
        """The next message, or ``None`` after ``timeout`` seconds (``None``: wait until one comes)."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _put(self, kind: str, payload: Any) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put((kind, payload), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        capture = cv2.VideoCapture(self.target, self.backend, self.params)
        try:
            if not capture.isOpened():
                self._put("failed", "open failed")
                return
            if not self._put("opened", stated_info(capture)):
                return
            while not self.stopped.is_set():
                ok, image = capture.read()
                now = time.time()
                if ok and image is not None:
                    position = capture.get(cv2.CAP_PROP_POS_FRAMES)
                    self._put("frame", (image, now, position, capture.get(cv2.CAP_PROP_POS_MSEC)))
                    continue
                if not (self.file and self._skip_damage(capture)):
                    self._put("ended", capture.get(cv2.CAP_PROP_POS_FRAMES))
                    return
        finally:
            capture.release()
            with _RUNNING_LOCK:
                _RUNNING.discard(self)

    def _skip_damage(self, capture: cv2.VideoCapture) -> bool:
        """After a failed read in a file: seek frame by frame past the damage; ``True`` if reading resumed.

        Reports ``("damaged", (first_bad, resumed_at))``; ``resumed_at`` is ``None`` when nothing
        after the damage decodes (within ``RESYNC_BUDGET`` seconds) or the container is not one
        of ``SEEKABLE_SUFFIXES``.
        """
        first_bad = int(capture.get(cv2.CAP_PROP_POS_FRAMES))
        total = int(finite(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 0)
        if first_bad >= total:
            return False  # the normal end of the file
        if not self.seekable:
            self._put("damaged", (first_bad, None))
            return False
        deadline = time.monotonic() + RESYNC_BUDGET
        for target in range(first_bad + 1, total):
            if self.stopped.is_set() or time.monotonic() > deadline:
                break
            capture.set(cv2.CAP_PROP_POS_FRAMES, target)
            ok, image = capture.read()
            if ok and image is not None:
                self._put("damaged", (first_bad, target))
                self._put("frame", (image, time.time(), target + 1, capture.get(cv2.CAP_PROP_POS_MSEC)))
                return True
        self._put("damaged", (first_bad, None))
        return False


def finite(value: float) -> float | None:
    """A property OpenCV reports, or ``None`` when it means "unknown" (0, -1, NaN, -2**63 for live streams)."""
    return float(value) if np.isfinite(value) and 0 < value < 2**31 else None


def stated_info(capture: cv2.VideoCapture) -> dict[str, float | None]:
    """What an opened source states about itself: ``width``, ``height``, ``fps``, ``total`` frames."""
    fps = finite(capture.get(cv2.CAP_PROP_FPS))
    return {"width": finite(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": finite(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "fps": fps if fps is not None and fps < 1000 else None,
            "total": finite(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            "threads": finite(capture.get(cv2.CAP_PROP_N_THREADS))}


@atexit.register
def _join_readers() -> None:
    """Stop every reader thread and wait (bounded) until each has left OpenCV."""
    with _RUNNING_LOCK:
        sessions = list(_RUNNING)
    deadline = time.monotonic() + EXIT_JOIN
    for session in sessions:
        session.abandon()
    for session in sessions:
        session.join(max(0.0, deadline - time.monotonic()))
