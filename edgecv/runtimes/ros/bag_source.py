"""ROS bags as a stream source: ``predictor.stream("drive.bag", topic="/camera/image_raw")``.

A bag is a ROS 1 ``.bag`` file, a ROS 2 bag folder (one with ``metadata.yaml``; sqlite3 or
MCAP storage) or a single ROS 2 storage file (``.db3``, ``.mcap``), read with ``rosbags`` (no
ROS installation). One topic of type ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``
is read, in log-time order; each frame carries a
:class:`~edgecv.runtimes.streams.result.FrameHeader` (header stamp, frame_id, log time, topic)
and its ``timestamp`` is the header stamp in seconds. A bag is a file: the ``every`` policy
applies by default and nothing is paced to real time.

Compressed images are decoded ahead, in a small pool of threads (OpenCV releases the GIL), so
reading a bag keeps up with decoding a video of the same frames (``benchmarks/bench_bag_source.py``).
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgecv.errors import ImageError, OptionError, SourceError
from edgecv.runtimes.image import ConversionNotes
from edgecv.runtimes.ros.image_msgs import COMPRESSED, IMAGE_TYPES, to_bgr
from edgecv.runtimes.ros.typestore import require, typestore
from edgecv.runtimes.streams.readers import Captured, StreamSource
from edgecv.runtimes.streams.result import FrameHeader

BAG_SUFFIXES = frozenset({".bag", ".db3", ".mcap"})
DECODE_AHEAD = 4  # compressed frames decoded ahead of the consumer (2 workers): bounded memory
DECODE_WORKERS = 2


def bag_path(source: Any) -> Path | None:
    """``source`` as a bag path, or ``None`` if it is not one (cheap: no rosbags import).

    A bag: an existing ``.bag`` / ``.db3`` / ``.mcap`` file, or a folder holding ``metadata.yaml``
    (a ROS 2 bag, never an image folder).
    """
    if isinstance(source, bool) or not isinstance(source, (str, os.PathLike)):
        return None
    if isinstance(source, str) and ("://" in source or source.strip().isdigit()):
        return None
    path = Path(source)
    if path.is_dir():
        return path if (path / "metadata.yaml").is_file() else None
    return path if path.suffix.lower() in BAG_SUFFIXES and path.is_file() else None


class BagSource(StreamSource):
    """One image topic of an opened bag; see the module docstring.

    Attributes (beyond :class:`StreamSource`): ``topic``, ``msgtype`` (``sensor_msgs/msg/Image``
    or ``sensor_msgs/msg/CompressedImage``), ``path``.
    """

    def __init__(self, path: Path, reader: Any, topic: str, max_pixels: int | None) -> None:
        self.path, self.topic, self.max_pixels = path, topic, max_pixels
        self._reader = reader
        self._connections = [c for c in reader.connections if c.topic == topic]
        self.msgtype = self._connections[0].msgtype
        total = sum(c.msgcount for c in self._connections)
        seconds = reader.duration / 1e9 if total > 1 else 0.0
        fps = (total - 1) / seconds if seconds > 0 else None
        super().__init__("bag", path.name, (), fps=fps, total=total, root=path.parent, problems=self._report)
        self._notes = ConversionNotes()
        self._start_ns = reader.start_time
        self._skipped: list[str] = []  # messages that did not decode: skipped like a folder's bad files

    def read(self) -> Iterator[Captured]:
        """The topic's frames in log-time order, each with its :class:`FrameHeader`. A message
        whose image does not decode (or exceeds ``max_pixels``) is skipped and listed in ``problems``.

        Raises:
            SourceError: the bag itself cannot be read past some point (truncated, corrupt).
        """
        pool = ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="edgecv-bag-decode")
        ahead: deque[tuple[Future, FrameHeader, int, float]] = deque()
        try:
            start = time.perf_counter()
            for index, connection, log_ns, msg in self._messages():
                header = _header(msg, log_ns, connection.topic)
                where = f"{self.label} {self.topic} message {index}"
                ahead.append((pool.submit(to_bgr, msg, connection.msgtype, self.max_pixels, where), header,
                              index, start))
                start = time.perf_counter()
                while len(ahead) >= (DECODE_AHEAD if connection.msgtype == COMPRESSED else 1):
                    captured = self._captured(*ahead.popleft())
                    if captured is not None:
                        yield captured
            while ahead:
                captured = self._captured(*ahead.popleft())
                if captured is not None:
                    yield captured
        finally:
            for future, *_ in ahead:
                future.cancel()
            pool.shutdown(wait=True)

    def _messages(self) -> Iterator[tuple[int, Any, int, Any]]:
        """``(index, connection, log time ns, message)`` of the topic; rosbags' errors as SourceError."""
        errors = _rosbags_errors()
        index = -1
        try:
            for index, (connection, log_ns, raw) in enumerate(self._reader.messages(connections=self._connections)):
                yield index, connection, log_ns, self._reader.deserialize(raw, connection.msgtype)
        except errors as exc:
            raise SourceError(f"expected a readable ROS bag {self.label}, found it unreadable after message "
                              f"{index + 1} of {self.topic}: {exc}") from None

    def _captured(self, future: Future, header: FrameHeader, index: int, started: float) -> Captured | None:
        try:
            image, note = future.result()
        except ImageError as exc:
            self._skipped.append(str(exc))
            return None
        self._notes.report(note)
        return Captured(image, f"{self.label}#{index:06d}", index, header.stamp_ns / 1e9,
                        media_time=(header.log_time_ns - self._start_ns) / 1e9,
                        read_ms=(time.perf_counter() - started) * 1e3, header=header)

    def _report(self) -> list[str]:
        """What ``problems`` shows: the skipped messages (the first 10, then a count)."""
        shown = [f"skipped {reason}" for reason in self._skipped[:10]]
        if len(self._skipped) > 10:
            shown.append(f"skipped {len(self._skipped) - 10} more messages of {self.topic}")
        return shown

    def close(self) -> None:
        """Close the bag (idempotent)."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()


def _rosbags_errors() -> tuple[type[BaseException], ...]:
    """The exceptions rosbags raises for unreadable bag content."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Reader1Error
    from rosbags.rosbag2 import ReaderError as Reader2Error
    from rosbags.serde import SerdeError

    return (AnyReaderError, Reader1Error, Reader2Error, SerdeError, EOFError, ValueError)


