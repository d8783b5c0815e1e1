"""CPU twin of ``edgecv::BatchedNMS``: a numpy implementation and its ONNX Runtime custom op.

:func:`batched_nms_numpy` is written independently of the Triton kernel (sort + greedy
suppression, the textbook form) so the two check each other. :func:`register` declares it to
onnxruntime-extensions as a Python custom op (domain ``ai.onnx.contrib``, op type
``BatchedNMS``, the node form documented in :mod:`edgecv.plugins.batched_nms`); a session then
needs ``SessionOptions.register_custom_ops_library(onnxruntime_extensions.get_library_path())``,
which :func:`edgecv.plugins.twins.session_options` does for every twin.

numpy only (no torch): usable from the runtime side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecv.errors import MissingDependencyError
from edgecv.plugins.batched_nms import ATTRIBUTES, OP_TYPE, kernel_attrs
from edgecv.plugins.once import Once

_registration = Once()


def _iou_row(kept: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one kept box ``[4]`` with ``boxes [M,4]`` in float32, torchvision's formula; union <= 0 -> 0."""
    w = np.maximum(np.minimum(kept[2], boxes[:, 2]) - np.maximum(kept[0], boxes[:, 0]), np.float32(0))
    h = np.maximum(np.minimum(kept[3], boxes[:, 3]) - np.maximum(kept[1], boxes[:, 1]), np.float32(0))
    inter = w * h
    union = (kept[2] - kept[0]) * (kept[3] - kept[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, np.float32(1)), np.float32(0))


def _preselected(scores: np.ndarray, max_candidates: int) -> np.ndarray:
    """``[N] bool``: the ``max_candidates`` boxes with the highest best-class score (ties: lower index)."""
    keep = np.ones(scores.shape[0], bool)
    if max_candidates > 0 and scores.shape[0] > max_candidates:
        order = np.argsort(-scores.max(axis=1), kind="stable")
        keep[:] = False
        keep[order[:max_candidates]] = True
    return keep


def _nms_image(boxes: np.ndarray, scores: np.ndarray, max_det: int, iou: np.float32, conf: np.float32,
               max_candidates: int, agnostic: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: ``boxes [N,4]``, ``scores [N,C]`` -> kept ``(box index, class, score)``, at most ``max_det``."""
    keep = _preselected(scores, max_candidates)
    box_idx, cls = np.nonzero((scores > conf) & keep[:, None])
    score = scores[box_idx, cls]
    order = np.lexsort((box_idx, cls, -score))  # score desc, then class, then box index
    box_idx, cls, score = box_idx[order], cls[order], score[order]
    cand = boxes[box_idx]
    alive = np.ones(box_idx.size, bool)
    kept: list[int] = []
    for k in range(box_idx.size):
        if not alive[k]:
            continue
        kept.append(k)
        if len(kept) == max_det:
            break
        rest = slice(k + 1, None)
        hit = _iou_row(cand[k], cand[rest]) > iou
        if not agnostic:
            hit &= cls[rest] == cls[k]
        alive[rest] &= ~hit
    sel = np.asarray(kept, np.int64)
    return box_idx[sel], cls[sel], score[sel]


def batched_nms_numpy(boxes: Any, scores: Any, *, max_det: int, iou_threshold: float, conf_threshold: float,
                      max_candidates: int = 0, class_agnostic: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``boxes [B,N,4]``, ``scores [B,N,C]`` (float32) -> ``(num_dets [B,1] int32, boxes [B,K,4] float32,
    scores [B,K] float32, classes [B,K] int32)``, ``K = max_det``, zero-padded; semantics of the plugin."""
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    batch = boxes.shape[0]
    out = (np.zeros((batch, 1), np.int32), np.zeros((batch, max_det, 4), np.float32),
           np.zeros((batch, max_det), np.float32), np.zeros((batch, max_det), np.int32))
    iou, conf = np.float32(iou_threshold), np.float32(conf_threshold)
    for b in range(batch):
        idx, cls, score = _nms_image(boxes[b], scores[b], max_det, iou, conf, max_candidates, class_agnostic)
        out[0][b, 0] = idx.size
        out[1][b, : idx.size] = boxes[b][idx]
        out[2][b, : idx.size] = score
        out[3][b, : idx.size] = cls
    return out


def _op_attrs(ext: Any) -> dict[str, int]:
    types = {int: ext.PyCustomOpDef.dt_int64, str: ext.PyCustomOpDef.dt_string}
    attrs = {name: types[kind] for name, kind in ATTRIBUTES.items()}
    attrs.update(plugin_namespace=ext.PyCustomOpDef.dt_string, plugin_version=ext.PyCustomOpDef.dt_string)
    return attrs


def register() -> None:
    """Declare the twin to onnxruntime-extensions (once per process).

    Raises:
        MissingDependencyError: onnxruntime-extensions is not installed (``edgecv[plugins]``).
    """
    _registration(_declare)


def _declare() -> None:
    try:
        import onnxruntime_extensions as ext
    except ImportError as exc:
        raise MissingDependencyError(f"the CPU twins of edgecv's plugins need onnxruntime-extensions ({exc}); "
                                     "install the plugins extra: pip install 'edgecv[plugins]'") from exc
    dt = ext.PyCustomOpDef

    @ext.onnx_op(op_type=OP_TYPE, inputs=[dt.dt_float, dt.dt_float],
                 outputs=[dt.dt_int32, dt.dt_float, dt.dt_float, dt.dt_int32], attrs=_op_attrs(ext))
    def _batched_nms_op(boxes: np.ndarray, scores: np.ndarray, **attrs: Any) -> tuple:
        return batched_nms_numpy(boxes, scores, **kernel_attrs(attrs))
