"""Detections as ROS 2 messages (typestore types of :mod:`.typestore`), serialised to CDR.

* ``vision_msgs/msg/Detection2DArray`` (vision_msgs 4.x): one ``Detection2D`` per box with the
  image's header; ``results[0].hypothesis.class_id`` is the class *name* (a ``string`` in 4.x; it
  was an ``int64`` ``id`` before), ``score`` the confidence; ``bbox.center`` / ``size_x`` /
  ``size_y`` in original-image pixels (centre = (x1 + x2) / 2, size = x2 - x1); ``id`` is the
  track id when tracking is on, else empty.
* ``foxglove_msgs/msg/ImageAnnotations``: a closed polygon per box plus a text label, in pixels
  with the top-left corner of the top-left pixel as origin (the same as edgecv's boxes).
* ``sensor_msgs/msg/CompressedImage``: the frame as JPEG.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgecv.errors import ImageError
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.draw import class_color, track_color
from edgecv.runtimes.ros.typestore import typestore

DETECTIONS = "vision_msgs/msg/Detection2DArray"
ANNOTATIONS = "foxglove_msgs/msg/ImageAnnotations"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
_IDENTITY = np.zeros(36, np.float64)  # pose covariance: unknown (a 2D detector has no 3D pose)


def header(stamp_ns: int, frame_id: str) -> Any:
    """A ``std_msgs/msg/Header`` for ``stamp_ns`` (integer ns since the epoch) and ``frame_id``."""
    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def detection_array(detections: Detections, head: Any) -> bytes:
    """CDR bytes of a ``Detection2DArray`` for ``detections`` (boxes x1, y1, x2, y2 in image pixels)."""
    t = typestore().types
    pose = t["geometry_msgs/msg/PoseWithCovariance"](
        pose=t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                         orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
        covariance=_IDENTITY)
    tracks = detections.track_ids
    items = []
    for i, ((x1, y1, x2, y2), score, label) in enumerate(zip(detections.boxes.tolist(), detections.scores.tolist(),
                                                             detections.labels)):
        hypothesis = t["vision_msgs/msg/ObjectHypothesis"](class_id=label, score=float(score))
        center = t["vision_msgs/msg/Pose2D"](position=t["vision_msgs/msg/Point2D"](x=(x1 + x2) / 2, y=(y1 + y2) / 2),
                                             theta=0.0)
        bbox = t["vision_msgs/msg/BoundingBox2D"](center=center, size_x=x2 - x1, size_y=y2 - y1)
        track = "" if tracks is None or tracks[i] < 0 else str(int(tracks[i]))
        items.append(t["vision_msgs/msg/Detection2D"](
            header=head, results=[t["vision_msgs/msg/ObjectHypothesisWithPose"](hypothesis=hypothesis, pose=pose)],
            bbox=bbox, id=track))
    message = t[DETECTIONS](header=head, detections=items)
    return bytes(typestore().serialize_cdr(message, DETECTIONS))


def _color(bgr: tuple[int, int, int], alpha: float = 1.0) -> Any:
    return typestore().types["foxglove_msgs/msg/Color"](r=bgr[2] / 255, g=bgr[1] / 255, b=bgr[0] / 255, a=alpha)


def image_annotations(detections: Detections, stamp: Any, line_width: float = 2.0) -> bytes:
    """CDR bytes of an ``ImageAnnotations``: a box outline and a ``label score`` text per detection."""
    t = typestore().types
    point, polygon, text = (t["foxglove_msgs/msg/Point2"], t["foxglove_msgs/msg/PointsAnnotation"],
                            t["foxglove_msgs/msg/TextAnnotation"])
    tracks = detections.track_ids
    boxes, texts = [], []
    for i, ((x1, y1, x2, y2), score, label, cls) in enumerate(zip(
            detections.boxes.tolist(), detections.scores.tolist(), detections.labels, detections.class_ids.tolist())):
        tracked = tracks is not None and tracks[i] >= 0
        colour = _color(track_color(int(tracks[i])) if tracked else class_color(int(cls)))
        corners = [point(x=x1, y=y1), point(x=x2, y=y1), point(x=x2, y=y2), point(x=x1, y=y2)]
        boxes.append(polygon(timestamp=stamp, type=2, points=corners, outline_color=colour, outline_colors=[],
                             fill_color=_color((0, 0, 0), 0.0), thickness=line_width))  # type 2: LINE_LOOP
        caption = f"{'#%d ' % tracks[i] if tracked else ''}{label} {score:.2f}"
        texts.append(text(timestamp=stamp, position=point(x=x1, y=max(y1 - 2.0, 12.0)), text=caption,
                          font_size=12.0, text_color=_color((255, 255, 255)), background_color=colour))
    message = t[ANNOTATIONS](circles=[], points=boxes, texts=texts)
    return bytes(typestore().serialize_cdr(message, ANNOTATIONS))


def compressed_image(image: np.ndarray, head: Any, quality: int = 90) -> bytes:
    """CDR bytes of a ``sensor_msgs/CompressedImage`` holding ``image`` (BGR uint8 [H, W, 3]) as JPEG."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError(f"expected a BGR uint8 image OpenCV encodes as JPEG, found shape {image.shape}")
    message = typestore().types[COMPRESSED_IMAGE](header=head, format="jpeg", data=data.ravel())
    return bytes(typestore().serialize_cdr(message, COMPRESSED_IMAGE))
