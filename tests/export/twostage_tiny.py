"""A tiny Mask R-CNN for the two-stage int8 tests: torchvision's ``MaskRCNN`` (so its box stage is
Faster R-CNN's) on a 3-level, 32-channel conv backbone + FPN, trained for a few minutes on the
built-in synthetic shapes, so its scores and boxes behave like a trained model's (random weights
make int8 vs fp32 a comparison of noise).

``python tests/export/twostage_tiny.py`` retrains it and writes :data:`WEIGHTS` (fp16 state dict,
~1 MB); the tests only load it.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS = Path(__file__).resolve().parents[1] / "data" / "tiny_maskrcnn_shapes.pt"
SIZE = 128
NAMES = ["__background__", "circle", "square", "triangle", "star", "cross"]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _block(cin: int, cout: int) -> nn.Sequential:
    """Conv 3x3 stride 2 + BatchNorm + ReLU, then conv 3x3 + BatchNorm + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Body(nn.Module):
    """Strides 4, 8, 16 with 16, 32, 64 channels: ``OrderedDict`` of the three maps ('0', '1', '2')."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(_block(3, 16), _block(16, 16))
        self.c3, self.c4 = _block(16, 32), _block(32, 64)

    def forward(self, x: torch.Tensor) -> OrderedDict:
        p2 = self.stem(x)
        p3 = self.c3(p2)
        return OrderedDict([("0", p2), ("1", p3), ("2", self.c4(p3))])


class _Backbone(nn.Module):
    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        self.body = _Body()
        self.fpn = FeaturePyramidNetwork([16, 32, 64], channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return self.fpn(self.body(x))


def tiny_maskrcnn(num_classes: int = len(NAMES), imgsz: int = SIZE, conf: float = 0.3, iou: float = 0.5,
                  max_det: int = 20) -> nn.Module:
    """The tiny Mask R-CNN, transform an identity at ``imgsz`` (min = max size, mean 0, std 1: inputs are
    already ImageNet-normalised RGB, as edgecv's pre-processing makes them)."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    anchors = AnchorGenerator(((12,), (24,), (48,), (96,)), ((0.5, 1.0, 2.0),) * 4)
    return MaskRCNN(
        _Backbone(), None, min_size=imgsz, max_size=imgsz, image_mean=[0.0] * 3, image_std=[1.0] * 3,
        rpn_anchor_generator=anchors, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=40,
        rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 7, 2), box_head=TwoMLPHead(32 * 49, 128),
        box_predictor=FastRCNNPredictor(128, num_classes), box_score_thresh=conf, box_nms_thresh=iou,
        box_detections_per_img=max_det, box_batch_size_per_image=128,
        mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 14, 2), mask_head=MaskRCNNHeads(32, (32, 32), 1),
        mask_predictor=MaskRCNNPredictor(32, 32, num_classes)).eval()


def normalised(image_bgr: np.ndarray) -> torch.Tensor:
    """``[3, H, W]`` float32 RGB, ImageNet mean / std (what the exported graph's metadata states)."""
    rgb = image_bgr[:, :, ::-1].astype(np.float32) / 255
    return torch.from_numpy(((rgb - MEAN) / STD).transpose(2, 0, 1).astype(np.float32))


def save(model: nn.Module, path: Path = WEIGHTS) -> None:
    """``model``'s state dict in fp16 at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path)


def train(steps: int = 200, batch: int = 4, seed: int = 0) -> nn.Module:
    """Train :func:`tiny_maskrcnn` on fresh synthetic scenes (SGD, momentum 0.9, lr 0.02 with warm-up
    and a step decay at 75 %); prints the loss and saves :data:`WEIGHTS` every 25 steps."""
    from edgecv.data.synthetic import ShapesDataset

    torch.manual_seed(seed)
    model = tiny_maskrcnn().train()
    data = ShapesDataset("train", steps * batch, SIZE, seed=seed)
    optim = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    start, running = time.time(), []
    for step in range(steps):
        lr = 0.02 * min(1.0, (step + 1) / 50) * (0.1 if step > 0.75 * steps else 1.0)
        for group in optim.param_groups:
            group["lr"] = lr
        samples = [data[step * batch + i] for i in range(batch)]
        images = [normalised(s.image) for s in samples]
        targets = [{"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.class_ids.astype(np.int64) + 1),
                    "masks": torch.from_numpy(s.masks.astype(np.uint8))} for s in samples]
        loss = sum(model(images, targets).values())
        optim.zero_grad()
        loss.backward()
        optim.step()
        running.append(float(loss.detach()))
        if (step + 1) % 25 == 0:
            print(f"step {step + 1}: loss {np.mean(running[-25:]):.3f} ({time.time() - start:.0f} s)", flush=True)
            save(model)
    return model.eval()


def load_tiny(conf: float = 0.3, iou: float = 0.5, max_det: int = 20) -> nn.Module:
    """:func:`tiny_maskrcnn` with the trained :data:`WEIGHTS` (float32)."""
    model = tiny_maskrcnn(conf=conf, iou=iou, max_det=max_det)
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()


if __name__ == "__main__":
    save(train(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
    print(f"wrote {WEIGHTS} ({WEIGHTS.stat().st_size / 1e6:.2f} MB)")
