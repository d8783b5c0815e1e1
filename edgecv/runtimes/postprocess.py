"""Turn the detection output contract into :class:`~edgecv.runtimes.detections.Detections`.

The contract (architecture brief, contract 2), identical for every backend:

* ``num_dets [B, 1] int32``  valid rows per batch item;
* ``boxes    [B, K, 4] float32`` x1, y1, x2, y2 in network-input (letterbox) pixels;
* ``scores   [B, K] float32``;
* ``classes  [B, K] int32``;

padded to ``K = max_det``. Thresholding and NMS already happened inside the graph; here we
only slice the valid rows, optionally drop scores below an extra ``conf``, and map boxes
back to original-image pixels.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from edgecv.errors import ArtifactError
from edgecv.metadata import DETECTION_OUTPUTS
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.preprocess import LetterboxInfo, scale_boxes_back


def check_detection_outputs(outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Validate the four contract outputs and return ``(num_dets [B], boxes, scores, classes)``.

    ``num_dets`` may come as ``[B, 1]`` or ``[B]``; integer outputs of another int dtype are accepted.

    Raises:
        ArtifactError: an output is missing or its shape does not match the contract.
    """
    missing = [name for name in DETECTION_OUTPUTS if name not in outputs]
    if missing:
        raise ArtifactError(f"expected detection outputs {list(DETECTION_OUTPUTS)}, found {sorted(outputs)} "
                            f"(missing {missing})")
    num_dets, boxes, scores, classes = (np.asarray(outputs[name]) for name in DETECTION_OUTPUTS)
    if boxes.ndim != 3 or boxes.shape[2] != 4:
        raise ArtifactError(f"output 'boxes': expected shape [B, K, 4], found {boxes.shape}")
    batch, k = boxes.shape[:2]
    if num_dets.reshape(-1).shape != (batch,) or num_dets.ndim > 2:
        raise ArtifactError(f"output 'num_dets': expected shape [{batch}, 1], found {num_dets.shape}")
    for name, array in (("scores", scores), ("classes", classes)):
        if array.shape != (batch, k):
            raise ArtifactError(f"output '{name}': expected shape [{batch}, {k}] to match boxes, found {array.shape}")
    return num_dets.reshape(-1), boxes, scores, classes


def kept_rows(num_dets: np.ndarray, scores: np.ndarray, classes: np.ndarray, i: int,
              class_names: tuple[str, ...], conf: float | None) -> np.ndarray:
    """Indices (int ``[n]``) of batch item ``i``'s valid rows (``num_dets``) scoring at least ``conf``.

    Raises:
        ArtifactError: a valid row's class id is outside ``class_names``.
    """
    n = int(min(max(int(num_dets[i]), 0), scores.shape[1]))
    item_scores, item_classes = scores[i, :n], classes[i, :n]
    if n and class_names and (item_classes.min() < 0 or item_classes.max() >= len(class_names)):
        raise ArtifactError(f"output 'classes': expected ids in [0, {len(class_names) - 1}] (the metadata's "
                            f"class_names), found [{item_classes.min()}, {item_classes.max()}]")
    rows = np.arange(n)
    return rows if conf is None else rows[item_scores >= conf]


def to_detections(
    outputs: Mapping[str, np.ndarray],
    infos: Sequence[LetterboxInfo],
    class_names: tuple[str, ...],
    conf: float | None = None,
) -> list[Detections]:
    """One :class:`Detections` (original-image pixels) per entry of ``infos``.

    Batch items beyond ``len(infos)`` (zero padding of a fixed-batch artifact) are ignored.
    ``conf``, when given, keeps only detections with ``score >= conf``.
    """
    num_dets, boxes, scores, classes = check_detection_outputs(outputs)
    if boxes.shape[0] < len(infos):
        raise ArtifactError(f"expected outputs for a batch of at least {len(infos)}, found batch {boxes.shape[0]}")
    results = []
    for i, info in enumerate(infos):
        rows = kept_rows(num_dets, scores, classes, i, class_names, conf)
        results.append(Detections(
            scale_boxes_back(boxes[i, rows], info),
            scores[i, rows].astype(np.float32, copy=False),
            classes[i, rows].astype(np.int32, copy=False),
            class_names,
        ))
    return results
