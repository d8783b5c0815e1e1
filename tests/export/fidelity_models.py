"""Small detectors for the fidelity tests, built here (no downloads).

:class:`SigmoidDecodeDetector` mimics a real 0.25M-parameter COCO-style detector: Conv-BN-SiLU
blocks (BatchNorm with non-trivial running statistics, which the exporter folds into the
convolutions, so ONNX Runtime's arithmetic differs from PyTorch's the way it does for real
models) and a YOLOv5-style sigmoid box decode at strides 8/16/32 with 3 anchors per cell::

    cx, cy = (sigmoid(t_xy) * 2 - 0.5 + grid) * stride
    w, h   = (sigmoid(t_wh) * 2) ** 2 * anchor
    score  = sigmoid(t_obj) * sigmoid(t_cls)

It returns ``boxes [B, N, 4]`` x1,y1,x2,y2 input pixels and ``scores [B, N, C]`` probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

ANCHORS = [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]]


def conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Conv3x3 + BatchNorm (random running statistics, as after training) + SiLU."""
    bn = nn.BatchNorm2d(cout)
    with torch.no_grad():
        bn.running_var.uniform_(0.03, 0.3)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-0.5, 0.5)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), bn, nn.SiLU())


class SigmoidDecodeDetector(nn.Module):
    """See the module docstring. ``score_gain`` scales the score channels' weights and ``obj_bias`` shifts
    every objectness logit (very negative: no detections)."""

    def __init__(self, num_classes: int = 3, seed: int = 1, obj_bias: float = 0.0, score_gain: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.num_classes = num_classes
        self.p8 = nn.Sequential(conv_bn(3, 16, 2), conv_bn(16, 32, 2), conv_bn(32, 32, 1), conv_bn(32, 48, 2),
                                conv_bn(48, 48, 1))
        self.p16 = nn.Sequential(conv_bn(48, 64, 2), conv_bn(64, 64, 1))
        self.p32 = nn.Sequential(conv_bn(64, 96, 2), conv_bn(96, 96, 1))
        self.heads = nn.ModuleList(nn.Conv2d(c, 3 * (5 + num_classes), 1) for c in (48, 64, 96))
        with torch.no_grad():
            for head in self.heads:  # score channels: gain on the weights, bias on objectness
                head.weight.view(3, 5 + num_classes, -1)[:, 4:] *= score_gain
                head.bias.view(3, 5 + num_classes)[:, 4] += obj_bias
        self.register_buffer("anchors", torch.tensor(ANCHORS, dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f8 = self.p8(images)
        f16 = self.p16(f8)
        f32 = self.p32(f16)
        boxes, scores = [], []
        for level, (feature, stride) in enumerate(zip((f8, f16, f32), (8, 16, 32))):
            p = self.heads[level](feature)
            b, _, h, w = p.shape
            t = p.view(b, 3, 5 + self.num_classes, h, w).permute(0, 1, 3, 4, 2).sigmoid()
            gy, gx = torch.meshgrid(torch.arange(h, dtype=p.dtype), torch.arange(w, dtype=p.dtype), indexing="ij")
            grid = torch.stack((gx, gy), -1)
            xy = (t[..., :2] * 2 - 0.5 + grid) * stride
            wh = (t[..., 2:4] * 2) ** 2 * self.anchors[level].view(1, 3, 1, 1, 2)
            boxes.append(torch.cat((xy - wh / 2, xy + wh / 2), -1).reshape(b, -1, 4))
            scores.append((t[..., 4:5] * t[..., 5:]).reshape(b, -1, self.num_classes))
        return torch.cat(boxes, 1), torch.cat(scores, 1)


class HalvedWhenTraced(nn.Module):
    """One fixed box scored 0.5 when run eagerly but 0.25 in the traced graph: an export that changes results."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes = torch.tensor([[[4.0, 4.0, 40.0, 40.0]]]).expand(images.shape[0], 1, 4)
        scores = (images.mean((1, 2, 3)) * 0 + 0.5)[:, None, None]
        if torch.jit.is_tracing():
            scores = scores * 0.5
        return boxes, scores
