"""A model with another input convention (BGR channels, stretch resize) exported through the
any-module API reproduces its own PyTorch pipeline, done independently in torch on non-square frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from edgecv.data.synthetic import ShapesDataset
from edgecv.errors import OptionError
from edgecv.export.api import export_torch_detector
from edgecv.export.fidelity import box_iou
from edgecv.export.torch_predictor import TorchPredictor
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.models import load_for_export
from edgecv.models.base import LoadedDetector
from edgecv.runtimes import Predictor

FRAME_H, FRAME_W = 320, 480  # non-square frames: stretch maps x and y back with different scales
MATCH_IOU = 0.9


class BgrInput(nn.Module):
    """The demo YOLO made to take BGR input: flip the channels back to RGB, then run it."""

    def __init__(self, rgb_model: nn.Module) -> None:
        super().__init__()
        self.model = rgb_model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(images[:, [2, 1, 0]])


@pytest.fixture(scope="module")
def bgr_stretch(tmp_path_factory) -> tuple[Path, nn.Module, int]:
    demo = load_for_export("yolo", None)
    module = BgrInput(demo.module).eval()
    out = tmp_path_factory.mktemp("bgr_stretch") / "model.onnx"
    result = export_torch_detector(module, demo.class_names, out, resize="stretch", color_order="BGR",
                                   imgsz=demo.imgsz)  # default tolerances: raises unless the check passes
    assert result.fidelity["passed"]
    return result.path, module, demo.imgsz


def frames(count: int = 16) -> list[np.ndarray]:
    """Synthetic scenes stretched to 480x320 (BGR uint8): the stretch pipeline squeezes them back."""
    scenes = ShapesDataset("val", count, 320, seed=99)
    return [cv2.resize(scenes[i].image, (FRAME_W, FRAME_H), interpolation=cv2.INTER_LINEAR) for i in range(count)]


@torch.no_grad()
def torch_pipeline(module: nn.Module, images: list[np.ndarray], size: int, conf: float, iou: float, max_det: int
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The model's own pipeline, all in torch: stretch (bilinear) each BGR frame, no channel swap,
    /255, run (one batch), class-wise NMS (torchvision), boxes scaled back per axis.
    Returns ``(boxes [N, 4] xyxy original pixels, classes [N])`` per frame."""
    x = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255.0 for f in images])  # BGR planes
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    results = []
    for frame, boxes, scores in zip(images, *module(x)):
        cand, cls = (scores > conf).nonzero(as_tuple=True)
        keep = torchvision.ops.batched_nms(boxes[cand], scores[cand, cls], cls, iou)[:max_det]
        h, w = frame.shape[:2]
        out = boxes[cand][keep] * torch.tensor([w / size, h / size, w / size, h / size])
        results.append((out.numpy(), cls[keep].numpy()))
    return results


def _matched(a: np.ndarray, ca: np.ndarray, b: np.ndarray, cb: np.ndarray) -> int:
    """Greedy one-to-one matches with the same class and IoU >= MATCH_IOU."""
    if not len(a) or not len(b):
        return 0
    ious = box_iou(a, b) * (ca[:, None] == cb[None, :])
    count = 0
    while ious.size and ious.max() >= MATCH_IOU:
        i, j = np.unravel_index(np.argmax(ious), ious.shape)
        ious[i, :], ious[:, j] = -1, -1
        count += 1
    return count


def test_bgr_stretch_model_reproduces_its_torch_pipeline(bgr_stretch) -> None:
    path, module, size = bgr_stretch
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = ArtifactMetadata.from_json(props[METADATA_KEY])
    assert (meta.resize, meta.color_order) == ("stretch", "BGR")
    images = frames(10)
    reference = torch_pipeline(module, images, size, meta.conf_threshold, meta.iou_threshold, meta.max_det)
    matched = pairs = 0
    with Predictor(path) as predictor:
        for dets, (ref_boxes, ref_classes) in zip(predictor(images), reference):
            pairs += max(len(dets), len(ref_boxes))
            matched += _matched(dets.boxes, dets.class_ids, ref_boxes, ref_classes)
    assert matched >= 30, f"only {matched} matched detections"
    assert matched / pairs >= 0.99, f"{matched}/{pairs} detections matched at IoU >= {MATCH_IOU}"


def test_torch_predictor_follows_the_artifact_convention(bgr_stretch) -> None:
    """The PyTorch-side predictor (evaluation) stretches and keeps BGR like the runtime does."""
    path, module, size = bgr_stretch
    detector = LoadedDetector(module=module, class_names=list("abcde"), imgsz=size, resize="stretch",
                              color_order="BGR")
    torch_side = TorchPredictor(detector)
    assert (torch_side.metadata.resize, torch_side.metadata.color_order) == ("stretch", "BGR")
    images = frames(4)
    with Predictor(path) as predictor:
        for frame, ref in zip(images, torch_side(images)):
            dets = predictor(frame)
            assert len(dets) == len(ref) > 0
            assert _matched(dets.boxes, dets.class_ids, ref.boxes, ref.class_ids) == len(ref)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"color_order": "HSV"}, r"color_order: expected one of \['RGB', 'BGR'\], found 'HSV'"),
    ({"resize": "crop"}, r"resize: expected one of \['letterbox', 'stretch'\], found 'crop'"),
    ({"pad_value": 300}, r"pad_value: expected an integer in \[0, 255\], found 300"),
    ({"std": [1.0, 0.0, 1.0]}, r"std: expected a list of 3 numbers > 0"),
    ({"mean": [0.5, 0.5]}, r"mean: expected a list of 3 finite numbers"),
])
def test_bad_convention_is_refused_before_export(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        export_torch_detector(nn.Identity(), ["a"], tmp_path / "m.onnx", **kwargs)
    assert not (tmp_path / "m.onnx").exists()
