"""What :func:`~edgecv.runtimes.streams.capture.open_capture` takes: the kinds of source and the option checks.

Pure functions, no OpenCV: a camera index (``0`` or ``"0"``), an ``rtsp://`` / ``http(s)://`` URL
or a video file path is classified as ``"camera"``, ``"stream"`` or ``"video"`` with a printable
label (no URL password); timeouts and decoder thread counts are checked with errors that say
expected vs found. :mod:`edgecv.runtimes.streams.capture` re-exports :func:`capture_kind` and
:data:`CaptureSource`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from edgecv.errors import OptionError, SourceError
from edgecv.runtimes.sources import STREAM_SCHEMES, VIDEO_SUFFIXES, _safe_label

CaptureSource = Union[int, str, os.PathLike]


def check_seconds(name: str, value: float | None, allow_none: bool = False) -> None:
    """:class:`OptionError` unless ``value`` is a positive number of seconds (or ``None`` with ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise OptionError(f"expected {name} > 0 seconds{' or None' if allow_none else ''}, found {value!r}")


def classify_source(source: CaptureSource) -> tuple[int | str, str, str]:
    """``(target for OpenCV, kind, label)`` of a camera index, stream URL or video file path."""
    if isinstance(source, bool):
        raise SourceError(f"expected a camera index, a stream URL or a video file, found {source!r}")
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return int(source), "camera", f"camera{int(source)}"
    if isinstance(source, str) and source.lower().startswith(STREAM_SCHEMES):
        return source, "stream", _safe_label(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            return str(path), "video", path.name
        raise SourceError(f"expected a camera index, a stream URL or a video file "
                          f"({', '.join(sorted(VIDEO_SUFFIXES))}), found {path}"
                          f"{'' if path.exists() else ' (no such file)'}")
    raise SourceError(f"expected a camera index, a stream URL or a video file, found {type(source).__name__}")


def capture_kind(source: object) -> str | None:
    """``"camera"``, ``"stream"`` or ``"video"`` if :func:`~edgecv.runtimes.streams.capture.open_capture`
    takes ``source``, else ``None``.

    For a caller choosing between :mod:`~edgecv.runtimes.streams.capture` and
    :func:`~edgecv.runtimes.sources.iter_source`
    (images, folders, ``FrameSource`` objects) before opening anything.
    """
    if not isinstance(source, (int, str, os.PathLike)):
        return None
    try:
        return classify_source(source)[1]
    except SourceError:
        return None


def check_decoder_threads(value: int | None) -> int | None:
    """The decoder thread count to ask FFmpeg for (``None``: its default).

    See :func:`~edgecv.runtimes.streams.capture.open_capture`. Raises :class:`OptionError` unless a
    positive int or ``None``.
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise OptionError(f"decoder_threads: expected a positive int or None, found {value!r}")
    return value
