"""The result of a semantic-segmentation predictor: one class id per original-image pixel.

:class:`SemanticMap` holds

* ``labels``      int32 ``[H, W]``: the class id of every pixel of the ORIGINAL image (the
  network's arg-max map with the letterbox padding removed and the scale undone, nearest
  neighbour; for a stretch artifact each axis scaled back on its own);
* ``class_names`` the artifact's class names, indexed by ``labels``;
* ``probs``       optional float32 ``[C, H, W]`` class probabilities at the same resolution
  (only when asked for: ``Predictor(..., task_options={"probs": True})``; a 1080p frame with 21
  classes costs 174 MB in float32, so it is never computed by default).

Its JSON form is an ``edgecv.result/1`` document with empty detection lists and a ``semantic``
key: one COCO RLE per class present (see :mod:`edgecv.runtimes.detections`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edgecv.errors import ResultError
from edgecv.runtimes import rle
from edgecv.runtimes.detections import RESULT_SCHEMA, check_result


@dataclass(eq=False)
class SemanticMap:
    """A label map of one image; see the module docstring for shapes and dtypes."""

    labels: np.ndarray
    class_names: tuple[str, ...] = ()
    probs: np.ndarray | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 2:
            raise ValueError(f"labels: expected shape [H, W], found {tuple(labels.shape)}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels: expected integer class ids, found dtype {labels.dtype}")
        labels = labels.astype(np.int32, copy=False)
        names = tuple(str(name) for name in self.class_names)
        if names and labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"labels: expected class ids in [0, {len(names) - 1}] (one per class name), "
                             f"found range [{labels.min()}, {labels.max()}]")
        if self.probs is not None:
            probs = np.asarray(self.probs, np.float32)
            expected = (len(names) or probs.shape[0], *labels.shape)
            if probs.shape != expected:
                raise ValueError(f"probs: expected shape {list(expected)} [C, H, W], found {list(probs.shape)}")
            self.probs = probs
        self.labels, self.class_names = labels, names

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return int(self.labels.shape[0]), int(self.labels.shape[1])

    def area(self) -> np.ndarray:
        """int64 ``[C]``: pixels of each class (C = number of class names, or the largest id + 1)."""
        size = max(len(self.class_names), int(self.labels.max(initial=-1)) + 1)
        return np.bincount(self.labels.ravel(), minlength=size).astype(np.int64)

    def counts(self) -> dict[str, int]:
        """``{class name: pixels}`` of the classes present, largest first."""
        area = self.area()
        present = sorted(np.flatnonzero(area).tolist(), key=lambda c: -area[c])
        return {self.name_of(c): int(area[c]) for c in present}

    def name_of(self, class_id: int) -> str:
        """The name of ``class_id`` (the id as text when the artifact has none for it)."""
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else str(class_id)

    def mask(self, cls: int | str) -> np.ndarray:
        """bool ``[H, W]``: the pixels of class ``cls`` (an id or a name)."""
        if isinstance(cls, str):
            if cls not in self.class_names:
                raise KeyError(f"class: expected one of {list(self.class_names)}, found {cls!r}")
            cls = self.class_names.index(cls)
        return self.labels == int(cls)

    def to_dict(self) -> dict[str, Any]:
        """The result document: empty detection lists plus ``semantic`` (one RLE per class present)."""
        area = self.area()
        classes = [{"class_id": c, "label": self.name_of(c), "area": int(area[c]),
                    "rle": rle.to_document(rle.encode_crop(self.labels == c, 0, 0, self.shape), self.shape)}
                   for c in np.flatnonzero(area).tolist()]
        return {"schema": RESULT_SCHEMA, "boxes": [], "scores": [], "class_ids": [], "labels": [],
                "semantic": {"size": list(self.shape), "classes": classes}}

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], class_names: Sequence[str] | None = None, *,
                  strict: bool = True) -> SemanticMap:
        """Read a :meth:`to_dict` document (or a ``predictions.jsonl`` line of a semantic artifact).

        Raises:
            ResultError: the document breaks the schema, has no ``semantic`` key, or its class
                masks do not cover every pixel exactly once.
        """
        problems = check_result(doc, strict=strict)
        if not problems and "semantic" not in doc:
            problems = ["semantic: expected a label map entry, found the key missing (a detection result?)"]
        if problems:
            raise ResultError(f"result document: {len(problems)} problem(s): " + "; ".join(problems))
        entry = doc["semantic"]
        shape = (int(entry["size"][0]), int(entry["size"][1]))
        labels = np.full(shape, -1, np.int32)
        known: dict[int, str] = {}
        for item in entry["classes"]:
            try:
                mask = rle.decode_dense(rle.counts_of(item["rle"]), shape)
            except ValueError as exc:
                raise ResultError(f"result document: semantic: class {item['class_id']}: {exc}") from exc
            if (labels[mask] >= 0).any():
                raise ResultError(f"result document: semantic: expected each pixel in one class, found class "
                                  f"{item['class_id']} overlapping another")
            labels[mask] = item["class_id"]
            known[int(item["class_id"])] = item["label"]
        if (labels < 0).any():
            raise ResultError(f"result document: semantic: expected the classes to cover all {labels.size} pixels, "
                              f"found {int((labels < 0).sum())} uncovered")
        if class_names is None:
            class_names = [known.get(i, str(i)) for i in range(max(known, default=-1) + 1)]
        return cls(labels, tuple(class_names))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name} {n}" for name, n in list(self.counts().items())[:5])
        probs = "" if self.probs is None else f", probs={list(self.probs.shape)}"
        return f"SemanticMap({self.shape[1]}x{self.shape[0]}, pixels: {shown}{probs})"
