"""edgecv's own YOLO: an anchor-free single-stage detector in the YOLOv8 family.

CSP-style backbone (C2f blocks + SPPF), PAN neck, decoupled head with distribution-focal box
regression (``reg_max`` bins per side). Written from the published architecture description;
sizes ``n`` and ``s`` follow the family's depth/width multipliers.

Input: float32 [B,3,H,W] RGB in [0,1], H and W multiples of 32.
Training output: list of 3 maps [B, 4*reg_max + C, H/s, W/s] for strides 8, 16, 32.
:func:`decode` turns them into ``boxes [B,N,4]`` (x1,y1,x2,y2 input pixels) and
``scores [B,N,C]`` (sigmoid probabilities), N = sum of H/s * W/s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class YoloConfig:
    """Architecture hyper-parameters; stored in every edgecv checkpoint."""

    size: str = "n"
    num_classes: int = 5
    reg_max: int = 16

    @property
    def multipliers(self) -> tuple[float, float]:
        """(depth, width) multipliers of the size."""
        return SIZES[self.size]

    def to_dict(self) -> dict:
        return asdict(self)


SIZES: dict[str, tuple[float, float]] = {"n": (0.33, 0.25), "s": (0.33, 0.5), "m": (0.67, 0.75)}


class ConvBnAct(nn.Module):
    """Conv2d (no bias) + BatchNorm + SiLU, 'same' padding."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 convs with an optional residual connection."""

    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1 = ConvBnAct(c, c, 3)
        self.cv2 = ConvBnAct(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block: split, run n bottlenecks on one half keeping every intermediate, concat, fuse."""

    def __init__(self, c_in: int, c_out: int, n: int, shortcut: bool) -> None:
        super().__init__()
        self.hidden = c_out // 2
        self.cv1 = ConvBnAct(c_in, 2 * self.hidden)
        self.cv2 = ConvBnAct((2 + n) * self.hidden, c_out)
        self.blocks = nn.ModuleList(Bottleneck(self.hidden, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # split by Python ints: a traced chunk(2, 1) becomes Slice ends computed from Shape, which ONNX shape
        # inference cannot follow (the two-stage RoI Align plugin pass needs the level maps' static H, W)
        parts = list(self.cv1(x).split((self.hidden, self.hidden), 1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained 5x5 max-pools, concatenated."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in // 2
        self.cv1 = ConvBnAct(c_in, hidden)
        self.cv2 = ConvBnAct(hidden * 4, c_out)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))


class DetectHead(nn.Module):
    """Decoupled head: a box branch (4*reg_max logits) and a class branch (C logits) per level."""

    def __init__(self, channels: tuple[int, ...], num_classes: int, reg_max: int) -> None:
        super().__init__()
        self.num_classes, self.reg_max = num_classes, reg_max
        c_box = max(16, channels[0] // 4, reg_max * 4)
        c_cls = max(channels[0], min(num_classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(ConvBnAct(c, c_box, 3), ConvBnAct(c_box, c_box, 3), nn.Conv2d(c_box, 4 * reg_max, 1))
            for c in channels
        )
        self.cls = nn.ModuleList(
            nn.Sequential(ConvBnAct(c, c_cls, 3), ConvBnAct(c_cls, c_cls, 3), nn.Conv2d(c_cls, num_classes, 1))
            for c in channels
        )

    def init_biases(self, imgsz: int = 640) -> None:
        """Prior so that early training is stable: ~0.01 objects per cell per class."""
        for box, cls, stride in zip(self.box, self.cls, STRIDES):
            nn.init.constant_(box[-1].bias, 1.0)
            nn.init.constant_(cls[-1].bias, math.log(5 / self.num_classes / (imgsz / stride) ** 2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat((box(f), cls(f)), 1) for f, box, cls in zip(feats, self.box, self.cls)]


class Yolo(nn.Module):
    """The full detector. ``forward`` returns the per-level raw maps (see module docstring)."""

    def __init__(self, config: YoloConfig) -> None:
        super().__init__()
        self.config = config
        depth, width = config.multipliers
        c1, c2, c3, c4, c5 = (max(8, int(c * width)) for c in (64, 128, 256, 512, 1024))
        d3, d6 = max(1, round(3 * depth)), max(1, round(6 * depth))
        self.stem = nn.Sequential(ConvBnAct(3, c1, 3, 2), ConvBnAct(c1, c2, 3, 2), C2f(c2, c2, d3, True))
        self.dark3 = nn.Sequential(ConvBnAct(c2, c3, 3, 2), C2f(c3, c3, d6, True))
        self.dark4 = nn.Sequential(ConvBnAct(c3, c4, 3, 2), C2f(c4, c4, d6, True))
        self.dark5 = nn.Sequential(ConvBnAct(c4, c5, 3, 2), C2f(c5, c5, d3, True), SPPF(c5, c5))
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.top_down4 = C2f(c5 + c4, c4, d3, False)
        self.top_down3 = C2f(c4 + c3, c3, d3, False)
        self.down3 = ConvBnAct(c3, c3, 3, 2)
        self.bottom_up4 = C2f(c3 + c4, c4, d3, False)
        self.down4 = ConvBnAct(c4, c4, 3, 2)
        self.bottom_up5 = C2f(c4 + c5, c5, d3, False)
        self.head = DetectHead((c3, c4, c5), config.num_classes, config.reg_max)
        self.head.init_biases()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.dark3(self.stem(x))
        p4 = self.dark4(p3)
        p5 = self.dark5(p4)
        t4 = self.top_down4(torch.cat((self.up(p5), p4), 1))
        n3 = self.top_down3(torch.cat((self.up(t4), p3), 1))
        n4 = self.bottom_up4(torch.cat((self.down3(n3), t4), 1))
        n5 = self.bottom_up5(torch.cat((self.down4(n4), p5), 1))
        return self.head([n3, n4, n5])


def make_anchors(maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell-centre anchor points [N,2] (x, y in grid units of their level) and strides [N,1]."""
    points, strides = [], []
    for feat, stride in zip(maps, STRIDES):
        h, w = feat.shape[-2:]
        ys = torch.arange(h, device=feat.device, dtype=torch.float32) + 0.5
        xs = torch.arange(w, device=feat.device, dtype=torch.float32) + 0.5
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), -1).reshape(-1, 2))
        strides.append(torch.full((h * w, 1), float(stride), device=feat.device))
    return torch.cat(points), torch.cat(strides)


