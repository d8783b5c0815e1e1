"""``edgecv::BatchedNMS`` as one Triton kernel, plus the host function that runs it.

One program per image (grid ``(B,)``), no scratch memory: TensorRT's Quick Deployable Plugin
AOT route launches exactly one kernel and gives it no workspace, so every intermediate lives in
registers or in the plugin's own outputs.

Inputs (per image ``b``):

* ``boxes  [B, N, 4] float32`` -- x1, y1, x2, y2 (any unit; well formed: x1 <= x2, y1 <= y2),
* ``scores [B, N, C] float32`` -- per-class scores, contiguous.

Outputs (edgecv's detection contract, zero-padded after ``num_dets`` rows):

* ``num_dets [B, 1] int32``, ``out_boxes [B, K, 4] float32``, ``out_scores [B, K] float32``,
  ``out_classes [B, K] int32`` with ``K = max_det``.

Algorithm (same semantics as :mod:`edgecv.export.nms`'s portable subgraph):

1. **Pre-selection** (``MAX_CAND > 0``): a box takes part only when its rank by best-class score
   (descending, ties: lower index first -- ONNX ``TopK``'s order) is below ``MAX_CAND``. The
   cut is found without sorting: bisection on the float32 bit pattern of the best score (31
   counting passes) gives the threshold score, a second bisection on the index (log2 N passes)
   splits the boxes that tie exactly at the threshold.
2. **Greedy walk** over (box, class) pairs with ``score > CONF`` in the total order
   (score descending, class ascending, box index ascending): each step finds the next pair in
   that order (one pass over ``N x C``), checks it against the detections already kept
   (same class, or any class when ``AGNOSTIC``; suppressed when ``IoU > IOU``, strictly) and,
   if it survives, appends it to the outputs. Walking in global score order keeps per-class
   greedy NMS exact (classes never interact) and produces detections already sorted, so the
   walk stops after ``K`` detections: the top-``K`` of full per-class NMS, with no cap on
   ``N`` (TensorRT's native NMS layer considers at most 5,000 boxes).

IoU is computed as torchvision does (``inter / (area_a + area_b - inter)``, float32); a union
<= 0 (two zero-area boxes) gives IoU 0, so zero-area boxes never suppress, as in ONNX Runtime.
Cost: pre-selection ``~45 x N x C`` loads, then ``N x C`` per visited pair -- fine for edge
detectors (hundreds of candidates above a 0.25 threshold), slow at a 0.001 threshold with many
classes. ``N x C`` must stay below 2**31 (pair keys are int32).

Importing this module imports triton (``pip install 'edgecv[plugins]'``); set
``TRITON_INTERPRET=1`` *before* importing it to run the kernel on CPU tensors.
"""

from __future__ import annotations

from typing import Any

import triton
import triton.language as tl

#: Lanes per tile (boxes per pass step, kept detections per suppression-check step).
BLOCK = 128
KBLOCK = 64
#: Warps per program (what the AOT launch uses as block_x = NUM_WARPS * 32).
NUM_WARPS = 4
# 2147483647 (INT32_MAX) below marks "no pair" in pair keys.


@triton.jit
def _iou_gt(ax1, ay1, ax2, ay2, bx1, by1, bx2, by2, IOU: tl.constexpr):
    """``IoU(a, b) > IOU`` elementwise, torchvision's float32 formula; union <= 0 -> False."""
    w = tl.maximum(tl.minimum(ax2, bx2) - tl.maximum(ax1, bx1), 0.0)
    h = tl.maximum(tl.minimum(ay2, by2) - tl.maximum(ay1, by1), 0.0)
    inter = w * h
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    # div_rn: IEEE round-to-nearest, as on the CPU (Triton's '/' is the approximate div.full.f32 on NVIDIA GPUs).
    iou = tl.where(union > 0.0, tl.math.div_rn(inter, tl.where(union > 0.0, union, 1.0)), 0.0)
    return iou > IOU


