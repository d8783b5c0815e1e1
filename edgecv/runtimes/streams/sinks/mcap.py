"""An MCAP sink (``--save-bag out.mcap``): ROS 2-typed detections that open in Foxglove with the
boxes drawn on the camera image, no ROS installation needed.

For every result it writes, with the image's header (a bag frame's ``header.stamp`` and
``frame_id``; otherwise ``result.timestamp`` and ``frame_id``):

=================================  ======================================  ==========================
topic (``prefix`` = ``/edgecv``)   type                                    what
=================================  ======================================  ==========================
``<prefix>/detections``            ``vision_msgs/msg/Detection2DArray``    one per image, even empty
``<prefix>/annotations``           ``foxglove_msgs/msg/ImageAnnotations``  boxes + labels to draw
``<prefix>/image/compressed``      ``sensor_msgs/msg/CompressedImage``     the frame as JPEG
                                                                           (``images=False``: none)
=================================  ======================================  ==========================

Message definitions (``ros2msg`` schemas) come from :mod:`edgecv.runtimes.ros.typestore`; the
payloads are CDR. The MCAP log time is the bag's log time for bag frames (so the output lines up
with the input bag in Foxglove), the header stamp otherwise.

A live output: the file is opened with the first result, grows chunk by chunk while the stream
runs (each finished chunk is flushed to the OS) and gets its summary and index at ``close()``.
After a hard kill (SIGKILL, power loss) the chunks written so far survive, i.e. all but at most
the last ``chunk_size`` bytes of messages; the summary is missing, so readers that need the index
fail until the file is recovered (``mcap recover in.mcap -o out.mcap``), while sequential readers
(``mcap.stream_reader``) read it as is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from edgecv.fileio import WriteError
from edgecv.runtimes.ros.typestore import msgdef, require
from edgecv.runtimes.streams.result import StreamResult

CHUNK_SIZE = 256 * 1024  # bytes of messages per chunk: what a hard kill can lose at most


class McapSink:
    """Writes ``path`` (an ``.mcap`` file); see the module docstring.

    Args:
        path: the output file (its folder must exist).
        images: also write each frame as ``sensor_msgs/CompressedImage`` (JPEG, ``jpeg_quality``).
        prefix: topic prefix of the written topics.
        frame_id: the ROS ``frame_id`` for frames that do not come from a bag.
    """

    def __init__(self, path: str | os.PathLike[str], images: bool = True, prefix: str = "/edgecv",
                 frame_id: str = "camera", jpeg_quality: int = 90) -> None:
        require("mcap.writer")  # fail before the stream starts, naming the extra
        self.path, self.images, self.prefix = Path(path), images, prefix.rstrip("/")
        self.frame_id, self.jpeg_quality = frame_id, jpeg_quality
        self.messages = 0  # Detection2DArray messages written (one per result)
        self._handle: IO[bytes] | None = None
        self._writer: Any = None
        self._channels: dict[str, int] = {}

    def _open(self) -> None:
        writer_module = require("mcap.writer")
        try:
            self._handle = self.path.open("wb")
        except OSError as exc:
            raise WriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._writer = writer_module.Writer(self._handle, chunk_size=CHUNK_SIZE,
                                            compression=writer_module.CompressionType.LZ4)
        self._writer.start(profile="ros2", library="edgecv")
        topics = {"detections": "vision_msgs/msg/Detection2DArray",
                  "annotations": "foxglove_msgs/msg/ImageAnnotations"}
        if self.images:
            topics["image/compressed"] = "sensor_msgs/msg/CompressedImage"
        for name, msgtype in topics.items():
            schema = self._writer.register_schema(name=msgtype, encoding="ros2msg", data=msgdef(msgtype).encode())
            self._channels[name] = self._writer.register_channel(topic=f"{self.prefix}/{name}",
                                                                 message_encoding="cdr", schema_id=schema)

    def write(self, result: StreamResult) -> None:
        """Append the result's messages; flush every finished chunk to the OS."""
        from edgecv.runtimes.ros import detection_msgs as msgs

        if self._writer is None:
            self._open()
        frame = result.header
        stamp_ns = frame.stamp_ns if frame is not None else int(round(result.timestamp * 1e9))
        log_ns = frame.log_time_ns if frame is not None else stamp_ns
        head = msgs.header(stamp_ns, frame.frame_id if frame is not None else self.frame_id)
        payloads = {"detections": msgs.detection_array(result.detections, head),
                    "annotations": msgs.image_annotations(result.detections, head.stamp)}
        if self.images:
            payloads["image/compressed"] = msgs.compressed_image(result.image, head, self.jpeg_quality)
        try:
            for name, data in payloads.items():
                self._writer.add_message(self._channels[name], log_time=log_ns, data=data, publish_time=stamp_ns,
                                         sequence=self.messages)
            self._handle.flush()  # a chunk the writer finished reaches the OS now, not at close
        except OSError as exc:
            raise WriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self.messages += 1

    def close(self) -> None:
        """Write the last chunk, the summary and the index; close the file (idempotent)."""
        writer, handle = self._writer, self._handle
        self._writer = self._handle = None
        if writer is None:
            return
        try:
            writer.finish()
        except OSError as exc:
            raise WriteError(f"cannot finish {self.path}: {exc.strerror or exc}") from exc
        finally:
            handle.close()