def flatten_maps(maps: list[torch.Tensor], reg_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level maps → box logits [B,N,4*reg_max] and class logits [B,N,C]."""
    b = maps[0].shape[0]
    flat = torch.cat([m.reshape(b, m.shape[1], -1) for m in maps], 2).transpose(1, 2)
    return flat[..., : 4 * reg_max], flat[..., 4 * reg_max :]


def distribution_to_distance(box_logits: torch.Tensor, reg_max: int) -> torch.Tensor:
    """DFL: expected value of the softmax over ``reg_max`` bins → distances [..., 4] (l,t,r,b)."""
    shape = box_logits.shape[:-1]
    probs = box_logits.reshape(*shape, 4, reg_max).softmax(-1)
    bins = torch.arange(reg_max, device=box_logits.device, dtype=probs.dtype)
    return (probs * bins).sum(-1)


def distance_to_xyxy(distance: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(l,t,r,b) distances from anchor points → x1,y1,x2,y2 (same units as the inputs)."""
    lt, rb = distance.chunk(2, -1)
    return torch.cat((points - lt, points + rb), -1)


def expected_bin(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """DFL over axis 2: ``logits [B, 4, R, N]``, ``bins [R, 1]`` → ``Σ_r softmax(logits)_r · bins_r`` [B, 4, N].

    The softmax is written out, ``e = exp(x - max)``, ``Σ e·bins / Σ e``, because it exports to
    ReduceMax / Sub / Exp / Mul / ReduceSum / Div, which ONNX Runtime runs in 0.34 ms at 640 px
    (8,400 anchors) where its ``Softmax`` over a non-last axis goes through an internal transpose:
    0.7 ms for this ``[1,4,16,N]`` layout, 5.9 ms for Ultralytics' ``[1,16,4,N]`` one (OpenVINO: 0.73
    against 0.92 ms) [CPU: avx2 only, no VNNI/AMX]; ``python benchmarks/bench_dfl.py`` measures the three
    forms side by side. Subtracting the per-side max keeps ``exp`` <= 1;
    no compute op follows, so calibration leaves it float like the rest of the decode.
    """
    e = (logits - logits.amax(2, keepdim=True)).exp()
    return (e * bins).sum(2) / e.sum(2)


def decode(maps: list[torch.Tensor], reg_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw maps → ``boxes [B,N,4]`` x1,y1,x2,y2 input pixels, ``scores [B,N,C]`` in [0,1].

    The same arithmetic as :func:`flatten_maps` + :func:`distribution_to_distance` +
    :func:`distance_to_xyxy` (the training loss's path), done in the maps' channel-first layout
    ``[B, X, N]`` and transposed last: an exported graph then ends in ``Transpose(perm=[0,2,1])`` of
    ``[B,4,N]`` / ``[B,C,N]``, which :func:`edgecv.export.nms.append_nms` drops to read the
    channel-first tensors, so no full-size Transpose is left in the graph.
    """
    points, strides = make_anchors(maps)  # [N,2], [N,1]
    b = maps[0].shape[0]
    flat = torch.cat([m.reshape(b, m.shape[1], -1) for m in maps], 2)  # [B, 4*reg_max + C, N]
    bins = torch.arange(reg_max, device=flat.device, dtype=flat.dtype).reshape(reg_max, 1)
    distance = expected_bin(flat[:, : 4 * reg_max].reshape(b, 4, reg_max, -1), bins)  # [B,4,N]: l,t,r,b
    corners = points.transpose(0, 1)  # [2,N]
    boxes = torch.cat((corners - distance[:, :2], corners + distance[:, 2:]), 1) * strides.transpose(0, 1)
    return boxes.transpose(1, 2), flat[:, 4 * reg_max :].sigmoid().transpose(1, 2)


class YoloDecoded(nn.Module):
    """Export wrapper: images [B,3,H,W] float32 RGB [0,1] → (raw_boxes [B,N,4], raw_scores [B,N,C])."""

    def __init__(self, model: Yolo) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return decode(self.model(images), self.model.config.reg_max)