@triton.jit
def _best_bits(scores_img, idx, mask, C):
    """Best-class score of boxes ``idx`` as int32 bit patterns (monotonic for scores >= 0)."""
    best = tl.load(scores_img + idx * C, mask=mask, other=float("-inf"))
    for c in range(1, C):
        best = tl.maximum(best, tl.load(scores_img + idx * C + c, mask=mask, other=float("-inf")))
    return best.to(tl.int32, bitcast=True)


@triton.jit
def _count_ge(scores_img, N, C, t, BLOCK: tl.constexpr):
    """Number of boxes whose best-score bits are >= ``t``."""
    total = tl.zeros([BLOCK], tl.int32)
    for start in range(0, N, BLOCK):
        idx = start + tl.arange(0, BLOCK)
        m = idx < N
        bits = _best_bits(scores_img, idx, m, C)
        total += (m & (bits >= t)).to(tl.int32)
    return tl.sum(total, axis=0)


@triton.jit
def _count_eq_below(scores_img, N, C, t, limit, BLOCK: tl.constexpr):
    """Number of boxes with index < ``limit`` whose best-score bits equal ``t``."""
    total = tl.zeros([BLOCK], tl.int32)
    for start in range(0, N, BLOCK):
        idx = start + tl.arange(0, BLOCK)
        m = idx < N
        bits = _best_bits(scores_img, idx, m, C)
        total += (m & (bits == t) & (idx < limit)).to(tl.int32)
    return tl.sum(total, axis=0)


@triton.jit
def _preselect_cut(scores_img, N, C, MAX_CAND: tl.constexpr, BLOCK: tl.constexpr):
    """``(t, i_t)``: box ``i`` is pre-selected iff ``bits_i > t`` or (``bits_i == t`` and ``i < i_t``)."""
    t = tl.full([], 0, tl.int32)
    i_t = N + tl.full([], 0, tl.int32)
    if MAX_CAND > 0:
        positives = _count_ge(scores_img, N, C, tl.full([], 1, tl.int32), BLOCK)
        if positives > MAX_CAND:
            lo = tl.full([], 1, tl.int32)
            hi = tl.full([], 0x7F800000, tl.int32)  # +inf: count(>= lo) >= MAX_CAND holds at lo, not above hi
            while lo < hi:
                mid = lo + (hi - lo + 1) // 2
                if _count_ge(scores_img, N, C, mid, BLOCK) >= MAX_CAND:
                    lo = mid
                else:
                    hi = mid - 1
            t = lo
            need = MAX_CAND - _count_ge(scores_img, N, C, t + 1, BLOCK)  # slots left for boxes tied at t
            lo_i = tl.full([], 1, tl.int32)
            hi_i = N + tl.full([], 0, tl.int32)
            while lo_i < hi_i:  # smallest limit with need tied boxes below it
                mid_i = (lo_i + hi_i) // 2
                if _count_eq_below(scores_img, N, C, t, mid_i, BLOCK) >= need:
                    hi_i = mid_i
                else:
                    lo_i = mid_i + 1
            i_t = lo_i
    return t, i_t


