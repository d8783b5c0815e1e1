"""Training loss of edgecv's YOLO: task-aligned assignment, BCE classification, CIoU + DFL boxes.

Follows the published YOLOv8 recipe (TOOD's task-aligned assigner with top-k = 10,
alpha = 0.5, beta = 6; loss gains box 7.5, cls 0.5, dfl 1.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from edgecv.models.yolo import distance_to_xyxy, distribution_to_distance, flatten_maps, make_anchors

_EPS = 1e-9


def box_ciou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complete IoU of x1,y1,x2,y2 boxes, broadcasting over leading dims → [...]."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a.unbind(-1), b.unbind(-1)
    aw, ah = ax2 - ax1, (ay2 - ay1).clamp(min=1e-7)
    bw, bh = bx2 - bx1, (by2 - by1).clamp(min=1e-7)
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(0) * (
        torch.minimum(ay2, by2) - torch.maximum(ay1, by1)
    ).clamp(0)
    union = aw * ah + bw * bh - inter + 1e-7
    iou = inter / union
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    diag = cw**2 + ch**2 + 1e-7
    centre = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(bw / bh) - torch.atan(aw / ah)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + 1e-7))
    return iou - (centre / diag + v * alpha)


class TaskAlignedAssigner:
    """Assign ground truths to anchors by ``score^alpha * IoU^beta`` among anchors inside each box."""

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0) -> None:
        self.topk, self.alpha, self.beta = topk, alpha, beta

    @torch.no_grad()
    def __call__(self, scores: torch.Tensor, boxes: torch.Tensor, points: torch.Tensor,
                 gt_labels: torch.Tensor, gt_boxes: torch.Tensor, gt_valid: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """scores [B,N,C] probabilities, boxes [B,N,4] and points [N,2] in pixels,
        gt_labels [B,M] long, gt_boxes [B,M,4] pixels, gt_valid [B,M] bool.

        Returns target boxes [B,N,4], target scores [B,N,C] (IoU-aware soft labels), fg mask [B,N].
        """
        b, n, c = scores.shape
        if gt_boxes.shape[1] == 0:
            return torch.zeros_like(boxes), torch.zeros_like(scores), torch.zeros(b, n, dtype=torch.bool)
        lt = points[None, None] - gt_boxes[:, :, None, :2]
        rb = gt_boxes[:, :, None, 2:] - points[None, None]
        inside = torch.cat((lt, rb), -1).amin(-1) > _EPS  # [B,M,N]
        valid = inside & gt_valid[:, :, None]
        overlaps = box_ciou(gt_boxes[:, :, None], boxes[:, None]).clamp(0) * valid
        cls_scores = scores.gather(2, gt_labels[:, None, :].expand(b, n, -1)).transpose(1, 2)  # [B,M,N]
        metric = cls_scores.pow(self.alpha) * overlaps.pow(self.beta) * valid
        top = metric.topk(min(self.topk, n), dim=-1).indices
        pos = torch.zeros_like(metric, dtype=torch.bool).scatter_(-1, top, True) & valid
        # An anchor claimed by several boxes goes to the one it overlaps most.
        multi = pos.sum(1, keepdim=True) > 1
        best = F.one_hot(overlaps.argmax(1), gt_boxes.shape[1]).transpose(1, 2).bool()
        pos = torch.where(multi, best & valid, pos)
        fg = pos.any(1)
        gt_index = pos.float().argmax(1)  # [B,N]
        target_boxes = gt_boxes.gather(1, gt_index[..., None].expand(-1, -1, 4))
        target_labels = gt_labels.gather(1, gt_index)
        metric = metric * pos
        norm = (metric * overlaps.amax(-1, keepdim=True) / (metric.amax(-1, keepdim=True) + _EPS)).amax(1)
        target_scores = F.one_hot(target_labels, c).float() * (norm * fg)[..., None]
        return target_boxes, target_scores, fg


class YoloLoss:
    """Sum of box (CIoU), class (BCE) and distribution-focal losses for a batch."""

    def __init__(self, num_classes: int, reg_max: int, gains: tuple[float, float, float] = (7.5, 0.5, 1.5)) -> None:
        self.num_classes, self.reg_max, self.gains = num_classes, reg_max, gains
        self.assigner = TaskAlignedAssigner()

    def __call__(self, maps: list[torch.Tensor], gt_labels: torch.Tensor, gt_boxes: torch.Tensor,
                 gt_valid: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """maps: the model's training output; gt_* as in :class:`TaskAlignedAssigner` (pixels).

        Returns the scalar loss (scaled by batch size) and its parts for logging.
        """
        maps = [m.float() for m in maps]
        points, strides = make_anchors(maps)
        box_logits, cls_logits = flatten_maps(maps, self.reg_max)
        pred_grid = distance_to_xyxy(distribution_to_distance(box_logits, self.reg_max), points)
        target_boxes, target_scores, fg = self.assigner(
            cls_logits.detach().sigmoid(), (pred_grid.detach() * strides), points * strides,
            gt_labels, gt_boxes, gt_valid,
        )
        score_sum = target_scores.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(cls_logits, target_scores, reduction="sum") / score_sum
        loss_box = loss_dfl = cls_logits.new_zeros(())
        if fg.any():
            weight = target_scores.sum(-1)[fg]
            target_grid = target_boxes / strides
            iou = box_ciou(pred_grid[fg], target_grid[fg])
            loss_box = ((1.0 - iou) * weight).sum() / score_sum
            loss_dfl = (self._dfl(box_logits[fg], points.expand_as(pred_grid[..., :2])[fg], target_grid[fg]) * weight).sum() / score_sum
        parts = {"box": float(loss_box.detach()), "cls": float(loss_cls.detach()), "dfl": float(loss_dfl.detach())}
        total = self.gains[0] * loss_box + self.gains[1] * loss_cls + self.gains[2] * loss_dfl
        return total * maps[0].shape[0], parts

    def _dfl(self, logits: torch.Tensor, points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Distribution focal loss per positive anchor [P]: cross-entropy to the two nearest bins."""
        lt, rb = points - target[:, :2], target[:, 2:] - points
        dist = torch.cat((lt, rb), -1).clamp(0, self.reg_max - 1 - 0.01)  # [P,4]
        logits = logits.reshape(-1, self.reg_max)
        dist = dist.reshape(-1)
        left = dist.long()
        w_left = left + 1 - dist
        loss = F.cross_entropy(logits, left, reduction="none") * w_left + F.cross_entropy(
            logits, left + 1, reduction="none"
        ) * (1 - w_left)
        return loss.reshape(-1, 4).mean(-1)
