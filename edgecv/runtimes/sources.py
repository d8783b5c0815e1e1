"""Frame sources: an image file, a folder of images, a video file, a camera or a network stream.

``iter_source(source)`` returns a :class:`FrameSource`, an iterable of ``(name, frame)`` with
``frame`` HxWx3 uint8 BGR:

=============================  ==========  ====================================================
source                         kind        names
=============================  ==========  ====================================================
``photo.jpg``                  ``image``   ``photo.jpg``
``folder/`` (recursive)        ``folder``  path relative to the folder, ``sub/b.png`` (sorted)
``clip.mp4``                   ``video``   ``clip.mp4#000012`` (0-based frame index)
``0`` / ``"0"``                ``camera``  ``camera0#000012``
``rtsp://`` / ``http(s)://``   ``stream``  ``rtsp://host/path#000012`` (credentials removed)
=============================  ==========  ====================================================

Opening problems raise :class:`~edgecv.errors.SourceError` at ``iter_source`` time. In a
folder, files that cannot be decoded are skipped and listed in ``FrameSource.skipped``. A
video file ends cleanly when its frames run out, and so does a stream URL (OpenCV cannot tell a
server's end of stream from a drop; reconnecting is the resilient capture's job); a camera that
stops delivering frames raises :class:`~edgecv.errors.SourceError` (it has no natural end).
Grayscale / BGRA / 16-bit images are converted (one ``ImageConversionWarning`` per kind).

``max_pixels`` bounds the decoded size (see :func:`~edgecv.runtimes.image.read_image`): an image
file above it is refused before decoding (skipped in a folder), and a video / camera / stream
whose reported frame size is above it is refused at ``iter_source`` time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Iterator, Union

import cv2
import numpy as np

from edgecv.errors import ImageError, SourceError
from edgecv.runtimes.image import (DEFAULT_MAX_PIXELS, ConversionNotes, check_max_pixels, check_pixels, read_image,
                                   to_bgr_uint8)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm",
                            ".pnm", ".jp2"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                            ".ts", ".mts"})
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
EXPECTED = ("an image file, a folder of images, a video file "
            f"({', '.join(sorted(VIDEO_SUFFIXES))}), a camera index or a stream URL")

Frame = tuple[str, np.ndarray]


@dataclass(frozen=True)
class SkippedFile:
    """A file of a folder source that was not used, and why."""

    path: str
    reason: str


class FrameSource:
    """Iterable of ``(name, frame BGR uint8)``; see the module docstring. Also a context manager.

    Attributes:
        kind: ``"image"``, ``"folder"``, ``"video"``, ``"camera"`` or ``"stream"``.
        label: printable name of the source (credentials removed from URLs).
        root: folder holding the input files (``None`` for cameras and streams).
        skipped: files skipped so far (folder sources only).
        total: number of frames expected, ``None`` if unknown (live sources).
        fps: frames per second of a video / camera / stream (``None`` for images).
    """

    kind: str = ""

    def __init__(self, label: str, root: Path | None) -> None:
        self.label = label
        self.root = root
        self.skipped: list[SkippedFile] = []
        self.total: int | None = None
        self.fps: float | None = None
        self._notes = ConversionNotes()

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _convert(self, image: np.ndarray) -> np.ndarray:
        bgr, note = to_bgr_uint8(image)
        self._notes.report(note)
        return bgr

    def close(self) -> None:
        """Release any open device or file (idempotent)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, label={self.label!r}, total={self.total})"


