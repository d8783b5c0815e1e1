"""Regenerate edgecv/models/weights/tv_segmentation_manifest.json: key names and shapes of every
torchvision segmentation builder edgecv exports (no auxiliary head, 21 classes), plus which keys
carry the class count (found by building each twice, with 21 and 3 classes).

Run after a torchvision upgrade: ``python tools/tv_segmentation_manifest.py``. Nothing is
downloaded (weights=None, weights_backbone=None).
"""

from __future__ import annotations

import json
from pathlib import Path

import torchvision

from edgecv.fileio import write_text
from edgecv.models.tv_segmentation import BUILDERS, MANIFEST, build

OUT = Path(__file__).resolve().parents[1] / "edgecv" / "models" / "weights" / MANIFEST


def entry(builder: str) -> dict:
    """``{"keys": {name: shape}, "class_keys": [names whose first dimension is the class count]}``."""
    voc = {k: list(v.shape) for k, v in build(builder, 21).state_dict().items()}
    three = {k: list(v.shape) for k, v in build(builder, 3).state_dict().items()}
    return {"keys": voc, "class_keys": sorted(k for k in voc if voc[k] != three[k])}


def main() -> None:
    doc = {"torchvision": torchvision.__version__, "classes_in_shapes": 21,
           "builders": {name: entry(name) for name in BUILDERS}}
    write_text(OUT, json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(BUILDERS)} builders)")


if __name__ == "__main__":
    main()
