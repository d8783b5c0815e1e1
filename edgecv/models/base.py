"""What every model family hands to the exporter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class LoadedDetector:
    """A detector ready for export.

    ``module`` maps images float32 [B,3,H,W] (RGB, [0,1] unless ``mean``/``std`` say otherwise)
    to ``(raw_boxes [B,N,4] x1,y1,x2,y2 input pixels, raw_scores [B,N,C] probabilities)``.
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
    extra: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # the checkpoint's training record (["train"]: command, epochs, ...)
