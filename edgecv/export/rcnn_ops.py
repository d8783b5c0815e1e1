"""Export-friendly building blocks of two-stage detectors (Faster / Mask R-CNN), batched over images.

Every function takes and returns batched tensors, so the traced ONNX graph holds no per-image
Python loop (no ``Loop`` node; the node count does not depend on the batch size) and an image with
nothing in it flows through the same ops as a busy one. Shapes are fixed by the export options, but
for two counts that follow the data (``NonZero``; never zero, so no op meets an empty tensor): the
RoIs of each FPN level (:func:`multilevel_roi_pool`) and the rows that hold a detection
(:func:`detected_rows`); ``static=True`` / ``static_shapes`` keeps those fixed too.

* :func:`batched_nms` -- ONE ONNX ``NonMaxSuppression`` over ``[B, N, 4]`` boxes (its batch
  dimension does the per-image part); groups that must not suppress each other (RPN levels,
  second-stage classes) are separated by the coordinate-offset trick (``box + group * span``,
  ``span`` > the image side, so boxes of different groups never overlap).
* :func:`select_per_image` -- the survivors of one image, best first, padded to a fixed ``k``
  (``TopK`` over a ``[B, S + k]`` score matrix with ``k`` sentinel columns, so ``S = 0`` works).
* :func:`multilevel_roi_pool` -- FPN level assignment in the graph (torchvision's LevelMapper:
  ``k = floor(4 + log2(sqrt(area) / 224) + 1e-6)`` clamped to the pooled levels), then RoI Align
  (or RoI Pool) of each level's own RoIs (``NonZero``) and one ``Gather`` back to RoI order
  (``static``: every RoI on every level and a ``Where`` chain keeping each RoI's level).

Boxes are x1, y1, x2, y2 in network-input pixels throughout.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision
from torch import Tensor, nn

#: Score of the padding columns of :func:`select_per_image`: below every real score (>= 0).
SENTINEL = -1.0
#: Ops of the data-dependent paths whose inputs are kept float32, because TensorRT's ONNX parser
#: takes them in FP32 / FP16 only (its operator matrix: NonZero, CumSum). Counts stay exact in
#: float32 far beyond any RoI count (integers up to 2**24).
TENSORRT_TYPED = ("NonZero", "CumSum")
POOLERS = ("align", "pool")


class _BatchedNMS(torch.autograd.Function):
    """``NonMaxSuppression`` with its batch axis; forward is the per-image PyTorch reference (trace time)."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_out: int, iou: float, score_threshold: float) -> Tensor:
        rows = []
        for b in range(boxes.shape[0]):
            idx = torch.nonzero(scores[b, 0] > score_threshold).flatten()
            keep = idx[torchvision.ops.nms(boxes[b, idx], scores[b, 0, idx], iou)[:max_out]]
            rows.append(torch.stack([torch.full_like(keep, b), torch.zeros_like(keep), keep], 1))
        return torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_out: int, iou: float, score_threshold: float):  # noqa: ANN001
        return g.op("NonMaxSuppression", boxes, scores,
                    g.op("Constant", value_t=torch.tensor([max_out], dtype=torch.int64)),
                    g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)),
                    g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
                    center_point_box_i=0)


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, span: float, max_out: int, iou: float,
                score_threshold: float) -> Tensor:
    """Greedy NMS per image and per group: ``selected [S, 3]`` int64 rows (image, 0, candidate index).

    ``boxes [B, N, 4]``, ``scores [B, N]`` float32, ``groups [N]`` or ``[B, N]`` (int or float group id);
    a candidate takes part when ``score > score_threshold`` (strict); IoU > ``iou`` suppresses
    (strict); at most ``max_out`` survivors per image (the best, as greedy NMS keeps in score order).
    """
    offset = groups.to(boxes.dtype).unsqueeze(-1) * span
    return _BatchedNMS.apply(boxes + offset, scores.unsqueeze(1), int(max_out), float(iou), float(score_threshold))


