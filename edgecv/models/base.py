"""What every model family hands to the exporter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from edgecv.errors import OptionError
from edgecv.metadata import validate_fields


@dataclass
class LoadedDetector:
    """A detector ready for export, with the input convention it was trained with.

    ``module`` maps images float32 [B,3,H,W] to ``(raw_boxes [B,N,4] x1,y1,x2,y2 input pixels,
    raw_scores [B,N,C] probabilities)``. Its input convention, recorded in the artifact metadata
    and honoured by every predictor (:mod:`edgecv.runtimes.preprocess`):

    * ``color_order``: channel order of the tensor, ``"RGB"`` or ``"BGR"``;
    * ``resize``: ``"letterbox"`` (aspect kept, padded with ``pad_value``, 0-255) or
      ``"stretch"`` (each axis resized to the input size, no padding);
    * ``mean`` / ``std``: per tensor channel, on pixels scaled to [0, 1]: ``(x / 255 - mean) / std``.

    Raises:
        OptionError: a convention value outside its domain (every problem listed).
    """

    module: nn.Module
    class_names: list[str]
    imgsz: int = 640
    family: str = "custom"
    source: str = ""
    sha256: str = ""
    is_demo: bool = False
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    color_order: str = "RGB"
    resize: str = "letterbox"
    pad_value: int = 114
    extra: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # the checkpoint's training record (["train"]: command, epochs, ...)
    #: Fidelity reference for the final detections, when the family has an upstream model to trust more
    #: than ``module`` + the reference NMS: ``reference(tensor [B,3,H,W] float32, *, max_det, iou_threshold,
    #: conf_threshold)`` -> numpy ``(num_dets [B,1], boxes [B,K,4], scores [B,K], classes [B,K])``.
    reference: Any = None
    size_multiple: int = 32  # the export size must be a multiple of this
    supports_dynamic: bool = True  # False: the graph holds size-dependent constants (anchors)
    notice: str = ""  # printed once by the export (e.g. "random weights")
    #: The artifact's task (edgecv.metadata.TASKS). "semantic": ``module`` maps images float32
    #: [B,3,H,W] to per-class logits float32 [B,C,H,W] at the input size (edgecv.export.semantic).
    task: str = "detect"

    def __post_init__(self) -> None:
        # Lists, not tuples: the metadata (JSON) stores lists and validates them as such.
        self.mean, self.std = _as_list(self.mean), _as_list(self.std)
        self.class_names = list(self.class_names) if isinstance(self.class_names, (list, tuple)) else self.class_names
        problems = validate_fields({"class_names": self.class_names, "mean": self.mean, "std": self.std,
                                    "color_order": self.color_order, "resize": self.resize,
                                    "pad_value": self.pad_value, "task": self.task})
        if problems:
            raise OptionError("input convention: " + "; ".join(problems))


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value
