"""CPU reference of the graph :func:`edgecv.export.nms.append_nms` builds, on torchvision's NMS.

Same semantics as the graph (see :mod:`edgecv.export.nms`); the fidelity check, the PyTorch-side
predictor and the NMS tests compare against it. torch/torchvision are imported lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecv.errors import ExportError, MissingDependencyError
from edgecv.export.nms import DEFAULT_MAX_CANDIDATES, check_nms_options


def _require_torchvision() -> tuple[Any, Any]:
    try:
        import torch
        import torchvision.ops
    except ImportError as exc:
        raise MissingDependencyError(
            "nms_reference needs torch and torchvision; install the export extra: pip install 'edgecv[export]'"
        ) from exc
    return torch, torchvision.ops


def _reference_image(
    torch: Any, ops: Any, boxes: np.ndarray, scores: np.ndarray, iou: float, conf: np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-aware NMS for one image: ``boxes [N,4]``, ``scores [N,C]`` float32 ->
    kept ``(box_index [K], class [K], score [K])`` sorted by (-score, class, box_index)."""
    kept_idx, kept_cls = [], []
    for cls in range(scores.shape[1]):
        cand = np.nonzero(scores[:, cls] > conf)[0]
        if cand.size == 0:
            continue
        keep = ops.nms(torch.from_numpy(boxes[cand]), torch.from_numpy(scores[cand, cls]), iou).numpy()
        kept_idx.append(cand[keep])
        kept_cls.append(np.full(keep.size, cls, dtype=np.int64))
    if not kept_idx:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    idx, cls = np.concatenate(kept_idx), np.concatenate(kept_cls)
    score = scores[idx, cls]
    order = np.lexsort((idx, cls, -score))
    return idx[order], cls[order], score[order]


def nms_reference(
    boxes: Any,
    scores: Any,
    *,
    max_det: int,
    iou_threshold: float,
    conf_threshold: float,
    max_candidates: int | None = DEFAULT_MAX_CANDIDATES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CPU reference of the graph built by :func:`append_nms` (torchvision, imported lazily).

    ``boxes [B,N,4]`` (x1, y1, x2, y2 pixels) and ``scores [B,N,C]`` (probabilities), numpy arrays
    or CPU tensors, are taken as float32. Returns numpy ``(num_dets [B,1] int32,
    boxes [B,max_det,4] float32, scores [B,max_det] float32, classes [B,max_det] int32)``,
    same semantics as the graph (module docstring): per class ``torchvision.ops.nms`` on the
    candidates with ``score > conf_threshold`` -- the per-class loop torchvision's ``batched_nms``
    uses for large inputs, without its coordinate-offset trick, which perturbs float32 box
    coordinates for large class indices -- then the top ``max_det`` by descending score.
    ``max_candidates`` mirrors the pre-selection of :func:`append_nms` (same default) for a graph
    with a symbolic candidate count; for a static ``N <= max_candidates`` the graph skips it,
    which changes nothing but the order of candidates with equal scores.
    """
    check_nms_options(max_det, iou_threshold, conf_threshold, max_candidates)
    torch, ops = _require_torchvision()
    boxes = np.ascontiguousarray(np.asarray(boxes, dtype=np.float32))
    scores = np.ascontiguousarray(np.asarray(scores, dtype=np.float32))
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[:2] != boxes.shape[:2]:
        raise ExportError(
            f"expected boxes [B,N,4] and scores [B,N,C] with equal B, N; found {boxes.shape} and {scores.shape}"
        )
    batch = boxes.shape[0]
    out = (np.zeros((batch, 1), np.int32), np.zeros((batch, max_det, 4), np.float32),
           np.zeros((batch, max_det), np.float32), np.zeros((batch, max_det), np.int32))
    iou, conf = float(np.float32(iou_threshold)), np.float32(conf_threshold)  # compared in float32, like ONNX
    for b in range(batch):
        img_boxes, img_scores = boxes[b], scores[b]
        if max_candidates is not None:
            order = np.argsort(-img_scores.max(axis=1, initial=-np.inf), kind="stable")[:max_candidates]
            img_boxes, img_scores = img_boxes[order], img_scores[order]
        idx, cls, score = (a[:max_det] for a in _reference_image(torch, ops, img_boxes, img_scores, iou, conf))
        out[0][b, 0] = idx.size
        out[1][b, : idx.size] = img_boxes[idx]
        out[2][b, : idx.size] = score
        out[3][b, : idx.size] = cls
    return out
