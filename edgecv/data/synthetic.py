"""The built-in synthetic "shapes" dataset.

Procedurally drawn scenes: a handful of shape classes on cluttered, textured backgrounds, with
varied scale, colour, rotation, overlap and occlusion. Every sample carries boxes, instance masks
and a semantic label map, so one dataset serves detection, instance and semantic segmentation.
Samples are a pure function of ``(seed, split, index)``: the same call always draws the same image,
and the splits draw from disjoint random streams, so validation images are never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}

_MIN_VISIBLE_FRACTION = 0.45  # instances more occluded than this are erased from the labels
_MIN_BOX_SIDE = 6


@dataclass
class Sample:
    """One drawn scene.

    ``image`` uint8 [H,W,3] BGR; ``boxes`` float32 [N,4] x1,y1,x2,y2 in pixels (tight around the
    visible mask, x2/y2 exclusive); ``class_ids`` int32 [N] indexing :data:`CLASS_NAMES`;
    ``masks`` bool [N,H,W] visible instance masks; ``semantic`` uint8 [H,W] with 0 = background and
    ``class_id + 1`` for shape pixels.
    """

    image: np.ndarray
    boxes: np.ndarray
    class_ids: np.ndarray
    masks: np.ndarray
    semantic: np.ndarray


class ShapesDataset:
    """Deterministic synthetic dataset of ``length`` scenes of size ``imgsz`` (int or (H, W)).

    ``dataset[i]`` returns a :class:`Sample`. ``split`` selects one of :data:`SPLITS`, each an
    independent random stream for the same ``seed``.
    """

    class_names = CLASS_NAMES

    def __init__(self, split: str = "train", length: int = 1000, imgsz: int | tuple[int, int] = 320,
                 seed: int = 0, max_objects: int = 8) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.split = split
        self.length = length
        self.imgsz = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
        self.seed = seed
        self.max_objects = max_objects

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        return draw_scene(rng, self.imgsz, self.max_objects)


def draw_scene(rng: np.random.Generator, size: tuple[int, int], max_objects: int = 8) -> Sample:
    """Draw one scene of ``size`` (H, W) from ``rng``."""
    h, w = size
    image = _background(rng, h, w)
    n = int(rng.integers(1, max_objects + 1))
    full_masks: list[np.ndarray] = []
    class_ids: list[int] = []
    for _ in range(n):
        cls = int(rng.integers(len(CLASS_NAMES)))
        mask = _shape_mask(rng, cls, h, w)
        if mask.sum() < _MIN_BOX_SIDE**2:
            continue
        _paint(rng, image, mask)
        full_masks.append(mask)
        class_ids.append(cls)
    return _labels(image, full_masks, class_ids)


def _labels(image: np.ndarray, full_masks: list[np.ndarray], class_ids: list[int]) -> Sample:
    """Visible masks (later shapes occlude earlier ones), boxes and the semantic map."""
    h, w = image.shape[:2]
    covered = np.zeros((h, w), bool)
    kept: list[tuple[np.ndarray, int]] = []
    for mask, cls in zip(reversed(full_masks), reversed(class_ids)):
        visible = mask & ~covered
        covered |= mask
        if visible.sum() >= _MIN_VISIBLE_FRACTION * mask.sum():
            kept.append((visible, cls))
    kept.reverse()
    boxes, masks, classes = [], [], []
    semantic = np.zeros((h, w), np.uint8)
    for visible, cls in kept:
        ys, xs = np.nonzero(visible)
        box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        if min(box[2] - box[0], box[3] - box[1]) < _MIN_BOX_SIDE:
            continue
        boxes.append(box)
        masks.append(visible)
        classes.append(cls)
        semantic[visible] = cls + 1
    return Sample(
        image=image,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        class_ids=np.asarray(classes, np.int32),
        masks=np.asarray(masks, bool).reshape(-1, h, w),
        semantic=semantic,
    )


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-frequency colour noise + grain + clutter strokes in muted colours."""
    base = rng.uniform(40, 200, size=(3,))
    cells = int(rng.integers(3, 9))
    noise = rng.normal(0, 35, size=(cells, cells, 3)).astype(np.float32)
    image = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) + base
    image += rng.normal(0, 8, size=(h, w, 3)).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 12))):
        colour = tuple(int(c) for c in np.clip(base + rng.normal(0, 40, 3), 0, 255))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.6:
            cv2.line(image, p1, p2, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            cv2.ellipse(image, p1, (int(rng.integers(5, 40)), int(rng.integers(3, 15))),
                        float(rng.uniform(0, 180)), 0, 360, colour, 1, cv2.LINE_AA)
    return image


def _shape_mask(rng: np.random.Generator, cls: int, h: int, w: int) -> np.ndarray:
    """Binary mask of one shape of class ``cls`` at a random place, scale and rotation."""
    short = min(h, w)
    radius = float(rng.uniform(0.05, 0.22) * short)
    cx = float(rng.uniform(radius * 0.5, w - radius * 0.5))
    cy = float(rng.uniform(radius * 0.5, h - radius * 0.5))
    angle = float(rng.uniform(0, 2 * np.pi))
    mask = np.zeros((h, w), np.uint8)
    name = CLASS_NAMES[cls]
    if name == "circle":
        aspect = float(rng.uniform(0.8, 1.0))
        cv2.ellipse(mask, (round(cx), round(cy)), (round(radius), round(radius * aspect)),
                    float(np.degrees(angle)), 0, 360, 1, -1)
        return mask.astype(bool)
    points = _outline(name, rng) * radius
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = points @ rot.T + (cx, cy)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _outline(name: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-radius polygon [P,2] for a class."""
    if name == "square":
        aspect = float(rng.uniform(0.75, 1.0))
        return np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]], float) * 0.75
    if name == "triangle":
        t = np.radians([90, 210, 330])
        return np.stack([np.cos(t), np.sin(t)], 1)
    if name == "star":
        t = np.radians(np.arange(10) * 36 - 90)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([np.cos(t) * r, np.sin(t) * r], 1)
    if name == "cross":
        a, b = 1.0, 0.32
        return np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b],
                         [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]], float)
    raise ValueError(f"no outline for class {name!r}")


def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Fill ``mask`` in ``image`` with a saturated colour, a light gradient and grain."""
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(150, 256), rng.integers(120, 256)]]])
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    ys, xs = np.nonzero(mask)
    span = max(int(xs.max() - xs.min()), 1)
    shade = 1.0 + 0.25 * (xs - xs.min()) / span * rng.choice([-1.0, 1.0])
    pixels = colour[None, :] * shade[:, None] + rng.normal(0, 6, size=(len(xs), 3))
    image[ys, xs] = np.clip(pixels, 0, 255).astype(np.uint8)
