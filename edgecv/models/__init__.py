"""Model families: one module per family (builder, weight loading, export wrapper).

:data:`LOADERS` is the one explicit mapping from a family name (as typed on the command line)
to the function that loads weights for export. Nothing heavy is imported here.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgecv.errors import OptionError, UnknownModelError

if TYPE_CHECKING:
    from edgecv.models.base import LoadedDetector


def _yolo(weights: str | Path | None, num_classes: int | None = None, **options: Any) -> "LoadedDetector":
    from edgecv.models.yolo_io import load_yolo

    if num_classes is not None:
        raise OptionError(f"--num-classes: expected it only for torchvision families, found {num_classes} for yolo "
                          "(its checkpoints name their classes; a plain state dict takes --names)")
    return load_yolo(weights, **options)


def _unet(weights: str | Path | None, **options: Any) -> "LoadedDetector":
    from edgecv.models.unet import load_unet

    return load_unet(weights, **options)


def _builder(module: str, function: str, builder: str) -> Callable[..., "LoadedDetector"]:
    """The loader of one torchvision builder: ``edgecv.models.<module>.<function>(builder, weights, ...)``,
    imported when called (torch and torchvision stay unimported until an export needs them)."""

    def load(weights: str | Path | None, **options: Any) -> "LoadedDetector":
        return getattr(import_module(f"edgecv.models.{module}"), function)(builder, weights, **options)

    return load


#: torchvision single-stage detector builders (tv_single.py), exactly as torchvision spells them.
TV_SINGLE_STAGE_BUILDERS = ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "retinanet_resnet50_fpn",
                            "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn")
#: Short family names and the builder each one means.
TV_SINGLE_STAGE_SHORT = {"ssd": "ssd300_vgg16", "ssdlite": "ssdlite320_mobilenet_v3_large",
                         "retinanet": "retinanet_resnet50_fpn", "fcos": "fcos_resnet50_fpn"}
#: two-stage detectors (tv_twostage.py): the short names map to a default builder there;
#: ``maskrcnn_mobilenet_v3_large_fpn`` is edgecv's own (torchvision's MaskRCNN on the mobile FPN backbone).
TWO_STAGE_NAMES = ("fasterrcnn", "maskrcnn", "fasterrcnn_mobilenet_v3_large_320_fpn",
                   "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn",
                   "maskrcnn_mobilenet_v3_large_fpn", "maskrcnn_tiny")
#: semantic segmentation builders (tv_segmentation.py) and short names.
TV_SEGMENTATION_BUILDERS = ("fcn_resnet50", "fcn_resnet101", "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50",
                            "deeplabv3_resnet101", "lraspp_mobilenet_v3_large")
TV_SEGMENTATION_SHORT = {"fcn": "fcn_resnet50", "deeplabv3": "deeplabv3_mobilenet_v3_large",
                         "lraspp": "lraspp_mobilenet_v3_large"}

LOADERS: dict[str, Callable[..., "LoadedDetector"]] = {
    "yolo": _yolo,
    "unet": _unet,
    **{name: _builder("tv_single", "load_tv_single", name) for name in TV_SINGLE_STAGE_BUILDERS},
    **{short: _builder("tv_single", "load_tv_single", name) for short, name in TV_SINGLE_STAGE_SHORT.items()},
    **{name: _builder("tv_twostage", "load_twostage", name) for name in TWO_STAGE_NAMES},
    **{name: _builder("tv_segmentation", "load_tv_segmentation", name) for name in TV_SEGMENTATION_BUILDERS},
    **{short: _builder("tv_segmentation", "load_tv_segmentation", name) for short, name in TV_SEGMENTATION_SHORT.items()},
}


def load_for_export(name: str, weights: str | Path | None = None, **options: Any) -> "LoadedDetector":
    """Load model family ``name`` (see :data:`LOADERS`) with ``weights`` (None: the built-in demo)."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; expected one of: {', '.join(sorted(LOADERS))}") from None
    return loader(weights, **options)
