"""The typestore edgecv reads and writes ROS messages with: rosbags' ROS 2 Humble store plus the
vision_msgs 4.x and foxglove_msgs definitions kept as data in ``msg/`` (rosbags ships neither).

``rosbags`` is imported here and only here at call time, so a missing install is one
:class:`~edgecv.errors.MissingDependencyError` naming the ``ros`` extra.
"""

from __future__ import annotations

import functools
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

from edgecv.errors import MissingDependencyError

MSG_DIR = Path(__file__).with_name("msg")
#: extra types, in registration order (each only needs the ones before it or the base store)
EXTRA_TYPES = ("vision_msgs/Point2D", "vision_msgs/Pose2D", "vision_msgs/BoundingBox2D",
               "vision_msgs/ObjectHypothesis", "vision_msgs/ObjectHypothesisWithPose", "vision_msgs/Detection2D",
               "vision_msgs/Detection2DArray", "foxglove_msgs/Point2", "foxglove_msgs/Color",
               "foxglove_msgs/CircleAnnotation", "foxglove_msgs/PointsAnnotation", "foxglove_msgs/TextAnnotation",
               "foxglove_msgs/ImageAnnotations")


def require(module: str) -> ModuleType:
    """Import ``module`` of the ``ros`` extra (rosbags, rosbags.image, mcap, ...), or say what to install."""
    try:
        return import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(f"ROS bags need {exc.name!r}, found it missing: "
                                     "pip install 'edgecv[ros]'") from None


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """A ROS 2 Humble typestore with vision_msgs 4.x and foxglove_msgs registered (built once)."""
    typesys = require("rosbags.typesys")
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    for name in EXTRA_TYPES:
        package, message = name.split("/")
        text = (MSG_DIR / package / f"{message}.msg").read_text(encoding="utf-8")
        store.register(typesys.get_types_from_msg(text, f"{package}/msg/{message}"))
    return store


def msgdef(msgtype: str) -> str:
    """The full ROS 2 ``.msg`` definition of ``msgtype`` with its dependencies (the ``ros2msg``
    schema encoding of MCAP: the type's text, then ``====`` / ``MSG: pkg/Type`` blocks)."""
    text, _ = typestore().generate_msgdef(msgtype, ros_version=2)
    return text
