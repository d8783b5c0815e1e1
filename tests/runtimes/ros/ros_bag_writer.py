"""Bags written by the tests (and benchmarks) themselves with rosbags: ROS 1 ``.bag``, ROS 2 sqlite3 and MCAP;
raw (bgr8, rgb8, mono8, mono16, bayer) and compressed (JPEG / PNG) images.

Frames are 128x96 with one coloured quadrant (the toy detector of ``tests/runtimes/conftest.py``
finds it: red / green / blue by frame index), so detections differ per frame. Header stamps are
deliberately unlike the log times (offset 1.5 s plus a per-frame nanosecond part), so a test can
tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 128, 96
LOG_START_NS = 1_700_000_000_000_000_000
STEP_NS = 33_333_333
STAMP_OFFSET_NS = -1_500_000_000  # header stamps are earlier than log times (camera-side clock)
FRAME_ID = "camera_optical"
TOPIC = "/camera/image_raw"
OTHER_TOPIC = "/camera/depth"


@dataclass
class WrittenBag:
    path: Path
    topic: str
    frames: list[np.ndarray]  # what a reader should get back: BGR uint8
    stamps_ns: list[int]
    log_ns: list[int]


def frame(index: int) -> np.ndarray:
    """BGR uint8 [HEIGHT, WIDTH, 3]: black with one saturated quadrant (colour and place by index)."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    colour = [(0, 0, 255), (0, 255, 0), (255, 0, 0)][index % 3]  # red, green, blue in BGR
    x, y = (index % 2) * WIDTH // 2, ((index // 2) % 2) * HEIGHT // 2
    image[y:y + HEIGHT // 2, x:x + WIDTH // 2] = colour
    return image


def stamp_ns(index: int) -> int:
    return LOG_START_NS + STAMP_OFFSET_NS + index * STEP_NS + 7 * index  # odd nanoseconds: exactness shows


def _encode(store, image: np.ndarray, encoding: str):
    """``(message, expected BGR frame)`` for ``encoding``: a raw one or ``jpeg`` / ``png`` (compressed)."""
    if encoding in ("jpeg", "png"):
        ok, data = cv2.imencode(f".{'jpg' if encoding == 'jpeg' else 'png'}", image)
        assert ok
        expected = cv2.imdecode(data, cv2.IMREAD_COLOR)
        return store.types["sensor_msgs/msg/CompressedImage"], dict(format=encoding, data=data.ravel()), expected
    channels = {"bgr8": image, "rgb8": image[:, :, ::-1]}
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if encoding == "mono8":
        data, expected = gray, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    elif encoding == "mono16":
        data = gray.astype(np.uint16) * 257
        expected = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    elif encoding == "bayer_rggb8":
        data = np.zeros((HEIGHT, WIDTH), np.uint8)  # sample an RGGB mosaic out of the BGR frame
        data[0::2, 0::2], data[0::2, 1::2] = image[0::2, 0::2, 2], image[0::2, 1::2, 1]
        data[1::2, 0::2], data[1::2, 1::2] = image[1::2, 0::2, 1], image[1::2, 1::2, 0]
        expected = None  # demosaicing blurs edges: compared loosely
    else:
        data, expected = channels[encoding], image
    data = np.ascontiguousarray(data)
    fields = dict(height=HEIGHT, width=WIDTH, encoding=encoding, is_bigendian=0,
                  step=data.strides[0], data=data.view(np.uint8).ravel())
    return store.types["sensor_msgs/msg/Image"], fields, expected


def write_bag(path: Path, kind: str, encoding: str, count: int = 24, topic: str = TOPIC) -> WrittenBag:
    """Write ``count`` frames to a bag of ``kind`` ``ros1`` | ``sqlite3`` | ``mcap`` (plus one
    non-image topic and a second image topic, so a reader must pick); returns what was written."""
    from rosbags.typesys import Stores, get_typestore

    ros1 = kind == "ros1"
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    Time, Header = store.types["builtin_interfaces/msg/Time"], store.types["std_msgs/msg/Header"]
    String = store.types["std_msgs/msg/String"]
    serialize = store.serialize_ros1 if ros1 else store.serialize_cdr
    writer = _writer(path, kind)
    written = WrittenBag(path, topic, [], [], [])
    with writer:
        conn, other, text = None, None, writer.add_connection("/status", String.__msgtype__, typestore=store)
        for index in range(count):
            msgtype, fields, expected = _encode(store, frame(index), encoding)
            if conn is None:
                conn = writer.add_connection(topic, msgtype.__msgtype__, typestore=store)
                other = writer.add_connection(OTHER_TOPIC, msgtype.__msgtype__, typestore=store)
            ns = stamp_ns(index)
            stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
            header = Header(seq=index, stamp=stamp, frame_id=FRAME_ID) if ros1 else Header(stamp=stamp,
                                                                                          frame_id=FRAME_ID)
            log = LOG_START_NS + index * STEP_NS
            writer.write(conn, log, serialize(msgtype(header=header, **fields), msgtype.__msgtype__))
            if index % 4 == 0:  # other topics interleaved: the reader must filter
                writer.write(other, log + 1, serialize(msgtype(header=header, **fields), msgtype.__msgtype__))
                writer.write(text, log + 2, serialize(String(data=f"ok {index}"), String.__msgtype__))
            written.frames.append(expected)
            written.stamps_ns.append(ns)
            written.log_ns.append(log)
    return written


def _writer(path: Path, kind: str):
    if kind == "ros1":
        from rosbags.rosbag1 import Writer

        return Writer(path)
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = StoragePlugin.MCAP if kind == "mcap" else StoragePlugin.SQLITE3
    return Writer(path, version=9, storage_plugin=plugin)