class ImageFiles(FrameSource):
    """One image file (``kind="image"``, decoding errors raise) or a folder (``kind="folder"``, they are skipped)."""

    def __init__(self, paths: list[Path], root: Path, kind: str, label: str,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(label, root)
        self.kind = kind
        self.paths = paths
        self.total = len(paths)
        self.max_pixels = check_max_pixels(max_pixels)

    def __iter__(self) -> Iterator[Frame]:
        self.skipped = []
        for path in self.paths:
            name = path.relative_to(self.root).as_posix()
            try:
                frame = self._convert(read_image(path, self.max_pixels))
            except ImageError as exc:
                if self.kind == "image":
                    raise
                self.skipped.append(SkippedFile(str(path), str(exc)))
                continue
            yield name, frame


def _safe_label(url: str) -> str:
    """``url`` without ``user:password@``."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", url)


class VideoFrames(FrameSource):
    """Frames of a video file (``kind="video"``), a camera (``"camera"``) or a stream URL (``"stream"``)."""

    def __init__(self, target: int | str, kind: str, label: str, root: Path | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(label, root)
        self.kind = kind
        self.target = target
        self.max_pixels = check_max_pixels(max_pixels)
        self._capture: cv2.VideoCapture | None = None
        self._open()

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            where = self.target if self.kind == "video" else self.label  # full path, but no URL password
            raise SourceError(f"expected a readable {self.kind} at {where}, found one OpenCV cannot open")
        width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
        if np.isfinite(width) and np.isfinite(height):  # the container's frame size: refuse before reading one
            try:
                check_pixels(int(width), int(height), self.max_pixels, f"{self.kind} {self.label}")
            except ImageError:
                capture.release()
                raise
        fps, count = capture.get(cv2.CAP_PROP_FPS), capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.fps = float(fps) if np.isfinite(fps) and 0 < fps < 1000 else None
        self.total = int(count) if np.isfinite(count) and 0 < count < 2**31 else None
        self._capture = capture
        return capture

    def __iter__(self) -> Iterator[Frame]:
        capture = self._capture if self._capture is not None else self._open()
        # kept on self while the loop runs, so close() releases it even when a caller still holds the iterator
        self._capture = capture
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                yield f"{self.label}#{index:06d}", self._convert(frame)
                index += 1
        finally:
            capture.release()
            if self._capture is capture:
                self._capture = None  # the next loop opens a fresh capture
        if self.kind == "camera":  # a stream URL's end (server EOS) is a normal end; a camera has none
            raise SourceError(f"{self.kind} {self.label} stopped delivering frames after {index} frames")

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


SourceLike = Union[FrameSource, int, str, os.PathLike]


def _folder(path: Path, max_pixels: int | None) -> ImageFiles:
    paths = sorted((p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(path).as_posix())
    if not paths:
        raise SourceError(f"expected image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}, found none")
    return ImageFiles(paths, path, "folder", str(path), max_pixels)


def _file(path: Path, max_pixels: int | None) -> FrameSource:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return ImageFiles([path], path.parent, "image", str(path), max_pixels)
    if suffix in VIDEO_SUFFIXES:
        return VideoFrames(str(path), "video", path.name, path.parent, max_pixels)
    raise SourceError(f"expected {EXPECTED}, found {path} with unsupported suffix {suffix or '(none)'!r}")


def iter_source(source: SourceLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> FrameSource:
    """Open ``source`` (see the module docstring) and return a :class:`FrameSource` to iterate.

    ``max_pixels``: largest frame / decoded image, in pixels (``None``: no limit); not applied to
    a ``FrameSource`` passed in (it has its own).

    Raises:
        SourceError: the source does not exist, has an unsupported suffix, is an empty folder,
            or OpenCV cannot open the video / camera / stream.
        ImageError: a video / camera / stream whose frames are larger than ``max_pixels``.
        OptionError: ``max_pixels`` is not a positive int or None.
    """
    check_max_pixels(max_pixels)
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, bool):
        raise SourceError(f"expected {EXPECTED}, found {source!r}")
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        index = int(source)
        return VideoFrames(index, "camera", f"camera{index}", max_pixels=max_pixels)
    if isinstance(source, str) and source.lower().startswith(STREAM_SCHEMES):
        return VideoFrames(source, "stream", _safe_label(source), max_pixels=max_pixels)
    if not isinstance(source, (str, os.PathLike)):
        raise SourceError(f"expected {EXPECTED}, found {type(source).__name__}")
    path = Path(source)
    if path.is_dir():
        return _folder(path, max_pixels)
    if path.is_file():
        return _file(path, max_pixels)
    raise SourceError(f"expected {EXPECTED}, found no such file or folder: {path}")
