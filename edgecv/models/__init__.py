"""Model families: one module per family (builder, weight loading, export wrapper).

:data:`LOADERS` is the one explicit mapping from a family name (as typed on the command line)
to the function that loads weights for export. Nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgecv.errors import UnknownModelError

if TYPE_CHECKING:
    from edgecv.models.base import LoadedDetector


def _yolo(weights: str | Path | None, **options: Any) -> "LoadedDetector":
    from edgecv.models.yolo_io import load_yolo

    return load_yolo(weights, **options)


def _unet(weights: str | Path | None, **options: Any) -> "LoadedDetector":
    from edgecv.models.unet import load_unet

    return load_unet(weights, **options)


def _tv_segmentation(builder: str) -> Callable[..., "LoadedDetector"]:
    """Loader of one torchvision segmentation builder (edgecv.models.tv_segmentation)."""

    def load(weights: str | Path | None, **options: Any) -> "LoadedDetector":
        from edgecv.models.tv_segmentation import load_tv_segmentation

        return load_tv_segmentation(builder, weights, **options)

    return load


LOADERS: dict[str, Callable[..., "LoadedDetector"]] = {
    "yolo": _yolo,
    # semantic segmentation (task "semantic"): torchvision's builder names, short names → default builder
    "fcn_resnet50": _tv_segmentation("fcn_resnet50"),
    "fcn_resnet101": _tv_segmentation("fcn_resnet101"),
    "deeplabv3_mobilenet_v3_large": _tv_segmentation("deeplabv3_mobilenet_v3_large"),
    "deeplabv3_resnet50": _tv_segmentation("deeplabv3_resnet50"),
    "deeplabv3_resnet101": _tv_segmentation("deeplabv3_resnet101"),
    "lraspp_mobilenet_v3_large": _tv_segmentation("lraspp_mobilenet_v3_large"),
    "fcn": _tv_segmentation("fcn_resnet50"),
    "deeplabv3": _tv_segmentation("deeplabv3_mobilenet_v3_large"),
    "lraspp": _tv_segmentation("lraspp_mobilenet_v3_large"),
    "unet": _unet,
}


def load_for_export(name: str, weights: str | Path | None = None, **options: Any) -> "LoadedDetector":
    """Load model family ``name`` (see :data:`LOADERS`) with ``weights`` (None: the built-in demo)."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; expected one of: {', '.join(sorted(LOADERS))}") from None
    return loader(weights, **options)
