"""Task ``detect``: the detection output contract (architecture brief, contract 2).

Outputs ``num_dets [B, 1] int32``, ``boxes [B, K, 4] float32`` (x1, y1, x2, y2 in network-input
pixels), ``scores [B, K] float32``, ``classes [B, K] int32``, padded to ``K``; the result is
one :class:`~edgecv.runtimes.detections.Detections` per image, boxes in original pixels
(:func:`edgecv.runtimes.postprocess.to_detections`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgecv.errors import ArtifactError
from edgecv.metadata import DETECTION_OUTPUTS, ArtifactMetadata
from edgecv.runtimes.backends import Backend
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.onnx_graph import nms_class_count
from edgecv.runtimes.postprocess import to_detections
from edgecv.runtimes.preprocess import LetterboxInfo
from edgecv.runtimes.tasks.base import PostContext, check_input


def graph_class_count(path: Path) -> int | None:
    """The class dimension an ONNX detection graph states (:func:`~edgecv.runtimes.onnx_graph.nms_class_count`),
    or None: for a non-ONNX artifact (a TensorRT engine), a graph that states none (then class ids
    beyond ``class_names`` raise :class:`ArtifactError` in post-processing, at run time), or a file
    this reader cannot parse (the backend that opened it reports real corruption)."""
    if path.suffix.lower() != ".onnx":
        return None
    try:
        return nms_class_count(path)
    except (ValueError, OSError):
        return None


def check_detection_artifact(metadata: ArtifactMetadata, backend: Backend) -> None:
    """Raise :class:`ArtifactError` unless the artifact honours the detection contract (input,
    the four outputs, as many class names as the graph's NMS scores)."""
    source = str(backend.path)
    check_input(metadata, backend)
    missing = [name for name in DETECTION_OUTPUTS if name not in backend.output_names]
    if missing:
        raise ArtifactError(f"{source}: expected detection outputs {list(DETECTION_OUTPUTS)}, "
                            f"found {backend.output_names}")
    classes = graph_class_count(Path(backend.path))
    if classes is not None and classes != len(metadata.class_names):
        raise ArtifactError(f"{source}: expected {classes} class_names (the graph scores {classes} classes), "
                            f"found {len(metadata.class_names)} in the metadata: {list(metadata.class_names)[:10]}")


class DetectTask:
    """Boxes, scores and classes; ``conf`` keeps detections scoring at least it."""

    name = "detect"
    options: Mapping[str, Any] = {}
    uses_conf = True

    def check_artifact(self, metadata: ArtifactMetadata, backend: Backend, options: Mapping[str, Any]) -> None:
        check_detection_artifact(metadata, backend)

    def postprocess(self, outputs: Mapping[str, np.ndarray], infos: Sequence[LetterboxInfo],
                    context: PostContext) -> list[Detections]:
        return to_detections(outputs, infos, context.class_names, context.conf)


TASK = DetectTask()