@triton.jit
def _next_pair(scores_img, N, C, conf, prev_s, prev_f, t, i_t, BLOCK: tl.constexpr):
    """The first pair after ``(prev_s, prev_f)`` in (score desc, key asc) order; key = class * N + box.

    Returns ``(score, key)``; key is INT_BIG when no eligible pair is left.
    """
    best_s = tl.full([], float("-inf"), tl.float32)
    best_f = tl.full([], 2147483647, tl.int32)
    for start in range(0, N, BLOCK):
        idx = start + tl.arange(0, BLOCK)
        m = idx < N
        bits = _best_bits(scores_img, idx, m, C)
        keep = m & ((bits > t) | ((bits == t) & (idx < i_t)))
        lane_s = tl.full([BLOCK], float("-inf"), tl.float32)
        lane_f = tl.full([BLOCK], 2147483647, tl.int32)
        for c in range(0, C):
            s = tl.load(scores_img + idx * C + c, mask=m, other=float("-inf"))
            f = c * N + idx
            after = (s < prev_s) | ((s == prev_s) & (f > prev_f))
            ok = keep & (s > conf) & after & (s > lane_s)  # classes ascend: '>' keeps the lower class on ties
            lane_s = tl.where(ok, s, lane_s)
            lane_f = tl.where(ok, f, lane_f)
        tile_s = tl.max(lane_s, axis=0)
        tile_f = tl.min(tl.where((lane_s == tile_s) & (lane_f < 2147483647), lane_f, 2147483647), axis=0)
        better = (tile_f < 2147483647) & ((tile_s > best_s) | ((tile_s == best_s) & (tile_f < best_f)))
        best_s = tl.where(better, tile_s, best_s)
        best_f = tl.where(better, tile_f, best_f)
    return best_s, best_f


@triton.jit
def _suppressed(out_boxes, out_classes, count, x1, y1, x2, y2, cls,
                IOU: tl.constexpr, AGNOSTIC: tl.constexpr, KBLOCK: tl.constexpr):
    """Whether a kept detection (of the same class unless AGNOSTIC) overlaps the box with IoU > IOU."""
    hits = tl.zeros([KBLOCK], tl.int32)
    for js in range(0, count, KBLOCK):
        j = js + tl.arange(0, KBLOCK)
        mj = j < count
        kx1 = tl.load(out_boxes + j * 4 + 0, mask=mj, other=0.0)
        ky1 = tl.load(out_boxes + j * 4 + 1, mask=mj, other=0.0)
        kx2 = tl.load(out_boxes + j * 4 + 2, mask=mj, other=0.0)
        ky2 = tl.load(out_boxes + j * 4 + 3, mask=mj, other=0.0)
        same = mj
        if not AGNOSTIC:
            same = mj & (tl.load(out_classes + j, mask=mj, other=-1) == cls)
        hits += (same & _iou_gt(kx1, ky1, kx2, ky2, x1, y1, x2, y2, IOU)).to(tl.int32)
    return tl.sum(hits, axis=0) > 0


