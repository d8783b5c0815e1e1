"""Task ``segment`` (instance masks): the detection contract plus box-relative mask probabilities.

Outputs: the four detection outputs (:mod:`edgecv.runtimes.tasks.detect`) plus
``masks [B, K, M, M] float32`` probabilities in [0, 1] (M = 28 for Mask R-CNN), one grid per
detection spanning that detection's box in network-input pixels (Mask R-CNN's convention: cell
``(u, v)`` of an ``M x M`` grid covers ``1/M`` of the box's width and height).

Pasting (:func:`paste_masks`): the box is mapped back to original-image pixels WITHOUT clipping
(undoing the letterbox scale and padding, or the per-axis stretch), so the grid keeps spanning
the whole box even where the box leaves the image; every original pixel whose centre lies in the
box samples the grid bilinearly at that centre (the grid's border cells extend to the box's
edge), and is in the mask when the probability is >= 0.5. Pixels outside the image are dropped.
The result is a :class:`~edgecv.runtimes.masks.InstanceMasks`: crops, never a full-frame array.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from edgecv.errors import ArtifactError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.backends import Backend
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.masks import InstanceMasks
from edgecv.runtimes.postprocess import check_detection_outputs, kept_rows
from edgecv.runtimes.preprocess import LetterboxInfo, scale_boxes_back
from edgecv.runtimes.tasks.base import PostContext, check_declared_rank, check_output_names, declared_shapes
from edgecv.runtimes.tasks.detect import check_detection_artifact

#: Mask probability at and above which a pixel belongs to the object.
MASK_THRESHOLD = 0.5


def unclipped_boxes(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """xyxy ``boxes [N, 4]`` from network-input to original pixels, float64, not clipped."""
    scale_x, scale_y = info.scales
    pad = np.array([info.pad_x, info.pad_y, info.pad_x, info.pad_y], np.float64)
    return (np.asarray(boxes, np.float64).reshape(-1, 4) - pad) / np.array([scale_x, scale_y, scale_x, scale_y])


def paste_one(grid: np.ndarray, box: np.ndarray, image_hw: tuple[int, int],
              threshold: float = MASK_THRESHOLD) -> tuple[np.ndarray, int, int]:
    """One box-relative probability ``grid [M, M']`` pasted into its ``box`` (x1, y1, x2, y2,
    original pixels, unclipped): ``(crop bool [h, w], x0, y0)``, the crop holding the pixels whose
    centres lie in the box and inside the image."""
    height, width = image_hw
    x1, y1, x2, y2 = (float(v) for v in box)
    # pixel x has its centre at x + 0.5: inside [x1, x2) for ceil(x1 - 0.5) <= x < ceil(x2 - 0.5)
    c0, c1 = max(0, math.ceil(x1 - 0.5)), min(width, math.ceil(x2 - 0.5))
    r0, r1 = max(0, math.ceil(y1 - 0.5)), min(height, math.ceil(y2 - 0.5))
    if c1 <= c0 or r1 <= r0 or x2 <= x1 or y2 <= y1:
        return np.zeros((0, 0), bool), max(0, min(c0, width)), max(0, min(r0, height))
    cells_y, cells_x = grid.shape
    sx, sy = cells_x / (x2 - x1), cells_y / (y2 - y1)
    # crop pixel (cx, cy) -> grid index coordinates (cell centres at integers, OpenCV's convention)
    to_grid = np.array([[sx, 0.0, (c0 + 0.5 - x1) * sx - 0.5],
                        [0.0, sy, (r0 + 0.5 - y1) * sy - 0.5]], np.float64)
    sampled = cv2.warpAffine(np.ascontiguousarray(grid, np.float32), to_grid, (c1 - c0, r1 - r0),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return sampled >= threshold, c0, r0


def paste_masks(grids: np.ndarray, boxes: np.ndarray, info: LetterboxInfo,
                threshold: float = MASK_THRESHOLD) -> InstanceMasks:
    """``grids [N, M, M']`` over ``boxes [N, 4]`` (network-input pixels) -> masks in the original
    image of ``info`` (see the module docstring)."""
    crops, offsets = [], []
    for grid, box in zip(grids, unclipped_boxes(boxes, info)):
        crop, x0, y0 = paste_one(grid, box, info.orig_shape, threshold)
        crops.append(crop)
        offsets.append((x0, y0))
    return InstanceMasks(crops, np.array(offsets, np.int64).reshape(-1, 2), info.orig_shape)


def check_mask_output(outputs: Mapping[str, np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """The ``masks`` output, checked against ``boxes [B, K, 4]``: float ``[B, K, M, M']``."""
    if "masks" not in outputs:
        raise ArtifactError(f"expected segment outputs num_dets, boxes, scores, classes, masks, "
                            f"found {sorted(outputs)}")
    masks = np.asarray(outputs["masks"])
    if masks.ndim != 4 or masks.shape[:2] != boxes.shape[:2] or min(masks.shape[2:]) < 1:
        raise ArtifactError(f"output 'masks': expected shape [{boxes.shape[0]}, {boxes.shape[1]}, M, M] "
                            f"(box-relative probabilities, one grid per box), found {list(masks.shape)}")
    if not np.issubdtype(masks.dtype, np.floating):
        raise ArtifactError(f"output 'masks': expected float probabilities in [0, 1], found dtype {masks.dtype}")
    return masks


class SegmentTask:
    """Detections whose ``masks`` are :class:`InstanceMasks` pasted into original pixels.

    Option ``mask_threshold`` (default 0.5): the probability at which a pixel is in a mask.
    """

    name = "segment"
    options: Mapping[str, Any] = {"mask_threshold": MASK_THRESHOLD}
    uses_conf = True

    def check_artifact(self, metadata: ArtifactMetadata, backend: Backend, options: Mapping[str, Any]) -> None:
        check_detection_artifact(metadata, backend)
        check_output_names("segment", ("num_dets", "boxes", "scores", "classes", "masks"), backend)
        check_declared_rank(backend, declared_shapes(backend.path), "masks", "[B, K, M, M]")

    def postprocess(self, outputs: Mapping[str, np.ndarray], infos: Sequence[LetterboxInfo],
                    context: PostContext) -> list[Detections]:
        num_dets, boxes, scores, classes = check_detection_outputs(outputs)
        masks = check_mask_output(outputs, boxes)
        if boxes.shape[0] < len(infos):
            raise ArtifactError(f"expected outputs for a batch of at least {len(infos)}, found batch {boxes.shape[0]}")
        threshold = float(context.options.get("mask_threshold", MASK_THRESHOLD))
        results = []
        for i, info in enumerate(infos):
            rows = kept_rows(num_dets, scores, classes, i, context.class_names, context.conf)
            results.append(Detections(
                scale_boxes_back(boxes[i, rows], info),
                scores[i, rows].astype(np.float32, copy=False),
                classes[i, rows].astype(np.int32, copy=False),
                context.class_names,
                masks=paste_masks(masks[i, rows], boxes[i, rows], info, threshold),
            ))
        return results


TASK = SegmentTask()
