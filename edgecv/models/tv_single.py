"""torchvision's single-stage detectors (SSD, SSDlite, RetinaNet, FCOS) as edgecv exports.

The builders are torchvision's own, always called with ``weights=None, weights_backbone=None`` (no
download); ``--weights`` loads a state dict saved from the same builder (:mod:`edgecv.models.tv_weights`).

Export-friendly rewrite (:class:`SingleStageDecoded`): backbone + head are torchvision's modules,
called on the batch; torchvision's transform (resize + normalisation) is not in the graph -- the
artifact metadata states it and the runtime's shared pre-processing does it:

* SSD300 / SSDlite320: the image is stretched to the input size (``resize="stretch"``), normalised
  with the model's own mean/std (SSD300: ``(x - mean) * 255``; SSDlite: ``(x - 0.5) / 0.5``);
* RetinaNet / FCOS: torchvision resizes the shorter side to 800 (longer <= 1333) and pads right /
  bottom; here the image is letterboxed to the square export size, ImageNet mean/std, RGB. The pad
  value 114 is the ImageNet mean pixel (124, 116, 104) in one grey: torchvision pads normalised
  zeros, i.e. that mean.

Anchors: computed by torchvision's own anchor generator, from Python ints (the input and feature
sizes), so tracing a fixed-size export stores them as one constant ``[N, 4]`` tensor shared by the
batch: no per-image loop and no anchor arithmetic at run time, and a node count independent of the
batch size. The price: the graph is tied to its input size, so ``--dynamic`` is refused.

Decode, batched over ``[B, N, 4]``: RetinaNet / SSD use torchvision's box-coder formula (weights
1,1,1,1 and 10,10,5,5, log-size clamp), FCOS its ``ltrb`` distances times the anchor size; boxes
are clipped to the input like torchvision's post-processing. Scores: SSD a softmax over classes with
the background (label 0) dropped; RetinaNet a sigmoid; FCOS ``sqrt(sigmoid(cls) * sigmoid(ctrness))``.
Channels named ``__background__`` or ``N/A`` (torchvision's COCO list keeps 10 "N/A" placeholders for
unused COCO category ids) are removed from ``raw_scores`` by a constant index: class ids are the
remaining labels in order (the 80 COCO classes); the torchvision label of each class id is stored in
the metadata's ``training["torchvision_labels"]`` (for COCO heads, that is the COCO category id).
edgecv's NMS pass then does candidate top-k, per-class NMS and the top ``max_det``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgecv.errors import OptionError, WeightsError
from edgecv.fileio import sha256_file
from edgecv.models.base import LoadedDetector
from edgecv.models.tv_weights import DROPPED_NAMES, check_fits, label_names, read_state_dict

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class Spec:
    """How one builder is exported: family kind, default square size and input convention."""

    kind: str  # "ssd" | "retinanet" | "fcos"
    imgsz: int
    mean: tuple[float, float, float] = tuple(IMAGENET_MEAN)
    std: tuple[float, float, float] = tuple(IMAGENET_STD)
    resize: str = "letterbox"
    size_multiple: int = 32


SPECS: dict[str, Spec] = {
    # SSD's transform: fixed_size 300 / 320 (stretch), size_divisible=1; its mean/std from the builders.
    "ssd300_vgg16": Spec("ssd", 300, (0.48235, 0.45882, 0.40784), (1 / 255, 1 / 255, 1 / 255), "stretch", 4),
    "ssdlite320_mobilenet_v3_large": Spec("ssd", 320, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "stretch"),
    # torchvision: min side 800 / max 1333; edgecv exports a square letterbox (640 by default).
    "retinanet_resnet50_fpn": Spec("retinanet", 640),
    "retinanet_resnet50_fpn_v2": Spec("retinanet", 640),
    "fcos_resnet50_fpn": Spec("fcos", 640),
}


def build(builder: str, num_classes: int) -> nn.Module:
    """torchvision's ``builder`` with random weights (``weights=None, weights_backbone=None``), eval mode."""
    from torchvision.models import detection

    return getattr(detection, builder)(weights=None, weights_backbone=None, num_classes=num_classes).eval()


def decode_deltas(rel: torch.Tensor, anchors: torch.Tensor, weights: tuple[float, ...], clip: float) -> torch.Tensor:
    """torchvision's ``BoxCoder.decode_single``, batched: ``rel [B,N,4]`` + ``anchors [N,4]`` xyxy -> ``[B,N,4]`` xyxy."""
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ctr_x, ctr_y = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = rel[..., 0] / wx, rel[..., 1] / wy
    dw, dh = torch.clamp(rel[..., 2] / ww, max=clip), torch.clamp(rel[..., 3] / wh, max=clip)
    cx, cy = dx * widths + ctr_x, dy * heights + ctr_y
    half_w, half_h = 0.5 * (torch.exp(dw) * widths), 0.5 * (torch.exp(dh) * heights)
    return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)


