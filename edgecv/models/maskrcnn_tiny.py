"""edgecv's tiny Mask R-CNN: torchvision's ``MaskRCNN`` on a small backbone + FPN of edgecv's own.

Small enough to train on 2 CPU cores in an hour or two on the built-in synthetic shapes
(:mod:`edgecv.models.maskrcnn_train`) and to ship as fp16 demo weights (< 10 MB):

* backbone: edgecv's YOLO-n stages (stem, dark3, dark4, dark5: C2..C5 at strides 4, 8, 16, 32 with
  32, 64, 128, 256 channels), which training starts from the shipped YOLO demo's weights (trained on
  the same synthetic shapes; :func:`init_from_yolo`); ``backbone="plain"`` (residual 3x3 conv stages
  of ``widths`` channels, from scratch) is what the pilot compared it with. Nothing downloads;
* FPN: torchvision's ``FeaturePyramidNetwork`` with ``fpn_channels`` channels and a max-pool P6;
* RPN: one anchor size per level (16 .. 256 px, 3 aspect ratios), few proposals (objects are few);
* heads: torchvision's ``TwoMLPHead`` (``representation`` wide), ``FastRCNNPredictor``, a 2-layer
  ``MaskRCNNHeads`` and ``MaskRCNNPredictor`` (28 x 28 masks), all at ``fpn_channels``.

The model is an ordinary torchvision ``MaskRCNN``, so :class:`edgecv.models.tv_twostage.TwoStageGraph`
exports it like the torchvision builders (builder name :data:`BUILDER`). Its input convention is the
two-stage one: RGB, ImageNet mean / std, the transform an identity at the training size.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from edgecv.errors import WeightsError

BUILDER = "maskrcnn_tiny"
BACKBONES = ("yolo_n", "plain")
DEMO_WEIGHTS = "maskrcnn_shapes.pt"


@dataclass(frozen=True)
class TinyConfig:
    """Architecture of the tiny Mask R-CNN (stored in checkpoints).

    ``widths``: channels of C2..C5; ``blocks``: residual blocks per stage; ``fpn_channels``: FPN
    and head channels; ``representation``: width of the box head's two fully-connected layers.
    """

    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: int = 1
    fpn_channels: int = 64
    representation: int = 256
    backbone: str = "yolo_n"  # "yolo_n": edgecv's YOLO-n stages (stem, dark3..dark5); "plain": residual 3x3 stages

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, value: Any, source: str = "config") -> "TinyConfig":
        try:
            config = cls(**{**value, "widths": tuple(value["widths"])})
        except (TypeError, KeyError) as exc:
            raise WeightsError(f"{source}: expected a tiny Mask R-CNN config {{widths, blocks, fpn_channels, "
                               f"representation}}, found {value!r}") from exc
        if config.backbone not in BACKBONES:
            raise WeightsError(f"{source}: backbone: expected one of {BACKBONES}, found {config.backbone!r}")
        if len(config.widths) != 4 or not all(isinstance(v, int) and v > 0 for v in (*config.widths, config.blocks,
                                                                                       config.fpn_channels,
                                                                                       config.representation)):
            raise WeightsError(f"{source}: expected 4 positive widths and positive sizes, found {config.to_dict()}")
        return config


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    """Two 3x3 convs with an identity shortcut (shape-preserving)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(channels))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


