"""A live view for robots (``--foxglove 127.0.0.1:8765``): the stream served over the Foxglove
WebSocket protocol with the maintained SDK (``foxglove-sdk``), for Foxglove's Image panel.

Channels (``prefix`` = ``/edgecv``), every message stamped with the frame's timestamp (a bag
frame's ``header.stamp``):

==========================  ==============================  =====================================
topic                       schema                          what
==========================  ==============================  =====================================
``<prefix>/image``          ``foxglove.CompressedImage``    the frame as JPEG (``frame_id``)
``<prefix>/annotations``    ``foxglove.ImageAnnotations``   box outlines + ``label score`` texts
``<prefix>/detections``     JSON (``edgecv.result/1``)      ``StreamResult.to_dict()``
``<prefix>/stats``          JSON                            frames, fps, inference ms, dropped
==========================  ==============================  =====================================

Nothing is encoded for a channel nobody subscribes to (``has_sinks``), so an idle server costs
next to nothing. The server binds loopback by default; any other address logs and warns loudly
(the protocol has no authentication). Each sink has its own SDK context, so two servers (or a
server and the SDK's global log) never share channels.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from typing import Any

import cv2

from edgecv.errors import MissingDependencyError, OptionError
from edgecv.runtimes.draw import class_color, track_color
from edgecv.runtimes.streams.result import StreamResult
from edgecv.runtimes.streams.sinks.browser import exposure_warning

log = logging.getLogger(__name__)
FPS_WINDOW_S = 2.0  # the fps figure covers the results of the last this many seconds


def _sdk() -> Any:
    try:
        import foxglove
        import foxglove.channels
        import foxglove.messages
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(f"--foxglove needs {exc.name!r}, found it missing: "
                                     "pip install 'edgecv[ros]'") from None
    return foxglove


class FoxgloveView:
    """Serves results at ``ws://host:port`` (``port=0``: a free port, see :attr:`port`).

    Raises:
        OptionError: the port is taken or the address cannot be bound.
        MissingDependencyError: foxglove-sdk is not installed (the ``ros`` extra).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, prefix: str = "/edgecv",
                 frame_id: str = "camera", jpeg_quality: int = 80) -> None:
        foxglove = _sdk()
        message = exposure_warning(host, port, "Foxglove server")
        if message is not None:
            log.warning(message)
            warnings.warn(message, UserWarning, stacklevel=2)
        self._msgs = foxglove.messages
        self.context = foxglove.Context()
        try:
            self.server = foxglove.start_server(name="edgecv", host=host, port=port, context=self.context)
        except (RuntimeError, OSError) as exc:
            raise OptionError(f"--foxglove: expected a free address to serve on, found {host}:{port} "
                              f"unavailable ({exc})") from None
        self.host, self.port = host, self.server.port
        self.frame_id, self.jpeg_quality, prefix = frame_id, jpeg_quality, prefix.rstrip("/")
        channels = foxglove.channels
        self._image = channels.CompressedImageChannel(f"{prefix}/image", context=self.context)
        self._annotations = channels.ImageAnnotationsChannel(f"{prefix}/annotations", context=self.context)
        self._detections = foxglove.Channel(f"{prefix}/detections", message_encoding="json", context=self.context)
        self._stats = foxglove.Channel(f"{prefix}/stats", message_encoding="json", context=self.context)
        self._times: list[float] = []
        self.frames = self.dropped = 0
        self._closed = False

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def write(self, result: StreamResult) -> None:
        """Log the result on every channel that has a subscriber."""
        m = self._msgs
        header = result.header
        stamp_ns = header.stamp_ns if header is not None else int(round(result.timestamp * 1e9))
        stamp = m.Timestamp(stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
        self._count(result)
        if self._image.has_sinks():
            ok, data = cv2.imencode(".jpg", result.image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if ok:  # a failed encode skips this frame's picture only
                frame_id = header.frame_id if header is not None else self.frame_id
                self._image.log(m.CompressedImage(timestamp=stamp, frame_id=frame_id, data=data.tobytes(),
                                                  format="jpeg"), log_time=stamp_ns)
        if self._annotations.has_sinks():
            self._annotations.log(self._annotation(result, stamp), log_time=stamp_ns)
        if self._detections.has_sinks():
            self._detections.log(json.dumps(result.to_dict()), log_time=stamp_ns)
        if self._stats.has_sinks():
            self._stats.log(json.dumps(self.stats(result)), log_time=stamp_ns)

    def _count(self, result: StreamResult) -> None:
        now = time.monotonic()
        self._times = [t for t in self._times if now - t <= FPS_WINDOW_S] + [now]
        self.frames += 1
        self.dropped += result.dropped

    def stats(self, result: StreamResult) -> dict[str, Any]:
        """The figures the stats channel carries after ``result``."""
        span = self._times[-1] - self._times[0] if len(self._times) > 1 else 0.0
        return {"frames": self.frames, "fps": round((len(self._times) - 1) / span, 2) if span > 0 else 0.0,
                "infer_ms": round(result.timing.get("infer", 0.0), 2),
                "pipeline_ms": round(sum(result.timing.get(k, 0.0) for k in ("read", "pre", "infer", "post")), 2),
                "dropped": self.dropped, "detections": len(result.detections)}

    def _annotation(self, result: StreamResult, stamp: Any) -> Any:
        m, det = self._msgs, result.detections
        tracks = det.track_ids
        boxes, texts = [], []
        for i, ((x1, y1, x2, y2), score, label, cls) in enumerate(zip(
                det.boxes.tolist(), det.scores.tolist(), det.labels, det.class_ids.tolist())):
            tracked = tracks is not None and tracks[i] >= 0
            b, g, r = track_color(int(tracks[i])) if tracked else class_color(int(cls))
            colour = m.Color(r=r / 255, g=g / 255, b=b / 255, a=1.0)
            corners = [m.Point2(x=x1, y=y1), m.Point2(x=x2, y=y1), m.Point2(x=x2, y=y2), m.Point2(x=x1, y=y2)]
            boxes.append(m.PointsAnnotation(timestamp=stamp, type=m.PointsAnnotationType.LineLoop, points=corners,
                                            outline_color=colour, thickness=2.0))
            caption = f"{'#%d ' % tracks[i] if tracked else ''}{label} {score:.2f}"
            texts.append(m.TextAnnotation(timestamp=stamp, position=m.Point2(x=x1, y=max(y1 - 2.0, 12.0)),
                                          text=caption, font_size=12.0, text_color=m.Color(r=1.0, g=1.0, b=1.0, a=1.0),
                                          background_color=colour))
        return m.ImageAnnotations(points=boxes, texts=texts)

    def close(self) -> None:
        """Stop the server (idempotent)."""
        if not self._closed:
            self._closed = True
            self.server.stop()
