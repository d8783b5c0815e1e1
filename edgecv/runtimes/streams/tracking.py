"""Persistent object ids over a stream: :class:`Tracker`, a thin stage over Roboflow's ``trackers``.

The tracking itself (Kalman motion model, two-stage association, track life cycle) is the
maintained ``trackers`` package (``pip install 'edgecv[track]'``); this module only converts
:class:`~edgecv.runtimes.detections.Detections` to and from its ``supervision`` detections,
keeps the caller's detection order, and feeds it capture timestamps.

Time, not frame counts: the ``latest`` policy drops frames, so consecutive results can be
40 ms or 400 ms apart. ``trackers`` (2.6+) takes an absolute ``timestamp`` per update and
scales its Kalman step by ``elapsed * frame_rate`` (``frame_rate`` = the nominal rate its
noise model and ``lost_track_buffer`` are expressed in), and it ages lost tracks by seconds.
So ids survive dropped frames as long as objects move less than about one box per update.

Both ``trackers`` and ``supervision`` declare the GUI ``opencv-python``, while edgecv ships
``opencv-python-headless``; pip installs both into one ``cv2`` folder, and whichever was
installed last silently wins (a window that works or aborts, depending on install order).
:func:`check_opencv_distributions` warns once, with the fix, when it finds more than one.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import warnings
from typing import Any

import numpy as np

from edgecv.errors import MissingDependencyError, OptionError
from edgecv.runtimes.detections import Detections

log = logging.getLogger(__name__)

#: ``kind`` -> class name in the ``trackers`` package. Every one takes ``frame_rate`` and
#: ``update(detections, frame=None, timestamp=None)``.
TRACKER_KINDS: dict[str, str] = {
    "bytetrack": "ByteTrackTracker",
    "ocsort": "OCSORTTracker",
    "botsort": "BoTSORTTracker",
    "sort": "SORTTracker",
}
#: Kinds whose update uses the image (BoT-SORT's camera motion compensation).
_USES_IMAGE = frozenset({"botsort"})

#: pip distributions that all install the same ``cv2`` package.
OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                        "opencv-contrib-python-headless")

_opencv_warned = False
_MIN_STEP = 1e-6  # seconds: the smallest step between two updates (see Tracker.update)


def opencv_distributions() -> dict[str, str]:
    """The OpenCV pip distributions installed in this environment: ``{name: version}``."""
    found = {}
    for name in OPENCV_DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def check_opencv_distributions() -> str | None:
    """Warn (once per process) when more than one OpenCV distribution is installed.

    Returns the warning text, or None when there is at most one distribution. The text
    says what to do: remove all of them (they share files, so removing one breaks the
    other), then reinstall the one wanted without its dependants pulling the other back.
    """
    global _opencv_warned
    found = opencv_distributions()
    if len(found) < 2:
        return None
    listed = ", ".join(f"{name} {version}" for name, version in found.items())
    message = (f"{len(found)} OpenCV distributions are installed in one environment ({listed}); they "
               "overwrite each other's cv2 files, so whether cv2 has a GUI depends on install order. "
               "Keep one: `pip uninstall -y " + " ".join(found) + "` then `pip install --no-deps "
               "opencv-python-headless` (no window: --show unavailable) or `pip install --no-deps "
               "opencv-python` (a window for --show). `trackers`/`supervision` pull in opencv-python; "
               "they work with either.")
    if not _opencv_warned:
        _opencv_warned = True
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return message


def _import_trackers() -> tuple[Any, Any]:
    """``(trackers, supervision)`` modules, or MissingDependencyError naming the extra."""
    try:
        import supervision
        import trackers
    except ImportError as error:
        raise MissingDependencyError(
            f"tracking needs the `trackers` package (found it missing: {error}); "
            "install it with `pip install 'edgecv[track]'`") from error
    return trackers, supervision


class Tracker:
    """Assigns persistent ids to the detections of consecutive frames of one stream.

    ``kind``: one of :data:`TRACKER_KINDS` (``bytetrack`` by default). ``frame_rate``: the
    nominal rate in frames/s that the tracker's options are expressed in (``lost_track_buffer``
    counts frames at this rate); the real spacing of frames comes from the timestamps.
    ``options``: passed to the ``trackers`` class (e.g. ``lost_track_buffer=60``,
    ``track_activation_threshold=0.5``, ``minimum_consecutive_frames=1``); an unknown one
    raises OptionError. Trackers are class-agnostic: an id follows a box, not a class.

    One tracker per stream, used from one thread. :meth:`reset` when the scene changes.
    """

    def __init__(self, kind: str = "bytetrack", *, frame_rate: float = 30.0, **options: Any) -> None:
        if kind not in TRACKER_KINDS:
            raise OptionError(f"tracker kind: expected one of {sorted(TRACKER_KINDS)}, found {kind!r}")
        if not (math.isfinite(frame_rate) and frame_rate > 0):
            raise OptionError(f"tracker frame_rate: expected a positive number of frames/s, found {frame_rate!r}")
        trackers, self._sv = _import_trackers()
        check_opencv_distributions()
        self.kind = kind
        try:
            self._tracker = getattr(trackers, TRACKER_KINDS[kind])(frame_rate=frame_rate, **options)
        except TypeError as error:  # an option name the tracker class does not take
            raise OptionError(f"tracker {kind} options: {error}") from error
        self._last_timestamp: float | None = None

    def update(self, detections: Detections, timestamp: float, image: np.ndarray | None = None) -> Detections:
        """Track one frame: ``detections`` (boxes xyxy in frame pixels) captured at ``timestamp``.

        ``timestamp``: capture time in seconds (any clock that only moves forward); gaps between
        calls are real time. For a file read with the ``every`` policy pass its media time
        (``StreamResult.media_time``, or ``index / fps``), not the wall clock: a file decoded
        faster or slower than real time would otherwise distort the motion model.
        A timestamp not after the previous one (a wall clock stepped back, a container without
        media times) is moved 1 µs after it -- no motion predicted -- because the library
        would otherwise drop the frame's ids (earlier) or warn on every frame (equal).
        ``image``: the BGR frame, used only by kinds that need it (``botsort``).

        Returns the same detections, in the same order, with ``track_ids`` int64 ``[N]``
        (-1 for a detection not, or not yet, part of a confirmed track).
        """
        timestamp = float(timestamp)
        if not math.isfinite(timestamp):
            raise OptionError(f"tracker timestamp: expected a finite number of seconds, found {timestamp!r}")
        if self._last_timestamp is not None and timestamp <= self._last_timestamp:
            timestamp = self._last_timestamp + _MIN_STEP
        self._last_timestamp = timestamp
        n = len(detections)
        sv_detections = self._sv.Detections(
            xyxy=detections.boxes.astype(np.float64).reshape(n, 4),
            confidence=detections.scores.astype(np.float64),
            class_id=detections.class_ids.astype(np.int64),
            data={"edgecv_index": np.arange(n)},  # the library may reorder: map ids back by it
        )
        frame = image if self.kind in _USES_IMAGE else None
        tracked = self._tracker.update(sv_detections, frame=frame, timestamp=timestamp)
        track_ids = np.full(n, -1, np.int64)
        if len(tracked):
            track_ids[np.asarray(tracked.data["edgecv_index"], np.intp)] = np.asarray(tracked.tracker_id, np.int64)
        return Detections(detections.boxes, detections.scores, detections.class_ids, detections.class_names,
                          detections.masks, track_ids)

    def reset(self) -> None:
        """Forget every track (a new scene or source); ids start again from the library's first id."""
        self._tracker.reset()
        self._last_timestamp = None

    def __repr__(self) -> str:
        return f"Tracker(kind={self.kind!r})"
