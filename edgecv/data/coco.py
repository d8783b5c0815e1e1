"""COCO-format folders: write the synthetic set as one, read any one back.

Layout written by :func:`write_coco` (and expected by :class:`CocoFolder`)::

    folder/annotations.json     # COCO instances: images, annotations (bbox x,y,w,h; RLE masks), categories
    folder/images/000000.png    # BGR images as PNG
    folder/semantic/000000.png  # uint8 label maps (0 = background, class + 1); synthetic set only

Category ids are 1..C in the order of the class names; edgecv class index = position in that order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rich.progress import track

from edgecv.errors import DatasetError
from edgecv.fileio import write_json, write_with


def mask_to_rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a bool mask [H,W] (column-major run lengths, starting with zeros)."""
    flat = np.asfortranarray(mask).reshape(-1, order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(np.concatenate(([0], flat, [1 - flat[-1] if flat.size else 0]))))
    counts = np.diff(np.concatenate(([0], changes))).tolist()
    return {"size": list(mask.shape), "counts": counts}


def coco_dict(samples, class_names: list[str], file_names: list[str]) -> dict:
    """COCO ground-truth dict from samples with ``boxes`` (x1,y1,x2,y2), ``class_ids``, ``masks``, ``image``."""
    images, annotations = [], []
    for image_id, (sample, name) in enumerate(zip(samples, file_names), start=1):
        h, w = sample.image.shape[:2]
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for k, (box, cls) in enumerate(zip(sample.boxes, sample.class_ids)):
            x1, y1, x2, y2 = (float(v) for v in box)
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls) + 1,
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0}
            if sample.masks is not None and len(sample.masks) > k:
                ann["segmentation"] = mask_to_rle(sample.masks[k])
                ann["area"] = float(sample.masks[k].sum())
            else:
                ann["area"] = (x2 - x1) * (y2 - y1)
            annotations.append(ann)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(dataset, folder: str | Path, show_progress: bool = True) -> Path:
    """Write a :class:`~edgecv.data.synthetic.ShapesDataset` as a COCO folder; returns the json path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "semantic").mkdir(parents=True, exist_ok=True)
    samples, names = [], []
    indices = range(len(dataset))
    for i in track(indices, description="writing images") if show_progress else indices:
        sample = dataset[i]
        name = f"{i:06d}.png"
        write_with(folder / "images" / name, lambda tmp: cv2.imwrite(str(tmp), sample.image))
        write_with(folder / "semantic" / name, lambda tmp: cv2.imwrite(str(tmp), sample.semantic))
        samples.append(sample)
        names.append(f"images/{name}")
    gt = coco_dict(samples, list(dataset.class_names), names)
    return write_json(folder / "annotations.json", gt)


@dataclass
class CocoFolder:
    """A COCO-format detection dataset on disk: ``annotations.json`` + image files.

    ``root`` is the folder; image ``file_name`` entries are relative to it (or to ``root/images``).
    """

    root: Path
    gt: dict

    @classmethod
    def open(cls, path: str | Path) -> "CocoFolder":
        """Open a folder holding ``annotations.json`` (or a path to the json itself)."""
        path = Path(path)
        json_path = path if path.suffix == ".json" else path / "annotations.json"
        if not json_path.is_file():
            raise DatasetError(f"expected a COCO annotations file at {json_path}, found none")
        try:
            gt = json.loads(json_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{json_path}: not valid JSON ({exc})") from exc
        missing = [k for k in ("images", "annotations", "categories") if k not in gt]
        if missing:
            raise DatasetError(f"{json_path}: expected COCO keys images/annotations/categories, missing {missing}")
        if not gt["images"]:
            raise DatasetError(f"{json_path}: the dataset lists no images")
        return cls(root=json_path.parent, gt=gt)

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in sorted(self.gt["categories"], key=lambda c: c["id"])]

    @property
    def category_ids(self) -> list[int]:
        """COCO category id of each edgecv class index."""
        return [c["id"] for c in sorted(self.gt["categories"], key=lambda c: c["id"])]

    def image_path(self, entry: dict) -> Path:
        for candidate in (self.root / entry["file_name"], self.root / "images" / entry["file_name"]):
            if candidate.is_file():
                return candidate
        raise DatasetError(f"image {entry['file_name']!r} listed in the annotations was not found under {self.root}")

    def read(self, entry: dict) -> np.ndarray:
        """The image of one ``images`` entry, as decoded by OpenCV (IMREAD_UNCHANGED)."""
        path = self.image_path(entry)
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DatasetError(f"{path}: cannot be decoded as an image")
        return image