def _header(msg: Any, log_ns: int, topic: str) -> FrameHeader:
    """The message's header as a :class:`FrameHeader`; a zero stamp falls back to the log time."""
    stamp = msg.header.stamp
    stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return FrameHeader(stamp_ns or int(log_ns), str(msg.header.frame_id), int(log_ns), topic)


def image_topics(reader: Any) -> dict[str, tuple[str, int]]:
    """``{topic: (msgtype, messages)}`` for every image topic of an opened reader."""
    topics: dict[str, tuple[str, int]] = {}
    for connection in reader.connections:
        if connection.msgtype in IMAGE_TYPES:
            _, count = topics.get(connection.topic, (connection.msgtype, 0))
            topics[connection.topic] = (connection.msgtype, count + connection.msgcount)
    return topics


def open_bag(path: Path, topic: str | None, max_pixels: int | None) -> BagSource:
    """Open the bag at ``path`` on its image ``topic``.

    Raises:
        SourceError: not a readable bag, or a bag without image topics.
        OptionError: ``topic`` missing or not one of the bag's image topics (the message lists them).
        MissingDependencyError: rosbags is not installed (the ``ros`` extra).
    """
    highlevel = require("rosbags.highlevel")
    try:
        reader = highlevel.AnyReader([path], default_typestore=typestore())
        reader.open()
    except (highlevel.AnyReaderError, OSError, ValueError, KeyError) as exc:
        raise SourceError(f"expected a readable ROS bag at {path}, found one rosbags cannot open: {exc}") from None
    try:
        topics = image_topics(reader)
        if not topics:
            found = ", ".join(sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})) or "no topics"
            raise SourceError(f"expected a bag with sensor_msgs/Image or CompressedImage topics at {path}, "
                              f"found {found}")
        if topic not in topics:
            listed = ", ".join(f"{name} ({kind.rsplit('/', 1)[-1]}, {count} messages)"
                               for name, (kind, count) in sorted(topics.items()))
            given = f"{topic!r}" if topic else "no topic given (--topic / topic=)"
            raise OptionError(f"topic: expected one of the image topics of {path.name}: {listed}; found {given}")
        return BagSource(path, reader, topic, max_pixels)
    except BaseException:
        reader.close()
        raise