def select_per_image(selected: Tensor, scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` best survivors of each image: ``(index [B, k] int64 into N, valid [B, k] bool)``.

    ``selected [S, 3]`` from :func:`batched_nms`, ``scores [B, N]``. Rows after an image's
    survivors are invalid (index 0). Ordered by descending score (ties: lower survivor first).
    """
    image, cand = selected[:, 0], selected[:, 2]
    n = scores.shape[1]
    picked = scores.reshape(-1)[image * n + cand]  # [S]
    images = torch.arange(scores.shape[0], device=scores.device).unsqueeze(1)  # [B, 1]
    matrix = torch.where(images == image.unsqueeze(0), picked.unsqueeze(0), torch.full_like(picked, SENTINEL))
    matrix = torch.cat([matrix, torch.full_like(scores[:, :1], SENTINEL).expand(-1, k)], 1)  # [B, S + k]
    top, pos = matrix.topk(k, dim=1)
    cand = torch.cat([cand, torch.zeros(k, dtype=cand.dtype, device=cand.device)])
    return cand[pos], top > SENTINEL


def gather_rows(values: Tensor, index: Tensor) -> Tensor:
    """``values [B, N, ...]`` at ``index [B, k]`` -> ``[B, k, ...]``."""
    shape = index.shape + values.shape[2:]
    flat = index.reshape(index.shape[0], -1, *([1] * (values.dim() - 2))).expand(shape)
    return torch.gather(values, 1, flat)


def detected_rows(kept: Tensor) -> tuple[Tensor, Tensor]:
    """The rows any image detected something in: ``(rows [n] int64, position [K] int64)``.

    ``kept [B, K]`` bool. ``rows`` are the row indices (row 0 always, so that ``n >= 1`` and no op
    downstream meets an empty tensor); ``position[k]`` is row ``k``'s place in ``rows`` (for rows not
    in ``rows``: a place of a row before it; callers zero those rows through ``kept``). ``n`` depends
    on the data: the graph holds ``NonZero`` (ONNX Runtime and OpenVINO run it; TensorRT's parser lists
    it) and ``CumSum``, so the stages after it run on ``n`` rows instead of ``K``.
    """
    first = torch.arange(kept.shape[1], device=kept.device) == 0
    wanted = (kept.any(0) | first).to(torch.float32)  # [K]; float: see TENSORRT_TYPED
    rows = torch.nonzero(wanted)[:, 0]
    position = (torch.cumsum(wanted, 0) - 1).clamp(min=0).to(torch.int64)
    return rows, position


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """``boxes [..., 4]`` clamped into the image (torchvision's ``clip_boxes_to_image``)."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)


def big_enough(boxes: Tensor, min_size: float) -> Tensor:
    """bool ``[...]``: width and height >= ``min_size`` (torchvision's ``remove_small_boxes``)."""
    return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & ((boxes[..., 3] - boxes[..., 1]) >= min_size)


def level_of(boxes: Tensor, k_min: int, k_max: int) -> Tensor:
    """FPN level index (0 = level ``k_min``) of each box ``[..., 4]``: torchvision's LevelMapper."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    k = torch.floor(4 + torch.log2(torch.sqrt(area) / 224) + torch.tensor(1e-6, dtype=boxes.dtype))
    return (k.clamp(k_min, k_max) - k_min).to(torch.int64)


def multilevel_roi_pool(features: list[Tensor], scales: list[float], boxes: Tensor, output: int,
                        sampling_ratio: int, pooler: str = "align", static: bool = False) -> Tensor:
    """Pool ``boxes [B, R, 4]`` from FPN ``features`` (finest first, ``scales[i]`` = 1 / stride):
    ``[B * R, C, output, output]``, RoI ``b * R + r`` from image ``b`` at its assigned level.

    ``pooler``: ``"align"`` (RoI Align, aligned=False as torchvision's MultiScaleRoIAlign) or
    ``"pool"`` (RoI Pool: coordinates rounded to the feature grid, max in each bin).
    Each level pools only its own RoIs (``NonZero`` of the level assignment, plus RoI 0 so that no
    level meets an empty set), and one ``Gather`` puts the pooled rows back in RoI order: the pooling
    work of one level, not ``L`` (``R`` may itself be data-dependent, as the mask stage's rows are).
    ``static``: no data-dependent shape instead: every RoI pooled at every level, a ``Where`` chain
    keeping each RoI's own (``L`` times the pooling work).
    """
    flat = boxes.reshape(-1, 4)
    image = torch.arange(boxes.shape[0], device=boxes.device, dtype=boxes.dtype).unsqueeze(1)
    rois = torch.cat([image.expand(boxes.shape[:2]).reshape(-1, 1), flat], 1)  # [N, 5], N = B*R
    k_min, k_max = round(-np.log2(scales[0])), round(-np.log2(scales[-1]))
    level = level_of(flat, k_min, k_max)  # [N]

    def pool(feature: Tensor, these: Tensor, scale: float) -> Tensor:
        if pooler == "pool":
            return torchvision.ops.roi_pool(feature, these, (output, output), scale)
        return torchvision.ops.roi_align(feature, these, (output, output), scale, sampling_ratio, False)

    if static:
        result = pool(features[0], rois, scales[0])
        for i in range(1, len(features)):
            result = torch.where((level == i).reshape(-1, 1, 1, 1), pool(features[i], rois, scales[i]), result)
        return result
    onehot = (level.unsqueeze(1) == torch.arange(len(features), device=boxes.device)).float()  # [N, L]
    blocks = []
    for i, (feature, scale) in enumerate(zip(features, scales)):
        rows = torch.nonzero(onehot[:, i])[:, 0]
        blocks.append(pool(feature, rois.index_select(0, torch.cat([rows, rows.new_zeros(1)])), scale))  # + RoI 0
    sizes = onehot.sum(0) + 1  # rows of each level's block
    start = torch.cumsum(sizes, 0) - sizes  # [L] where each block begins
    rank = torch.cumsum(onehot, 0) - 1  # [N, L]: a RoI's place among its level's
    position = start.index_select(0, level) + rank.gather(1, level.unsqueeze(1))[:, 0]
    return torch.cat(blocks).index_select(0, position.to(torch.int64))


class MultiLevelRoIPool(nn.Module):
    """:func:`multilevel_roi_pool` as a module, so the exported nodes carry its scope in their names."""

    def __init__(self, scales: list[float], output: int, sampling_ratio: int, pooler: str = "align",
                 static: bool = False) -> None:
        super().__init__()
        self.scales, self.output, self.sampling_ratio, self.pooler = list(scales), output, sampling_ratio, pooler
        self.static = static

    def forward(self, features: list[Tensor], boxes: Tensor) -> Tensor:
        return multilevel_roi_pool(features, self.scales, boxes, self.output, self.sampling_ratio, self.pooler,
                                   self.static)


class RoIPoolers(nn.ModuleDict):
    """Named :class:`MultiLevelRoIPool` modules called through this one, so that under
    :class:`~edgecv.models.tv_twostage.TwoStageGraph` (attribute ``edgecv_roialign``) the exported
    nodes are named ``/edgecv_roialign/<name>/...``: the subgraphs that
    :func:`edgecv.plugins.roi_align.graph.replace` swaps for plugin nodes."""

    def forward(self, name: str, features: list[Tensor], boxes: Tensor) -> Tensor:  # type: ignore[override]
        return self[name](features, boxes)
