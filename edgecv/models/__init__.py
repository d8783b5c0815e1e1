"""Model families: one module per family (builder, weight loading, export wrapper).

:data:`LOADERS` is the one explicit mapping from a family name (as typed on the command line)
to the function that loads weights for export. Nothing heavy is imported here.
"""

from __future__ import annotations

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


def _twostage(name: str) -> Callable[..., "LoadedDetector"]:
    def load(weights: str | Path | None, **options: Any) -> "LoadedDetector":
        from edgecv.models.tv_twostage import load_twostage

        return load_twostage(name, weights, **options)

    return load


_TWOSTAGE = ("fasterrcnn", "maskrcnn", "fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn",
             "fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "maskrcnn_mobilenet_v3_large_fpn")
LOADERS: dict[str, Callable[..., "LoadedDetector"]] = {"yolo": _yolo, **{n: _twostage(n) for n in _TWOSTAGE}}

# --- torchvision single-stage detectors (edgecv/models/tv_single.py) ---------------------------
#: torchvision builder names, exactly as ``torchvision.models.detection`` spells them.
TV_SINGLE_STAGE_BUILDERS = ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "retinanet_resnet50_fpn",
                            "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn")
#: Short family names and the builder each one means.
TV_SINGLE_STAGE_SHORT = {"ssd": "ssd300_vgg16", "ssdlite": "ssdlite320_mobilenet_v3_large",
                         "retinanet": "retinanet_resnet50_fpn", "fcos": "fcos_resnet50_fpn"}


def _tv_single(builder: str) -> Callable[..., "LoadedDetector"]:
    def load(weights: str | Path | None, **options: Any) -> "LoadedDetector":
        from edgecv.models.tv_single import load_tv_single

        return load_tv_single(builder, weights, **options)

    return load


LOADERS.update({name: _tv_single(name) for name in TV_SINGLE_STAGE_BUILDERS})
LOADERS.update({short: _tv_single(builder) for short, builder in TV_SINGLE_STAGE_SHORT.items()})


def load_for_export(name: str, weights: str | Path | None = None, **options: Any) -> "LoadedDetector":
    """Load model family ``name`` (see :data:`LOADERS`) with ``weights`` (None: the built-in demo)."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; expected one of: {', '.join(sorted(LOADERS))}") from None
    return loader(weights, **options)
