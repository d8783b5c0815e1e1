"""Frame readers: what the pipeline's capture stage iterates, whatever the source.

A reader is any iterator of :class:`Captured` (one decoded frame and when it was read).
:func:`open_source` builds one from every source :func:`~edgecv.runtimes.sources.iter_source`
accepts (images, folders, video files, camera indices, URLs) or from a Python iterable of BGR
frames (``np.ndarray``) or of ``(frame, timestamp)`` pairs. Cameras, URLs and video files are
read through the resilient capture (``streams/capture.py``), as ``(frame, time, gap)`` triples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from edgecv.errors import OptionError, SourceError
from edgecv.runtimes.sources import FrameSource, SourceLike, iter_source
from edgecv.runtimes.streams.capture import capture_kind, open_capture
from edgecv.runtimes.streams.result import POLICIES, FrameHeader, Gap

#: source kinds whose frames arrive in real time (the capture thread must keep up with them)
LIVE_KINDS = ("camera", "stream")


@dataclass
class Captured:
    """One frame as the capture stage read it: ``image`` BGR uint8 [H, W, 3]."""

    image: np.ndarray
    name: str
    index: int  # position in the source, dropped frames included
    timestamp: float  # time.time() when the frame was read (or the timestamp the reader gave)
    media_time: float | None = None  # seconds into a file (index / container rate)
    read_ms: float = 0.0  # time spent reading + decoding it
    dropped: int = 0  # frames the ``latest`` policy skipped before this one (set by the pipeline)
    gap: Gap | None = None
    # pre-processed in the capture thread (``every`` policy): the network tensor, letterbox info, ms
    tensor: np.ndarray | None = None
    infos: list[Any] | None = None
    pre_ms: float = 0.0
    header: FrameHeader | None = None  # ROS bag frames: header stamp, frame_id, log time, topic


class StreamSource:
    """A source opened for streaming: its description plus an iterator of :class:`Captured`.

    Attributes:
        kind: ``image``, ``folder``, ``video``, ``camera``, ``stream`` or ``frames`` (a Python iterable).
        label: printable name (no URL credentials).
        fps: the container's / device's stated frame rate, or ``None``.
        total: frames expected, or ``None`` (live sources, iterables).
        root: the folder holding the input files (``None`` for cameras, streams, iterables).
        frame_source: the underlying :class:`FrameSource` (``None`` for iterables): its
            ``skipped`` lists folder files that could not be decoded.
    """

    def __init__(self, kind: str, label: str, frames: Iterable[Any], fps: float | None = None,
                 total: int | None = None, frame_source: FrameSource | None = None,
                 closer: Callable[[], object] | None = None,
                 problems: Callable[[], list[str]] | None = None, root: Path | None = None) -> None:
        self.kind, self.label, self.fps, self.total = kind, label, fps, total
        self.root = root if frame_source is None else frame_source.root  # folder of input files
        self._problems = problems  # e.g. a damaged file's "ended at frame 45 of 90"
        self.frame_source = frame_source
        self._frames = frames
        self._closer = closer  # releases a reader that is not a FrameSource (e.g. a resilient capture)

    @property
    def live(self) -> bool:
        """True for a camera, or a URL that states no frame count (it has no natural end)."""
        return self.kind in LIVE_KINDS and self.total is None

    def default_policy(self) -> str:
        """``latest`` for live sources (never lag behind), ``every`` for everything finite."""
        return "latest" if self.live else "every"

    def read(self) -> Iterator[Captured]:
        """The frames, in order, each stamped with its read time and read duration."""
        named = self.frame_source is not None
        start = time.perf_counter()
        for index, item in enumerate(self._frames):
            done = time.perf_counter()
            if named:
                name, image = item
                stamp = time.time()
                gap = None
            else:
                image, stamp, gap = _frame_and_time(item, index)
                name = f"{self.label if self.kind != 'frames' else 'frame'}#{index:06d}"
            media = index / self.fps if self.fps and self.kind == "video" else None
            yield Captured(image, name, index, stamp, media, (done - start) * 1e3, gap=gap)
            start = time.perf_counter()

    @property
    def problems(self) -> list[str]:
        """What the reader reported about the source itself (damage, early end); empty if none."""
        return self._problems() if self._problems is not None else []

    def close(self) -> None:
        """Release the device / file (idempotent)."""
        if self.frame_source is not None:
            self.frame_source.close()
        if self._closer is not None:
            self._closer()


def _frame_and_time(item: Any, index: int) -> tuple[np.ndarray, float, Gap | None]:
    """``item`` of an iterable source: a frame, ``(frame, timestamp)`` or ``(frame, timestamp, gap)``
    (a live capture reports the :class:`Gap` before a frame that follows a reconnect)."""
    if isinstance(item, tuple) and len(item) in (2, 3) and isinstance(item[0], np.ndarray):
        gap = item[2] if len(item) == 3 else None
        return item[0], float(item[1]), gap
    if isinstance(item, np.ndarray):
        return item, time.time(), None
    raise SourceError(f"frame {index} of the iterable: expected a BGR uint8 array [H, W, 3], "
                      f"(array, timestamp) or (array, timestamp, gap), found {type(item).__name__}")


def open_source(source: SourceLike | Iterable[Any], max_pixels: int | None,
                capture: dict[str, Any] | None = None, topic: str | None = None) -> StreamSource:
    """Open ``source`` for streaming (see the module docstring). ``capture``: keyword options of
    :func:`~edgecv.runtimes.streams.capture.open_capture` for cameras, URLs and video files
    (``open_timeout``, ``stall_timeout``, ``give_up_after``, ``reconnect``, ...). ``topic``: the
    image topic of a ROS bag (``.bag``, ``.db3``, ``.mcap``, a folder with ``metadata.yaml``).

    Raises:
        SourceError / ImageError / OptionError: as :func:`~edgecv.runtimes.sources.iter_source`;
        OptionError also for a bag ``topic`` that is missing or wrong, or one given for another source.
    """
    if isinstance(source, StreamSource):
        return source
    bag = bag_path(source)  # table entry: ROS bags (edgecv/runtimes/ros/bag_source.py)
    if bag is not None:
        return open_bag(bag, topic, max_pixels)
    if topic is not None:
        raise OptionError(f"topic: expected a ROS bag source (.bag, .db3, .mcap or a folder with metadata.yaml) "
                          f"with it, found {source!r}")
    if not isinstance(source, FrameSource) and capture_kind(source) is not None:
        return _resilient(source, max_pixels, capture or {})
    if isinstance(source, (FrameSource, int, str)) or hasattr(source, "__fspath__"):
        frames = iter_source(source, max_pixels=max_pixels)
        return StreamSource(frames.kind, frames.label, frames, frames.fps, frames.total, frames)
    if isinstance(source, np.ndarray):
        raise SourceError("expected a source or an iterable of frames, found one array: "
                          "pass [frame] or call the predictor directly")
    if isinstance(source, Iterable):
        return StreamSource("frames", "frames", source)
    raise SourceError(f"expected an image, folder, video, camera index, URL or iterable of frames, "
                      f"found {type(source).__name__}")


def _resilient(source: Any, max_pixels: int | None, options: dict[str, Any]) -> StreamSource:
    """Cameras, URLs and video files through :mod:`.capture`: reconnect with backoff, stall
    watchdog, gaps reported on the next frame, damaged files reported and read past."""
    capture = open_capture(source, max_pixels=max_pixels, **options)
    frames = ((f.image, f.timestamp, f.gap) for f in capture)
    return StreamSource(capture.kind, capture.label, frames, capture.fps, None if capture.live else capture.total,
                        closer=capture.close, problems=lambda: list(capture.damage),
                        root=Path(capture.target).parent if capture.kind == "video" else None)


def bag_path(source: Any) -> Path | None:
    """``source`` as a ROS bag path, or ``None`` (see :func:`edgecv.runtimes.ros.bag_source.bag_path`)."""
    from edgecv.runtimes.ros.bag_source import bag_path as find

    return find(source)


def open_bag(path: Path, topic: str | None, max_pixels: int | None) -> StreamSource:
    """A ROS bag's image topic as a stream source (:mod:`edgecv.runtimes.ros.bag_source`)."""
    from edgecv.runtimes.ros.bag_source import open_bag as opened

    return opened(path, topic, max_pixels)


def check_policy(policy: str | None, source: StreamSource) -> str:
    """``policy`` or the source's default; :class:`OptionError` for an unknown one."""
    if policy is None:
        return source.default_policy()
    if policy not in POLICIES:
        raise OptionError(f"policy: expected one of {', '.join(POLICIES)}, found {policy!r}")
    return policy
