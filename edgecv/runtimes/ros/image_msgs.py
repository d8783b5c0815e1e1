"""``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` messages to BGR uint8 frames.

Raw images go through ``rosbags-image`` (it honours ``step`` and ``is_bigendian``); the result
is then made BGR uint8 ``[H, W, 3]`` the way every edgecv source does it
(:func:`~edgecv.runtimes.image.to_bgr_uint8`: mono8 -> 3 channels, mono16 scaled by 1/257).
Colour encodings other than BGR (rgb8, rgba8, bayer_*) are converted by rosbags-image to bgr8.
Compressed images are decoded with OpenCV after their header size is checked against
``max_pixels`` (a small JPEG can decode to gigabytes).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgecv.errors import ImageError
from edgecv.runtimes.image import check_pixels, decode_checked, to_bgr_uint8
from edgecv.runtimes.ros.typestore import require

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)
#: raw encodings taken as they are (gray or BGR; to_bgr_uint8 finishes them); others become bgr8
NATIVE = frozenset({"bgr8", "mono8", "mono16", "bgra8", "8UC1", "8UC3", "16UC1"})


def to_bgr(msg: Any, msgtype: str, max_pixels: int | None, where: str) -> tuple[np.ndarray, str | None]:
    """``(frame, note)``: the message's image as BGR uint8 ``[H, W, 3]`` and what was converted.

    Raises:
        ImageError: an encoding rosbags-image cannot convert, bytes that do not decode, or an
            image above ``max_pixels``.
    """
    if msgtype == COMPRESSED:
        return _compressed(msg, max_pixels, where), None
    check_pixels(int(msg.width), int(msg.height), max_pixels, where)
    convert = require("rosbags.image")
    try:
        if msg.encoding in NATIVE:
            image = convert.image_to_cvimage(msg)
        else:  # rgb8, rgba8, bayer_*, yuv422...: rosbags-image (OpenCV underneath) to bgr8
            image = convert.image_to_cvimage(msg, "bgr8")
    except (convert.ImageConversionError, convert.ImageFormatError, ValueError) as exc:
        raise ImageError(f"{where}: expected an image encoding rosbags-image converts (bgr8, rgb8, mono8, "
                         f"mono16, bayer_*...), found {msg.encoding!r} ({exc})") from None
    return to_bgr_uint8(image)


def _compressed(msg: Any, max_pixels: int | None, where: str) -> np.ndarray:
    return decode_checked(np.asarray(msg.data, dtype=np.uint8), max_pixels, where, cv2.IMREAD_COLOR,
                          f"{where}: expected a compressed image OpenCV decodes (format {msg.format!r})")
