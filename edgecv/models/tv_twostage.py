"""torchvision's two-stage detectors (Faster R-CNN with FPN, Mask R-CNN) rewritten for export.

:class:`TwoStageGraph` holds the torchvision model's own sub-modules (backbone + FPN, RPN head,
box head and predictor, mask head and predictor) and replaces the parts that do not export as
a batched static graph -- torchvision's per-image loops, its list-of-tensors RoI pooling, its
``GeneralizedRCNNTransform`` -- by the batched ops of :mod:`edgecv.export.rcnn_ops`:

1. backbone + FPN -> RPN head -> proposals decoded against anchors precomputed at the export size;
2. per FPN level, the ``pre_nms_top_n`` best anchors by objectness (``TopK``);
3. sigmoid, clip to the image, small boxes and ``objectness < rpn score_thresh`` dropped (as masked
   scores), NMS per image and per level in ONE ``NonMaxSuppression`` (levels offset apart);
4. the ``post_nms_top_n`` best proposals per image, padded (padding rows are flagged invalid);
5. multi-level RoI Align (or RoI Pool) 7x7 with the level assignment in the graph -> box head;
6. per-class boxes ``[B, R, C, 4]`` decoded and clipped, softmax scores; background dropped;
7. second stage: the ``R * (C - 1)`` (box, class) pairs become candidates of their own (each class
   keeps its own box), padding proposals and boxes under 0.01 px masked, the ``max_candidates``
   best kept (``TopK``), class-aware NMS as ONE ``NonMaxSuppression`` (classes offset apart,
   score > ``conf``), the ``max_det`` best per image -> the detection contract;
8. Mask R-CNN: RoI Align 14x14 of the final boxes at their level -> mask head -> 28x28 logits,
   the detected class's channel, sigmoid -> ``masks [B, K, 28, 28]`` (box-relative).

By default two stages follow the data: the multi-level RoI Align pools each level's own RoIs, and
the mask stage runs only on the rows some image of the batch filled
(:func:`~edgecv.export.rcnn_ops.detected_rows`), not on all ``max_det`` rows: the same outputs, bit
for bit, in a fraction of the time. ``static_shapes=True`` keeps every shape static instead (every
RoI pooled at every level, the mask stage on all rows): a cost that does not follow the scene.

Input: float32 ``[B, 3, H, W]`` RGB, already ``(x / 255 - mean) / std`` normalised (ImageNet
mean / std, stated in the metadata; the runtime's shared pre-processing applies them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from edgecv.models.base import LoadedDetector

from edgecv.errors import OptionError, UnknownModelError, WeightsError
from edgecv.export import rcnn_ops as ops

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
MASK_SIZE = 28


def _tv_builder(name: str) -> Callable[..., nn.Module]:
    from torchvision.models import detection

    return getattr(detection, name)


def _maskrcnn_mobilenet(num_classes: int, **kwargs: Any) -> nn.Module:
    """edgecv's small Mask R-CNN: torchvision's MaskRCNN on the MobileNetV3-Large FPN backbone that
    ``fasterrcnn_mobilenet_v3_large_fpn`` uses (no ImageNet download: weights_backbone=None)."""
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor

    backbone = _mobilenet_extractor(mobilenet_v3_large(weights=None), True, 6)
    anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
    return MaskRCNN(backbone, num_classes, rpn_anchor_generator=anchors, **kwargs)


def _tiny(**kwargs: Any) -> nn.Module:
    from edgecv.models.maskrcnn_tiny import build_tiny_maskrcnn

    return build_tiny_maskrcnn(**kwargs)


#: builder name -> (constructor(num_classes, **torchvision kwargs), has masks)
BUILDERS: dict[str, tuple[Callable[..., nn.Module], bool]] = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": (lambda **kw: _tv_builder("fasterrcnn_mobilenet_v3_large_320_fpn")(
        weights=None, weights_backbone=None, **kw), False),
    "fasterrcnn_mobilenet_v3_large_fpn": (lambda **kw: _tv_builder("fasterrcnn_mobilenet_v3_large_fpn")(
        weights=None, weights_backbone=None, **kw), False),
    "fasterrcnn_resnet50_fpn": (lambda **kw: _tv_builder("fasterrcnn_resnet50_fpn")(
        weights=None, weights_backbone=None, **kw), False),
    "maskrcnn_resnet50_fpn": (lambda **kw: _tv_builder("maskrcnn_resnet50_fpn")(
        weights=None, weights_backbone=None, **kw), True),
    "maskrcnn_mobilenet_v3_large_fpn": (_maskrcnn_mobilenet, True),  # edgecv's own (not a torchvision builder)
    "maskrcnn_tiny": (lambda **kw: _tiny(**kw), True),  # edgecv's own, trained demo weights (maskrcnn_tiny.py)
}
#: short family name -> default builder
SHORT_NAMES = {"fasterrcnn": "fasterrcnn_mobilenet_v3_large_320_fpn", "maskrcnn": "maskrcnn_resnet50_fpn"}
#: default export side per builder (torchvision's min_size)
DEFAULT_SIZE = {"fasterrcnn_mobilenet_v3_large_320_fpn": 320, "maskrcnn_mobilenet_v3_large_fpn": 320,
                "maskrcnn_tiny": 256}


@dataclass
class TwoStageConfig:
    """What shapes the graph: input size, thresholds and fixed counts.

    ``imgsz``: the static network input, an int (square side) or ``(h, w)`` -- height first, like
    the tensor and the metadata's ``letterbox_size``; a square ``(s, s)`` is stored as ``s``.
    ``ExportOptions.imgsz`` is width first (``--imgsz WxH``): callers convert it with
    :func:`edgecv.export.onnx_export.export_hw`. Read the size through :attr:`hw`.
    ``pre_nms_top_n`` / ``post_nms_top_n``: RPN proposals per level before NMS / per image after
    (None: the builder's test-time defaults); ``pooler``: ``"align"`` or ``"pool"`` for the box stage;
    ``static_shapes``: no data-dependent shape in the graph (module docstring).
    """

    imgsz: int | tuple[int, int] = 320
    max_det: int = 100
    conf: float = 0.05
    iou: float = 0.5
    max_candidates: int | None = 3840
    pre_nms_top_n: int | None = None
    post_nms_top_n: int | None = None
    pooler: str = "align"
    static_shapes: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.imgsz, int):  # (h, w): a tuple (JSON lists too); square -> the int side
            h, w = (int(v) for v in self.imgsz)
            self.imgsz = h if h == w else (h, w)
        if self.pooler not in ops.POOLERS:
            raise OptionError(f"pooler: expected one of {ops.POOLERS}, found {self.pooler!r}")

    @property
    def hw(self) -> tuple[int, int]:
        """The network input ``(height, width)`` in pixels."""
        return (self.imgsz, self.imgsz) if isinstance(self.imgsz, int) else self.imgsz


def resolve_builder(name: str) -> str:
    """Builder name for ``name`` (a builder or a short family name)."""
    name = SHORT_NAMES.get(name, name)
    if name not in BUILDERS:
        raise UnknownModelError(f"unknown two-stage model {name!r}; expected one of "
                                f"{', '.join(sorted([*BUILDERS, *SHORT_NAMES]))}")
    return name


def build_torchvision(name: str, cfg: TwoStageConfig, num_classes: int = 91) -> nn.Module:
    """torchvision's model ``name`` (random init, nothing downloaded), its transform an identity for
    an input of ``cfg.hw`` (min_size = min(h, w), max_size = max(h, w): the resize factor
    ``min(min_size / min(h, w), max_size / max(h, w))`` is 1; mean 0, std 1: the input is already
    normalised), thresholds and counts from ``cfg``; eval mode."""
    build, _ = BUILDERS[resolve_builder(name)]
    h, w = cfg.hw
    kwargs: dict[str, Any] = dict(num_classes=num_classes, min_size=min(h, w), max_size=max(h, w),
                                  image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0], box_score_thresh=cfg.conf,
                                  box_nms_thresh=cfg.iou, box_detections_per_img=cfg.max_det)
    if cfg.pre_nms_top_n is not None:
        kwargs["rpn_pre_nms_top_n_test"] = cfg.pre_nms_top_n
    if cfg.post_nms_top_n is not None:
        kwargs["rpn_post_nms_top_n_test"] = cfg.post_nms_top_n
    return build(**kwargs).eval()


def num_classes_of(state: dict[str, Tensor], source: str) -> int:
    """Classes (background included) of a torchvision-style Faster / Mask R-CNN state dict."""
    key = "roi_heads.box_predictor.cls_score.weight"
    if key not in state:
        raise WeightsError(f"{source}: expected a torchvision Faster/Mask R-CNN state dict with {key!r}, found "
                           f"{len(state)} keys (e.g. {sorted(state)[:3]})")
    return int(state[key].shape[0])


class TwoStageGraph(nn.Module):
    """Export-friendly forward of a torchvision ``FasterRCNN`` / ``MaskRCNN`` (module docstring).

    ``forward(images [B, 3, H, W])`` (``cfg.hw``, static) -> ``num_dets [B, 1] int32, boxes [B, K, 4]
    float32 (x1, y1, x2, y2 input pixels), scores [B, K] float32, classes [B, K] int32`` (class ids
    index the class names, 0 = background never returned), plus ``masks [B, K, 28, 28] float32``
    probabilities with masks.
    """

    def __init__(self, model: nn.Module, cfg: TwoStageConfig) -> None:
        super().__init__()
        self.backbone, self.rpn, self.roi_heads, self.cfg = model.backbone, model.rpn, model.roi_heads, cfg
        self.with_masks = getattr(model.roi_heads, "mask_head", None) is not None
        h, w = cfg.hw
        self.span = float(max(h, w) + 1)  # group offset: > any clipped coordinate (x up to w, y up to h)
        with torch.no_grad():
            from torchvision.models.detection.image_list import ImageList

            dummy = torch.zeros(1, 3, h, w)
            features = model.backbone(dummy)
            anchors = model.rpn.anchor_generator(ImageList(dummy, [(h, w)]), list(features.values()))[0]
        self.register_buffer("anchors", anchors, persistent=False)  # [A, 4] at the export size (h, w)
        per_location = model.rpn.anchor_generator.num_anchors_per_location()
        self.level_sizes = [a * f.shape[-2] * f.shape[-1] for a, f in zip(per_location, features.values())]
        self.box_levels, self.box_scales = self._pooled(features, model.roi_heads.box_roi_pool.featmap_names)
        if self.with_masks:
            self.mask_levels, self.mask_scales = self._pooled(features, model.roi_heads.mask_roi_pool.featmap_names)
        # A named scope: the exported pooling nodes are "/edgecv_roialign/box/..." (and ".../mask/..."),
        # found by edgecv.plugins.roi_align.graph.replace.
        static = cfg.static_shapes
        self.edgecv_roialign = ops.RoIPoolers({"box": ops.MultiLevelRoIPool(self.box_scales, 7, 2, cfg.pooler, static)})
        if self.with_masks:
            self.edgecv_roialign["mask"] = ops.MultiLevelRoIPool(self.mask_scales, 14, 2, static=static)

    def _pooled(self, features: dict[str, Tensor], names: list[str]) -> tuple[list[int], list[float]]:
        """Indices of the pooled feature maps and their scales (torchvision's ``_infer_scale``: feature
        height over image height; torchvision asserts the width gives the same power of two)."""
        levels = [i for i, key in enumerate(features) if key in names]
        keys = list(features)
        height = self.cfg.hw[0]
        scales = [2.0 ** round(math.log2(features[keys[i]].shape[-2] / height)) for i in levels]
        return levels, scales

    def _proposals(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """RPN: ``(proposals [B, R, 4], valid [B, R] bool)``, R = post_nms_top_n."""
        from torchvision.models.detection.rpn import concat_box_prediction_layers

        rpn, (h, w) = self.rpn, self.cfg.hw
        objectness, deltas = concat_box_prediction_layers(*rpn.head(features))  # [B*A, 1], [B*A, 4]
        objectness = objectness.reshape(-1, self.anchors.shape[0])  # [B, A]
        anchors = self.anchors.unsqueeze(0).expand(objectness.shape[0], -1, -1).reshape(-1, 4)
        proposals = rpn.box_coder.decode_single(deltas, anchors).reshape(objectness.shape[0], -1, 4)
        picks, levels, start = [], [], 0
        for level, count in enumerate(self.level_sizes):  # per-level top-k (levels, not images: fixed count)
            k = min(rpn.pre_nms_top_n(), count)
            picks.append(objectness[:, start:start + count].topk(k, dim=1)[1] + start)
            levels += [level] * k
            start += count
        index = torch.cat(picks, 1)  # [B, P]
        scores = torch.sigmoid(torch.gather(objectness, 1, index))
        boxes = ops.clip_boxes(ops.gather_rows(proposals, index), h, w)
        keep = ops.big_enough(boxes, rpn.min_size) & (scores >= rpn.score_thresh)
        scores = torch.where(keep, scores, torch.full_like(scores, ops.SENTINEL))
        post = rpn.post_nms_top_n()
        selected = ops.batched_nms(boxes, scores, torch.tensor(levels), self.span, post, rpn.nms_thresh,
                                   ops.SENTINEL / 2)
        index, valid = ops.select_per_image(selected, scores, post)
        return ops.gather_rows(boxes, index) * valid.unsqueeze(-1), valid

    def _detections(self, features: list[Tensor], proposals: Tensor, valid: Tensor) -> tuple[Tensor, ...]:
        """Box head + second-stage NMS: ``(boxes [B, K, 4], scores [B, K], labels [B, K] int64, valid)``."""
        heads, cfg = self.roi_heads, self.cfg
        batch, count = proposals.shape[:2]
        pooled = self.edgecv_roialign("box", [features[i] for i in self.box_levels], proposals)
        logits, deltas = heads.box_predictor(heads.box_head(pooled))  # [B*R, C], [B*R, C*4]
        classes = logits.shape[-1]
        boxes = heads.box_coder.decode_single(deltas, proposals.reshape(-1, 4)).reshape(batch, count, classes, 4)
        boxes = ops.clip_boxes(boxes[:, :, 1:], *cfg.hw).reshape(batch, -1, 4)  # [B, R*(C-1), 4]
        scores = torch.softmax(logits, -1).reshape(batch, count, classes)[:, :, 1:]
        keep = valid.unsqueeze(-1) & ops.big_enough(boxes, 1e-2).reshape(scores.shape)
        scores = torch.where(keep, scores, torch.full_like(scores, ops.SENTINEL)).reshape(batch, -1)
        labels = torch.arange(1, classes).repeat(count)  # [R*(C-1)]: class of each candidate
        labels = labels.unsqueeze(0).expand(batch, -1)
        if cfg.max_candidates is not None and cfg.max_candidates < scores.shape[1]:
            scores, top = scores.topk(cfg.max_candidates, dim=1)  # the best pairs; NMS result unchanged while
            boxes, labels = ops.gather_rows(boxes, top), torch.gather(labels, 1, top)  # max_det are kept among them
        selected = ops.batched_nms(boxes, scores, labels, self.span, cfg.max_det, heads.nms_thresh, heads.score_thresh)
        index, kept = ops.select_per_image(selected, scores, cfg.max_det)
        det_boxes = ops.gather_rows(boxes, index) * kept.unsqueeze(-1)
        det_scores = torch.gather(scores, 1, index) * kept
        det_labels = torch.gather(labels, 1, index) * kept
        return det_boxes, det_scores, det_labels, kept

    def _masks(self, features: list[Tensor], boxes: Tensor, labels: Tensor, kept: Tensor) -> Tensor:
        """``masks [B, K, 28, 28]``: the detected class's mask probabilities (0 on padding rows)."""
        heads, (batch, count) = self.roi_heads, kept.shape
        if not self.cfg.static_shapes:  # the n rows with a detection in some image, not all K
            rows, position = ops.detected_rows(kept)
            boxes, labels = boxes.index_select(1, rows), labels.index_select(1, rows)
        pooled = self.edgecv_roialign("mask", [features[i] for i in self.mask_levels], boxes)
        logits = heads.mask_predictor(heads.mask_head(pooled))  # [B*n, C, 28, 28]
        side = logits.shape[-1]
        channel = labels.reshape(-1, 1, 1, 1).expand(-1, 1, side, side)
        masks = torch.gather(logits, 1, channel).sigmoid().reshape(batch, -1, side, side)
        if not self.cfg.static_shapes:
            masks = masks.index_select(1, position)  # back to K rows
        return masks * kept.reshape(batch, count, 1, 1)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        features = list(self.backbone(images).values())
        proposals, valid = self._proposals(features)
        boxes, scores, labels, kept = self._detections(features, proposals, valid)
        num = kept.sum(1, keepdim=True).to(torch.int32)
        outputs = (num, boxes, scores, labels.to(torch.int32))
        if self.with_masks:
            outputs += (self._masks(features, boxes, labels, kept),)
        return outputs


def class_names_for(num_classes: int) -> list[str]:
    """torchvision's COCO category names for 91 classes (index = label), else ``class0``, ``class1``, ..."""
    if num_classes == 91:
        from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

        return list(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
    return ["__background__", *[f"class{i}" for i in range(1, num_classes)]]


def load_state(path: str | Path) -> dict[str, Tensor]:
    """A torchvision-style state dict (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"--weights: expected a state dict file, found no file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a state dict; one line names it
        raise WeightsError(f"--weights {path}: expected a torch state dict (weights_only), found {exc}") from exc
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise WeightsError(f"--weights {path}: expected a dict of tensors, found {type(state).__name__}")
    return state


def seeded_random_model(name: str, cfg: TwoStageConfig, seed: int = 0, num_classes: int = 91) -> nn.Module:
    """torchvision's model with seeded random weights (no download), BatchNorm statistics measured on
    random images and the heads' outputs rescaled (:func:`_spread_outputs`), so that random weights
    give well-separated scores: the fidelity check then has detections to match."""
    torch.manual_seed(seed)
    return enliven(build_torchvision(name, cfg, num_classes), cfg.hw)


def enliven(model: nn.Module, imgsz: int | tuple[int, int]) -> nn.Module:
    """A randomly initialised two-stage ``model`` made to behave like a trained one (in place; returned).
    ``imgsz``: the input side or ``(h, w)`` the random images are drawn at.

    Random BatchNorm statistics (mean 0, var 1) shrink activations ~10x per block, to ~1e-8 at the
    FPN: every anchor would score the same and the comparison would be about ties. The statistics
    are recomputed on random images (cumulative average), as a trained model has them; then the
    heads' outputs are spread (:func:`_spread_outputs`).
    """
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    model.backbone.train()
    with torch.no_grad():
        for _ in range(2):
            model.backbone(torch.randn(2, 3, h, w))
    model.eval()
    _spread_outputs(model, (h, w))
    return model


#: Output std given to the last layer of each head by :func:`_spread_outputs`.
_OUTPUT_STD = {"rpn.head.cls_logits": 1.5, "rpn.head.bbox_pred": 0.1, "roi_heads.box_predictor.cls_score": 3.0,
               "roi_heads.box_predictor.bbox_pred": 0.1}


def _spread_outputs(model: nn.Module, hw: tuple[int, int]) -> None:
    """Rescale each head's last layer so its outputs have the std of :data:`_OUTPUT_STD` on a random
    ``hw`` (height, width) image.

    Random FPN features are large (~50 for ResNet-50): objectness and class logits would saturate
    sigmoid / softmax to exactly 1.0, and equal scores make the NMS order an implementation detail.
    """
    layers = {name: module for name, module in model.named_modules() if name in _OUTPUT_STD}
    seen: dict[str, list[Tensor]] = {name: [] for name in layers}

    def keep(name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:  # None: output unchanged
            seen[name].append(output.detach().flatten())
        return hook

    hooks = [layer.register_forward_hook(keep(name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            model([torch.rand(3, *hw)])
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        for name, layer in layers.items():
            factor = _OUTPUT_STD[name] / max(float(torch.cat(seen[name]).std()), 1e-12)
            layer.weight.mul_(factor)
            layer.bias.mul_(factor)


def has_masks(name: str) -> bool:
    """Whether builder (or short name) ``name`` predicts instance masks."""
    return BUILDERS[resolve_builder(name)][1]




def load_twostage(name: str, weights: str | Path | None = None, *, class_names: list[str] | None = None,
                  **_ignored: Any) -> "LoadedDetector":
    """The :data:`edgecv.models.LOADERS` entry of every two-stage name: a :class:`LoadedDetector` whose
    ``extra["export"]`` is :func:`edgecv.export.twostage.export_loaded` (these graphs end in the
    detection contract themselves, so the generic trace + ``append_nms`` path is not used).

    ``weights``: a torchvision state dict of that builder (``weights_only=True``); None: seeded random
    weights (nothing is downloaded), stated as such in the metadata.
    """
    from edgecv.export.twostage import export_loaded
    from edgecv.models.base import LoadedDetector
    from edgecv.models.maskrcnn_tiny import load_tiny, wants_tiny

    if wants_tiny(name, weights):  # `maskrcnn` alone: the shipped tiny Mask R-CNN (trained on synthetic shapes)
        return load_tiny(weights, class_names=class_names)
    builder = resolve_builder(name)
    state = None if weights is None else load_state(weights)
    count = 91 if state is None else num_classes_of(state, str(weights))
    names = list(class_names) if class_names else class_names_for(count)
    if len(names) != count:
        raise WeightsError(f"--names: expected {count} names (background first, as torchvision counts classes), "
                           f"found {len(names)}")
    return LoadedDetector(module=nn.Identity(), class_names=names, imgsz=DEFAULT_SIZE.get(builder, 800),
                          family=builder, source=str(weights) if weights else "random (seed 0)",
                          is_demo=False, mean=IMAGENET_MEAN, std=IMAGENET_STD, color_order="RGB",
                          extra={"export": export_loaded, "builder": builder, "state": state})
