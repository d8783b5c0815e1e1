"""edgecv's synthetic shapes set written as a YOLO-format dataset (what Ultralytics' ``data=`` reads).

    from yolo_dataset import write_yolo_dataset
    data_yaml = write_yolo_dataset(Path("/tmp/shapes_yolo"), train=16, val=64, imgsz=640)
    YOLO(ckpt).export(format="openvino", int8=True, data=str(data_yaml))   # calibrates on images/val

Layout (Ultralytics finds a label file by replacing ``/images/`` with ``/labels/`` in the image path)::

    folder/data.yaml                    path: <folder>, train: images/train, val: images/val, names: [circle, ...]
    folder/images/{train,val}/000000.png   uint8 BGR scenes of ShapesDataset (PNG: the exact pixels, lossless)
    folder/labels/{train,val}/000000.txt   one line per box: "class cx cy w h", normalised to [0, 1]

The same images serve edgecv's own calibration (``quantize(data=folder / "images" / "val")``), so
both sides of the int8 race calibrate on identical pixels. Nothing here downloads anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edgecv.data.synthetic import CLASS_NAMES, ShapesDataset
from edgecv.fileio import write_bytes, write_text


def yolo_label_lines(boxes: np.ndarray, class_ids: np.ndarray, height: int, width: int) -> list[str]:
    """YOLO label lines for ``boxes`` float [N,4] x1,y1,x2,y2 pixels (x2/y2 exclusive) and ``class_ids`` int [N]:
    ``"class cx cy w h"`` with centre and size divided by the image width / height."""
    lines = []
    for (x1, y1, x2, y2), cls in zip(boxes.tolist(), class_ids.tolist()):
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def write_split(folder: Path, split: str, count: int, imgsz: int | tuple[int, int], seed: int) -> int:
    """Write ``count`` scenes of ``split`` under ``folder/images/split`` and ``folder/labels/split``; returns
    the number of boxes written."""
    dataset = ShapesDataset(split, length=count, imgsz=imgsz, seed=seed)
    boxes = 0
    for index in range(count):
        sample = dataset[index]
        ok, png = cv2.imencode(".png", sample.image)
        if not ok:  # cv2 reports encoder failure only through this flag
            raise RuntimeError(f"PNG encoding of {split} scene {index} failed")
        height, width = sample.image.shape[:2]
        lines = yolo_label_lines(sample.boxes, sample.class_ids, height, width)
        write_bytes(folder / "images" / split / f"{index:06d}.png", png.tobytes())
        write_text(folder / "labels" / split / f"{index:06d}.txt", "".join(line + "\n" for line in lines))
        boxes += len(lines)
    return boxes


def write_yolo_dataset(folder: Path, *, train: int = 16, val: int = 64, imgsz: int | tuple[int, int] = 640,
                       seed: int = 0) -> Path:
    """Write the YOLO-format dataset described in the module docstring; returns ``folder/data.yaml``.

    ``train`` / ``val``: scene counts (>= 1 each: Ultralytics' dataset check wants both keys to exist).
    ``imgsz``: scene size, int or (H, W). The yaml is written as JSON, which is valid YAML.
    """
    if train < 1 or val < 1:
        raise ValueError(f"train >= 1 and val >= 1 scenes expected, found train={train}, val={val}")
    folder = Path(folder).resolve()
    for split, count in (("train", train), ("val", val)):
        write_split(folder, split, count, imgsz, seed)
    doc = {"path": str(folder), "train": "images/train", "val": "images/val",
           "names": list(CLASS_NAMES)}
    return write_text(folder / "data.yaml", json.dumps(doc, indent=2) + "\n")