@triton.jit
def _nms_program(boxes_ptr, scores_ptr, N, C, num_ptr, out_boxes_ptr, out_scores_ptr, out_classes_ptr, out_index_ptr,
                 K: tl.constexpr, IOU: tl.constexpr, CONF: tl.constexpr, MAX_CAND: tl.constexpr,
                 AGNOSTIC: tl.constexpr, WRITE_INDEX: tl.constexpr, BLOCK: tl.constexpr, KBLOCK: tl.constexpr):
    """NMS of image ``program_id(0)``; with WRITE_INDEX also each kept row's box index (-1 padded)."""
    b = tl.program_id(0).to(tl.int64)
    boxes_img = boxes_ptr + b * N * 4
    scores_img = scores_ptr + b * N * C
    ob = out_boxes_ptr + b * K * 4
    os_ = out_scores_ptr + b * K
    oc = out_classes_ptr + b * K
    for start in range(0, K, KBLOCK):  # zero the padding first: later rows are only written when kept
        r = start + tl.arange(0, KBLOCK)
        mr = r < K
        tl.store(os_ + r, tl.zeros([KBLOCK], tl.float32), mask=mr)
        tl.store(oc + r, tl.zeros([KBLOCK], tl.int32), mask=mr)
        if WRITE_INDEX:
            tl.store(out_index_ptr + b * K + r, tl.full([KBLOCK], -1, tl.int32), mask=mr)
        for q in range(4):
            tl.store(ob + r * 4 + q, tl.zeros([KBLOCK], tl.float32), mask=mr)
    t, i_t = _preselect_cut(scores_img, N, C, MAX_CAND, BLOCK)
    conf = tl.full([], CONF, tl.float32)
    count = tl.full([], 0, tl.int32)
    prev_s = tl.full([], float("inf"), tl.float32)
    prev_f = tl.full([], -1, tl.int32)
    searching = tl.full([], 1, tl.int32)
    while (count < K) & (searching > 0):
        s, f = _next_pair(scores_img, N, C, conf, prev_s, prev_f, t, i_t, BLOCK)
        if f == 2147483647:
            searching = tl.full([], 0, tl.int32)
        else:
            i = f % N
            cls = f // N
            x1 = tl.load(boxes_img + i * 4 + 0)
            y1 = tl.load(boxes_img + i * 4 + 1)
            x2 = tl.load(boxes_img + i * 4 + 2)
            y2 = tl.load(boxes_img + i * 4 + 3)
            tl.debug_barrier()  # rows stored by earlier steps must be visible to every thread
            if not _suppressed(ob, oc, count, x1, y1, x2, y2, cls, IOU, AGNOSTIC, KBLOCK):
                tl.store(ob + count * 4 + 0, x1)
                tl.store(ob + count * 4 + 1, y1)
                tl.store(ob + count * 4 + 2, x2)
                tl.store(ob + count * 4 + 3, y2)
                tl.store(os_ + count, s)
                tl.store(oc + count, cls)
                if WRITE_INDEX:
                    tl.store(out_index_ptr + b * K + count, i)
                count += 1
            tl.debug_barrier()
            prev_s = s
            prev_f = f
    tl.store(num_ptr + b, count)


@triton.jit
def batched_nms_kernel(boxes_ptr, scores_ptr, N, C, num_ptr, out_boxes_ptr, out_scores_ptr, out_classes_ptr,
                       K: tl.constexpr, IOU: tl.constexpr, CONF: tl.constexpr, MAX_CAND: tl.constexpr,
                       AGNOSTIC: tl.constexpr, BLOCK: tl.constexpr, KBLOCK: tl.constexpr):
    """The plugin's kernel; argument order = TensorRT AOT order (input pointers, scalars, output pointers)."""
    _nms_program(boxes_ptr, scores_ptr, N, C, num_ptr, out_boxes_ptr, out_scores_ptr, out_classes_ptr,
                 num_ptr, K, IOU, CONF, MAX_CAND, AGNOSTIC, False, BLOCK, KBLOCK)


@triton.jit
def nms_core_kernel(boxes_ptr, scores_ptr, N, C, num_ptr, out_boxes_ptr, out_scores_ptr, out_classes_ptr,
                    out_index_ptr, K: tl.constexpr, IOU: tl.constexpr, CONF: tl.constexpr, MAX_CAND: tl.constexpr,
                    AGNOSTIC: tl.constexpr, BLOCK: tl.constexpr, KBLOCK: tl.constexpr):
    """The same program, also writing the kept box indices (the ONNX NonMaxSuppression conformance run)."""
    _nms_program(boxes_ptr, scores_ptr, N, C, num_ptr, out_boxes_ptr, out_scores_ptr, out_classes_ptr,
                 out_index_ptr, K, IOU, CONF, MAX_CAND, AGNOSTIC, True, BLOCK, KBLOCK)


def kernel_constexprs(max_det: int, iou_threshold: float, conf_threshold: float, max_candidates: int,
                      class_agnostic: bool, block: int | None = None) -> dict[str, Any]:
    """The constexpr arguments of :func:`batched_nms_kernel` for these node attributes.

    ``block``: boxes per tile (a power of two; default :data:`BLOCK`, what the plugin compiles).
    The interpreted tests use a larger tile for their 6,000-box case: fewer Python-level steps.
    """
    return {"K": int(max_det), "IOU": float(iou_threshold), "CONF": float(conf_threshold),
            "MAX_CAND": int(max_candidates), "AGNOSTIC": bool(class_agnostic), "BLOCK": int(block or BLOCK),
            "KBLOCK": KBLOCK}