class SingleStageDecoded(nn.Module):
    """torchvision single-stage detector -> ``(raw_boxes [B,N,4] x1,y1,x2,y2 input px, raw_scores [B,N,C'])``.

    ``images``: float32 ``[B,3,H,W]``, already resized and normalised (see the module docstring).
    ``keep``: torchvision labels whose score channels are returned (``C'`` of them, in order).
    """

    def __init__(self, model: nn.Module, kind: str, keep: list[int], num_labels: int) -> None:
        super().__init__()
        self.model, self.kind = model, kind
        self.all_kept = keep == list(range(num_labels))
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.int64), persistent=False)

    def anchors(self, height: int, width: int, features: list[torch.Tensor]) -> torch.Tensor:
        """``[N, 4]`` xyxy anchors of one image, from Python ints only (a constant in a fixed-size trace)."""
        from torchvision.models.detection.image_list import ImageList

        image = torch.zeros(1, 3, height, width)
        shapes = [torch.zeros(1, 1, int(f.shape[-2]), int(f.shape[-1])) for f in features]
        return self.model.anchor_generator(ImageList(image, [(height, width)]), shapes)[0]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = int(images.shape[-2]), int(images.shape[-1])
        features = self.model.backbone(images)
        features = list(features.values()) if isinstance(features, dict) else [features]
        head = self.model.head(features)
        anchors = self.anchors(height, width, features)
        if self.kind == "fcos":  # BoxLinearCoder.decode broadcasts [B,N,4] against [N,4]
            boxes = self.model.box_coder.decode(head["bbox_regression"], anchors)
        else:
            coder = self.model.box_coder
            boxes = decode_deltas(head["bbox_regression"], anchors, coder.weights, coder.bbox_xform_clip)
        limit = torch.tensor([width, height, width, height], dtype=boxes.dtype)
        boxes = torch.minimum(boxes.clamp(min=0), limit)  # torchvision clips to the image before NMS
        logits = head["cls_logits"]
        if self.kind == "ssd":
            scores = torch.softmax(logits, dim=-1)
        elif self.kind == "retinanet":
            scores = torch.sigmoid(logits)
        else:
            scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(head["bbox_ctrness"]))
        if not self.all_kept:
            scores = scores.index_select(2, self.keep)
        return boxes, scores


