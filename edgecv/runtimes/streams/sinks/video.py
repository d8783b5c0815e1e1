"""A sink recording annotated frames into a video file that grows while the stream runs.

Format: a fragmented MP4 (MPEG-4 Part 2, or H.264 with ``codec="libx264"``; a key frame and a
fragment every second) written with PyAV, so the file plays at any moment, also after a hard kill
(SIGKILL, OOM, crash), which loses at most the last second; without PyAV (``pip install 'edgecv[record]'``) OpenCV's ``mp4v``, which a hard
kill leaves unplayable (a warning says so). Ctrl-C, SIGTERM and ``close()`` lose nothing.
Details and measurements: :mod:`edgecv.runtimes.streams.sinks.video_writers`.

Frame rate tag: the container's rate for files (``fps=`` given). For live sources the rate is
*measured* from the capture timestamps of the first frames that reach the sink (up to
:data:`MEASURE_FRAMES` frames, :data:`MEASURE_BYTES` of them or :data:`MEASURE_S` seconds, held
in memory meanwhile, so a hard kill in those first seconds loses them): those
are the frames recorded, after any the ``latest`` policy dropped, so a 10 fps camera, or a
30 fps camera processed at 8 frames/s, plays back at real speed.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgecv.errors import OptionError
from edgecv.runtimes.draw import annotate
from edgecv.runtimes.streams.result import StreamResult
from edgecv.runtimes.streams.sinks.video_writers import DEFAULT_CODEC, ENCODERS, FrameWriter, import_av, open_writer

MEASURE_FRAMES = 20
MEASURE_S = 2.0
MEASURE_BYTES = 128 * 2**20  # at most this much frame memory held while measuring (~21 1080p frames)
FALLBACK_FPS = 30.0  # a stream that ended before two frames: nothing to measure


def measured_fps(timestamps: list[float]) -> float:
    """Frames per second spanned by ``timestamps`` (seconds, ascending); FALLBACK_FPS if < 2."""
    if len(timestamps) < 2 or timestamps[-1] <= timestamps[0]:
        return FALLBACK_FPS
    return float(np.clip((len(timestamps) - 1) / (timestamps[-1] - timestamps[0]), 0.5, 240.0))


class VideoSink:
    """Appends ``annotate(result.image, result.result)`` (or the raw frame, ``draw=False``)
    to ``path``; frames of another size are resized to the first frame's.

    Args:
        path: the video file (``.mp4``); opened at the first frame.
        fps: the rate to tag; ``None`` measures it (see the module docstring).
        fragmented: ``None`` (default): a fragmented MP4 when PyAV is installed, else ``mp4v`` with a
            warning; ``True``: PyAV required (``MissingDependencyError`` here if it is missing);
            ``False``: OpenCV's ``mp4v``.
        codec: the fragmented MP4's encoder: ``"mpeg4"`` (default, cheapest) or ``"libx264"``
            (H.264: plays in browsers too, about twice the encode cost); see ``video_writers``.

    Attributes:
        frames: frames written. codec: the encoder used (``mpeg4``, ``libx264``, ``mp4v``), once open.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None, draw: bool = True,
                 fragmented: bool | None = None, codec: str = DEFAULT_CODEC) -> None:
        if codec not in ENCODERS:
            raise OptionError(f"codec: expected one of {sorted(ENCODERS)}, found {codec!r}")
        self.path = Path(path)
        self.fps = fps
        self.draw = draw
        self.fragmented, self._codec = fragmented, codec
        self.frames = 0
        self.codec: str | None = None
        self._writer: FrameWriter | None = None
        if fragmented:
            import_av()  # say now, not at the first frame, that the extra is missing
        self._size = (0, 0)
        self._held: list[tuple[float, np.ndarray]] = []  # (capture time, frame) while measuring the rate

    def write(self, result: StreamResult) -> None:
        image = annotate(result.image, result.result) if self.draw else result.image
        if self._writer is None and self.fps is None:
            self._held.append((result.timestamp, image))
            span = result.timestamp - self._held[0][0]
            if len(self._held) < self._measure_frames(image) and span < MEASURE_S:
                return
            self._release_held()
            return
        self._append(image)

    @staticmethod
    def _measure_frames(image: np.ndarray) -> int:
        """How many frames to measure the rate over: MEASURE_FRAMES, fewer for large frames (>= 3)."""
        return int(np.clip(MEASURE_BYTES // max(1, image.nbytes), 3, MEASURE_FRAMES))

    def _release_held(self) -> None:
        self.fps = measured_fps([stamp for stamp, _ in self._held])
        held, self._held = self._held, []
        for _, image in held:
            self._append(image)

    def _append(self, image: np.ndarray) -> None:
        if self._writer is None:
            h, w = image.shape[:2]
            self._writer = open_writer(self.path, float(self.fps), (w, h), self.fragmented, self._codec)
            self._size, self.codec = (w, h), self._writer.codec
        if (image.shape[1], image.shape[0]) != self._size:  # a stream changed resolution: keep the first
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    @property
    def written(self) -> bool:
        """True once the file exists (frames written, or held frames that close() will write)."""
        return self._writer is not None or bool(self._held)

    def close(self) -> None:
        """Write any frames still held for rate measurement, then finalise the file (idempotent)."""
        if self._held:
            self._release_held()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