class TinyBackbone(nn.Module):
    """``images [B, 3, H, W]`` -> FPN features ``OrderedDict {'0': P2, '1': P3, '2': P4, '3': P5,
    'pool': P6}`` (strides 4 .. 64, ``out_channels`` each), as torchvision's ``BackboneWithFPN``."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        widths = config.widths
        if config.backbone == "yolo_n":  # the YOLO-n backbone: C2..C5 = stem (stride 4), dark3, dark4, dark5
            from edgecv.models.yolo import Yolo, YoloConfig

            yolo = Yolo(YoloConfig("n"))
            self.stages = nn.ModuleList([yolo.stem, yolo.dark3, yolo.dark4, yolo.dark5])
            widths = (yolo.stem[1].conv.out_channels, yolo.dark3[0].conv.out_channels,
                      yolo.dark4[0].conv.out_channels, yolo.dark5[0].conv.out_channels)
        else:
            stages, cin = [_conv(3, widths[0] // 2, 2)], widths[0] // 2  # a stride-2 stem before C2
            for width in widths:
                stages.append(nn.Sequential(_conv(cin, width, 2), *[_Residual(width) for _ in range(config.blocks)]))
                cin = width
            self.stages = nn.ModuleList([nn.Sequential(stages[0], stages[1]), *stages[2:]])
        self.fpn = FeaturePyramidNetwork(list(widths), config.fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = config.fpn_channels

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        features: OrderedDict[str, Tensor] = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            features[str(i)] = x
        return self.fpn(features)


def build_tiny_maskrcnn(num_classes: int = 6, config: TinyConfig | None = None, **kwargs: Any) -> nn.Module:
    """torchvision ``MaskRCNN`` with :class:`TinyBackbone`; ``kwargs`` go to ``MaskRCNN`` (transform
    sizes, thresholds, RPN / RoI sampling) over this model's small defaults. Random init, no download."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    config = config or TinyConfig()
    channels = config.fpn_channels
    defaults: dict[str, Any] = dict(
        # a scene holds <= 8 shapes: few proposals and sampled RoIs suffice, and RoI Align's backward
        # (single-threaded on the CPU) is the largest cost of a training step
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=150, rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=100, rpn_batch_size_per_image=64, box_batch_size_per_image=64,
    )
    levels = ["0", "1", "2", "3"]
    return MaskRCNN(
        TinyBackbone(config), num_classes=None,
        rpn_anchor_generator=AnchorGenerator(((16,), (32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 5),
        box_roi_pool=MultiScaleRoIAlign(levels, 7, 2),
        box_head=TwoMLPHead(channels * 7 * 7, config.representation),
        box_predictor=FastRCNNPredictor(config.representation, num_classes),
        mask_roi_pool=MultiScaleRoIAlign(levels, 14, 2),
        mask_head=MaskRCNNHeads(channels, [channels, channels], 1),
        mask_predictor=MaskRCNNPredictor(channels, channels, num_classes),
        **{**defaults, **kwargs},
    )


def init_from_yolo(model: nn.Module, path: str | Path | None = None) -> str:
    """Load the YOLO-n backbone stages of ``model`` (a ``yolo_n`` tiny Mask R-CNN) from an edgecv YOLO-n
    checkpoint (None: the shipped YOLO demo, trained on the same synthetic shapes). Returns the source."""
    from edgecv.models.checkpoint import load_checkpoint
    from edgecv.models.yolo_io import demo_weights_path as yolo_demo

    path = Path(path) if path is not None else yolo_demo()
    raw = load_checkpoint(path, "yolo")
    prefixes = {"stem.": "0.", "dark3.": "1.", "dark4.": "2.", "dark5.": "3."}
    state = {prefixes[k.split(".")[0] + "."] + k.split(".", 1)[1]: v.float()
             for k, v in raw["state_dict"].items() if k.split(".")[0] + "." in prefixes}
    try:
        model.backbone.stages.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: expected YOLO-n backbone weights, found ones that do not fit "
                           f"({str(exc).splitlines()[0]})") from exc
    return str(path)


def demo_weights_path() -> Path:
    """The packaged demo weights (trained on synthetic shapes by ``edgecv train maskrcnn``)."""
    return Path(str(resources.files("edgecv.models") / "weights" / DEMO_WEIGHTS))


def read_tiny_checkpoint(path: str | Path | None = None, *, trust: bool = False
                         ) -> tuple[dict[str, Tensor], list[str], TinyConfig, dict[str, Any]]:
    """``(fp32 state dict, class names (background first), config, checkpoint)`` of an edgecv tiny
    Mask R-CNN checkpoint (None: the packaged demo weights). WeightsError when missing or malformed."""
    from edgecv.models.checkpoint import load_checkpoint

    path = Path(path) if path is not None else demo_weights_path()
    if not path.is_file():
        raise WeightsError(f"expected the tiny Mask R-CNN weights at {path}, found no file; train them with "
                           "`edgecv train maskrcnn --out runs/maskrcnn.pt` and pass --weights")
    raw = load_checkpoint(path, BUILDER, trust=trust)
    config = TinyConfig.from_dict(raw.get("config"), str(path))
    names = raw.get("class_names")
    state = raw.get("state_dict")
    if not isinstance(names, list) or not isinstance(state, dict):
        raise WeightsError(f"{path}: expected class_names (list) and state_dict (dict), found "
                           f"{type(names).__name__} and {type(state).__name__}")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, names, config, raw


def is_tiny_checkpoint(state: Any) -> bool:
    """Whether a loaded ``.pt`` payload is an edgecv checkpoint of the tiny Mask R-CNN."""
    return isinstance(state, dict) and state.get("format") == "edgecv" and state.get("family") == BUILDER


def wants_tiny(name: str, weights: str | Path | None) -> bool:
    """Whether ``edgecv export NAME [--weights W]`` means the tiny Mask R-CNN: ``maskrcnn`` or
    ``maskrcnn_tiny`` with no weights (the shipped demo) or with an edgecv tiny checkpoint. ``maskrcnn``
    with a torchvision state dict keeps meaning torchvision's ``maskrcnn_resnet50_fpn``."""
    if name not in ("maskrcnn", BUILDER):
        return False
    if weights is None:
        return True
    from edgecv.models.checkpoint import load_raw

    path = Path(weights)
    return path.is_file() and is_tiny_checkpoint(load_raw(path))


def load_tiny(weights: str | Path | None = None, *, class_names: list[str] | None = None,
              trust: bool = False) -> "Any":
    """A :class:`~edgecv.models.base.LoadedDetector` of the tiny Mask R-CNN for the two-stage exporter
    (``extra``: ``export``, ``builder``, fp32 ``state``); None: the packaged demo weights."""
    from edgecv.export.twostage import export_loaded
    from edgecv.fileio import sha256_file
    from edgecv.models.base import LoadedDetector
    from edgecv.models.tv_twostage import IMAGENET_MEAN, IMAGENET_STD

    path = Path(weights) if weights is not None else demo_weights_path()
    state, names, config, raw = read_tiny_checkpoint(path, trust=trust)
    if config != TinyConfig():
        raise WeightsError(f"{path}: expected the tiny Mask R-CNN architecture {TinyConfig().to_dict()}, "
                           f"found {config.to_dict()}")
    if class_names is not None:
        if len(class_names) != len(names):
            raise WeightsError(f"--names: expected {len(names)} names (background first), found {len(class_names)}")
        names = list(class_names)
    record = raw.get("train") if isinstance(raw.get("train"), dict) else {}
    return LoadedDetector(module=nn.Identity(), class_names=names, imgsz=int(raw.get("imgsz", 256)), family=BUILDER,
                          source=str(path), sha256=sha256_file(path), is_demo=weights is None, mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, color_order="RGB", task="segment",
                          training={str(k): v for k, v in record.items() if isinstance(v, (str, int, float, bool))},
                          extra={"export": export_loaded, "builder": BUILDER, "state": state})