class TorchvisionReference:
    """The fidelity reference: torchvision's own model (eval, its own post-processing) on the exported
    input tensor, its transform made an identity for that size (min = max side = the square input;
    SSD: fixed size = the input; mean 0, std 1 since the tensor is already normalised).

    Called as ``reference(tensor, max_det=, iou_threshold=, conf_threshold=)`` on float32
    ``[B,3,H,W]``; returns numpy ``(num_dets [B,1] int32, boxes [B,K,4], scores [B,K], classes [B,K]
    int32)`` like :func:`edgecv.export.nms_reference.nms_reference`. torchvision's score / NMS
    thresholds are set to the export's; its candidate caps (``topk_candidates``, ``detections_per_img``)
    are lifted so that they bind nowhere, and labels are mapped to the export's class ids (dropped
    channels' detections removed) before the top ``max_det`` are kept.
    """

    def __init__(self, model: nn.Module, kind: str, label_to_class: np.ndarray, builder: str) -> None:
        self.model, self.kind, self.label_to_class, self.name = model, kind, label_to_class, builder

    def _configure(self, height: int, width: int, iou_threshold: float, conf_threshold: float) -> None:
        transform = self.model.transform
        transform.min_size, transform.max_size = (min(height, width),), max(height, width)
        transform.image_mean, transform.image_std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
        if self.kind == "ssd":
            transform.fixed_size = (width, height)
        self.model.score_thresh, self.model.nms_thresh = conf_threshold, iou_threshold
        self.model.detections_per_img, self.model.topk_candidates = 1_000_000, 1_000_000

    def __call__(self, tensor: np.ndarray, *, max_det: int, iou_threshold: float, conf_threshold: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        batch, _, height, width = tensor.shape
        self._configure(height, width, iou_threshold, conf_threshold)
        with torch.no_grad():
            outputs = self.model(list(torch.from_numpy(np.ascontiguousarray(tensor, dtype=np.float32))))
        num = np.zeros((batch, 1), np.int32)
        boxes, scores = np.zeros((batch, max_det, 4), np.float32), np.zeros((batch, max_det), np.float32)
        classes = np.zeros((batch, max_det), np.int32)
        for b, out in enumerate(outputs):  # the reference's own per-image results; not part of the graph
            ids = self.label_to_class[out["labels"].numpy()]
            kept = ids >= 0
            order = np.argsort(-out["scores"].numpy()[kept], kind="stable")[:max_det]
            n = len(order)
            num[b, 0] = n
            boxes[b, :n] = out["boxes"].numpy()[kept][order]
            scores[b, :n] = out["scores"].numpy()[kept][order]
            classes[b, :n] = ids[kept][order]
        return num, boxes, scores, classes


def load_tv_single(builder: str, weights: str | Path | None = None, *, trust: bool = False, size: str = "n",
                   class_names: list[str] | None = None, num_classes: int | None = None) -> LoadedDetector:
    """Load torchvision's ``builder`` for export (``weights`` None: random weights, a junk-score model
    useful to check the pipe only).

    ``num_classes`` (``--num-classes``) is torchvision's ``num_classes`` (SSD: background included);
    with ``weights`` it is read from the state dict. ``class_names`` (``--names``) name its labels.
    ``trust`` and ``size`` are YOLO options and ignored here (a state dict never needs trust).

    Raises:
        WeightsError: unreadable weights, weights for another builder (named) or another class count.
        OptionError: a bad ``num_classes`` or a name count that does not fit the head.
    """
    spec = SPECS[builder]
    state, path = None, Path(weights) if weights is not None else None
    if path is not None:
        state = read_state_dict(path)
        found = check_fits(builder, state, path)
        if num_classes is not None and num_classes != found:
            raise WeightsError(f"{path}: --num-classes {num_classes}, but the weights' head has {found} classes")
        num_classes = found
    num_classes = _class_count(num_classes, class_names, spec.kind == "ssd")
    labels = label_names(num_classes, class_names, background=spec.kind == "ssd")
    model = build(builder, num_classes)
    if state is not None:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    notice = "" if path else (f"no --weights given: {builder} with random weights (junk scores; pass a state dict "
                              "saved from torchvision's builder)")
    return detector_from_model(model, labels, name=builder, imgsz=spec.imgsz, mean=spec.mean, std=spec.std,
                               resize=spec.resize, size_multiple=spec.size_multiple,
                               source=str(path) if path else "random init",
                               sha256=sha256_file(path) if path else "", notice=notice)


def kind_of(model: nn.Module) -> str:
    """``"ssd"``, ``"retinanet"`` or ``"fcos"`` for a torchvision SSD / RetinaNet / FCOS instance.

    Raises:
        OptionError: any other module.
    """
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD

    for kind, cls in (("ssd", SSD), ("retinanet", RetinaNet), ("fcos", FCOS)):
        if isinstance(model, cls):
            return kind
    raise OptionError(f"expected a torchvision SSD, RetinaNet or FCOS model, found {type(model).__name__}")


def detector_from_model(model: nn.Module, labels: list[str], *, name: str, imgsz: int,
                        mean: tuple[float, ...] = tuple(IMAGENET_MEAN), std: tuple[float, ...] = tuple(IMAGENET_STD),
                        resize: str = "letterbox", size_multiple: int = 32, source: str = "", sha256: str = "",
                        notice: str = "") -> LoadedDetector:
    """Wrap any torchvision SSD / RetinaNet / FCOS instance (a builder's or one with another backbone) for export.

    ``labels``: the names of its labels ``0 .. num_classes-1`` (torchvision's label order); those named
    ``__background__`` / ``N/A``, and SSD's label 0, get no score channel. ``mean`` / ``std`` / ``resize``:
    the input convention its transform applies (see the module docstring).
    """
    kind = kind_of(model)
    keep = [i for i, label in enumerate(labels) if label not in DROPPED_NAMES and not (kind == "ssd" and i == 0)]
    if not keep:
        raise OptionError(f"--names: expected at least one class besides {DROPPED_NAMES}, found {labels}")
    label_to_class = np.full(len(labels), -1, np.int64)
    label_to_class[keep] = np.arange(len(keep))
    model = model.eval()
    return LoadedDetector(
        module=SingleStageDecoded(model, kind, keep, len(labels)).eval(),
        class_names=[labels[i] for i in keep], imgsz=imgsz, family=name, source=source, sha256=sha256,
        mean=list(mean), std=list(std), color_order="RGB", resize=resize, pad_value=114,
        training={"torchvision_builder": name, "torchvision_labels": ",".join(map(str, keep))},
        reference=TorchvisionReference(model, kind, label_to_class, name),
        size_multiple=size_multiple, supports_dynamic=False, notice=notice)


def _class_count(num_classes: int | None, class_names: list[str] | None, background: bool) -> int:
    """The head's class count: given, else from ``--names`` (SSD: + background), else 91 (COCO)."""
    if num_classes is None:
        return 91 if class_names is None else len(class_names) + (1 if background and
                                                                   class_names[:1] != [DROPPED_NAMES[0]] else 0)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < (2 if background else 1):
        raise OptionError(f"--num-classes: expected an integer >= {2 if background else 1}"
                          f"{' (background included)' if background else ''}, found {num_classes!r}")
    return num_classes


__all__: list[Any] = ["SPECS", "SingleStageDecoded", "TorchvisionReference", "detector_from_model", "load_tv_single"]
