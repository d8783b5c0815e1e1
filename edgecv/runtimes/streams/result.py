"""The types every stream stage shares: what a stream yields and what a sink consumes.

Stages are one module each: the pipeline (``pipeline.py``), resilient capture of live sources
(``capture.py``), tracking (``tracking.py``) and sinks (``sinks/<name>.py``). They meet here so
none imports another to learn a type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgecv.runtimes.detections import Detections
from edgecv.runtimes.semantic_map import SemanticMap

#: ``policy`` values: ``latest`` keeps only the newest captured frame (live sources: no queue to
#: lag behind, dropped frames counted); ``every`` processes every frame in order (files).
POLICIES = ("latest", "every")


@dataclass
class Gap:
    """A stretch without frames from a live source: it dropped, stalled, or was reopened."""

    start: float  # time.time() when frames stopped
    end: float  # time.time() when frames flowed again (or the stream ended)
    reason: str  # e.g. "read failed", "stalled 2.0 s", "decoder error at frame 45"
    reconnects: int = 0  # reopen attempts during the gap

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class FrameHeader:
    """Where a frame of a recorded log (a ROS bag message) came from.

    ``stamp_ns`` is the message's ``header.stamp`` in integer nanoseconds (the log time when the
    recorder left the stamp at zero), ``log_time_ns`` when the bag recorded the message; the ROS
    ``frame_id`` and the topic ride along so a sink can write detections with the image's header.
    """

    stamp_ns: int
    frame_id: str
    log_time_ns: int
    topic: str

    @property
    def log_time(self) -> float:
        """The bag's log time in seconds."""
        return self.log_time_ns / 1e9


@dataclass
class StreamResult:
    """One processed frame.

    ``image`` is the frame as captured (BGR uint8, [H, W, 3]); ``detections`` are in its pixels
    (with ``track_ids`` when tracking is on). ``timestamp`` is the capture time (``time.time()``
    seconds; for files, the media time when the container states it, see ``media_time``),
    ``age`` the seconds from capture until this result was ready. ``timing`` holds per-stage
    milliseconds (keys among ``read``, ``pre``, ``infer``, ``post``, ``track``, ``sinks``).
    ``dropped`` counts frames the ``latest`` policy skipped before this one; ``gap`` is set on the
    first frame after a gap. ``header`` is set for frames of a ROS bag (``timestamp`` is then
    the message's ``header.stamp``, see :class:`FrameHeader`).

    Tasks: for ``detect`` and ``segment`` artifacts the result is ``detections`` (with
    ``masks`` for ``segment``). For a ``semantic`` artifact, ``semantic`` holds the
    :class:`~edgecv.runtimes.semantic_map.SemanticMap` and ``detections`` is empty, so code that
    only knows detections keeps working; :attr:`result` is the task's result either way.
    """

    image: np.ndarray
    detections: Detections
    index: int  # frame index in the source (counts dropped frames too)
    name: str  # file name for images, e.g. "clip.mp4#45" for video frames
    timestamp: float
    age: float = 0.0
    media_time: float | None = None
    timing: dict[str, float] = field(default_factory=dict)
    dropped: int = 0
    gap: Gap | None = None
    header: FrameHeader | None = None
    semantic: SemanticMap | None = None  # task semantic: the label map (then detections is empty)

    @property
    def result(self) -> Detections | SemanticMap:
        """The task's result: :attr:`semantic` for a semantic artifact, else :attr:`detections`."""
        return self.semantic if self.semantic is not None else self.detections

    def to_dict(self) -> dict[str, Any]:
        """One line of a stream's jsonl: the ``edgecv.result/1`` document plus frame fields."""
        doc = self.result.to_dict()
        doc.update(name=self.name, frame_index=self.index, timestamp=round(self.timestamp, 6))
        if self.header is not None:  # a bag message: its log time and ROS frame beside the header stamp
            doc.update(log_time=round(self.header.log_time, 6), frame_id=self.header.frame_id)
        return doc


@runtime_checkable
class Sink(Protocol):
    """Where results go: a window, a video file, a jsonl file, a callback, the browser view.

    ``write`` is called from the pipeline's sink thread, once per result, in order; it must not
    keep a reference to ``result.image`` beyond the call unless it copies it. ``close`` flushes
    and finalises (called once, also on Ctrl-C / SIGTERM). A sink may also have a
    ``stop_requested`` attribute: once true (a window closed with q / Esc), the stream ends normally
    after the current result.
    """

    def write(self, result: StreamResult) -> None: ...

    def close(self) -> None: ...
