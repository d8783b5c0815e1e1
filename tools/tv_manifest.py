"""Regenerate edgecv/models/weights/tv_single_manifest.json: key names and shapes per torchvision builder.

The loader (:mod:`edgecv.models.tv_weights`) identifies which builder a user's state dict fits from
this file, without instantiating every builder at run time. For each builder it stores the state
dict's ``keys`` with their shapes at torchvision's standard 91 COCO categories, and ``class_keys``:
the keys whose first dimension grows with the class count, with the factor (anchors per cell), found
by building the model a second time with another class count.

Run after a torchvision upgrade:  python tools/tv_manifest.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision
from torchvision.models import detection

from edgecv.fileio import write_text
from edgecv.models import TV_SINGLE_STAGE_BUILDERS

OUT = Path(__file__).resolve().parents[1] / "edgecv" / "models" / "weights" / "tv_single_manifest.json"
STANDARD, OTHER = 91, 7


def shapes(builder: str, num_classes: int) -> dict[str, list[int]]:
    """``{key: shape}`` of ``builder``'s state dict (weights=None, weights_backbone=None: no download)."""
    torch.manual_seed(0)
    model = getattr(detection, builder)(weights=None, weights_backbone=None, num_classes=num_classes)
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def entry(builder: str) -> dict:
    standard, other = shapes(builder, STANDARD), shapes(builder, OTHER)
    class_keys = {k: s[0] // STANDARD for k, s in standard.items() if s != other[k]}
    return {"keys": standard, "class_keys": class_keys}


def main() -> None:
    manifest = {"torchvision": torchvision.__version__, "standard_num_classes": STANDARD,
                "builders": {name: entry(name) for name in TV_SINGLE_STAGE_BUILDERS}}
    write_text(OUT, json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