#: Triton signature of the runtime arguments (the AOT compile adds the constexprs).
KERNEL_SIGNATURE = {"boxes_ptr": "*fp32", "scores_ptr": "*fp32", "N": "i32", "C": "i32", "num_ptr": "*i32",
                    "out_boxes_ptr": "*fp32", "out_scores_ptr": "*fp32", "out_classes_ptr": "*i32"}


def _launch(kernel: Any, boxes: Any, scores: Any, max_det: int, attrs: dict[str, Any], with_index: bool) -> tuple:
    import torch

    boxes = boxes.to(torch.float32).contiguous()
    scores = scores.to(torch.float32).contiguous()
    batch, n, c = scores.shape
    if boxes.shape != (batch, n, 4):
        raise ValueError(f"expected boxes [B,N,4] matching scores {list(scores.shape)}, found {list(boxes.shape)}")
    if n * max(c, 1) >= 2**31 - 1:
        raise ValueError(f"expected N x C < 2**31 (int32 pair keys), found {n} x {c}")
    dev = boxes.device
    outs = [torch.zeros((batch, 1), dtype=torch.int32, device=dev),
            torch.zeros((batch, max_det, 4), dtype=torch.float32, device=dev),
            torch.zeros((batch, max_det), dtype=torch.float32, device=dev),
            torch.zeros((batch, max_det), dtype=torch.int32, device=dev)]
    if with_index:
        outs.append(torch.full((batch, max_det), -1, dtype=torch.int32, device=dev))
    if batch and n and c:  # an empty input has nothing to launch: the zero outputs are the answer
        kernel[(batch,)](boxes, scores, n, c, *outs, **kernel_constexprs(max_det, **attrs), num_warps=NUM_WARPS)
    return tuple(outs)


def batched_nms(boxes: Any, scores: Any, *, max_det: int, iou_threshold: float, conf_threshold: float,
                max_candidates: int = 0, class_agnostic: bool = False, block: int | None = None
                ) -> tuple[Any, Any, Any, Any]:
    """Run :func:`batched_nms_kernel` on torch tensors (CPU under ``TRITON_INTERPRET=1``, else CUDA).

    ``boxes [B,N,4]`` / ``scores [B,N,C]`` float32 -> ``(num_dets [B,1] int32, boxes [B,K,4] float32,
    scores [B,K] float32, classes [B,K] int32)``, ``K = max_det``, zero-padded. ``max_candidates``:
    0 = no cap. ``block``: tile size (default :data:`BLOCK`).
    """
    attrs = {"iou_threshold": iou_threshold, "conf_threshold": conf_threshold, "max_candidates": max_candidates,
             "class_agnostic": class_agnostic, "block": block}
    return _launch(batched_nms_kernel, boxes, scores, max_det, attrs, with_index=False)


def nms_indices(boxes: Any, scores: Any, *, max_output: int, iou_threshold: float, score_threshold: float) -> Any:
    """Single-class NMS core: ``boxes [N,4]``, ``scores [N]`` -> kept box indices ``[M] int64``, best first.

    What ONNX ``NonMaxSuppression`` computes for one (batch, class) with ``center_point_box=0``:
    candidates ``score > score_threshold``, suppression ``IoU > iou_threshold``, at most
    ``max_output`` indices.
    """
    import torch

    if max_output <= 0:
        return torch.zeros(0, dtype=torch.int64)
    attrs = {"iou_threshold": iou_threshold, "conf_threshold": score_threshold, "max_candidates": 0,
             "class_agnostic": False}
    num, *_, index = _launch(nms_core_kernel, boxes[None], scores[None, :, None], max_output, attrs, with_index=True)
    return index[0, : int(num[0, 0])].to(torch.int64)
