"""The result of a detection predictor: plain numpy arrays in original-image pixels.

:class:`Detections` is deliberately small (architecture contract 6): no framework
objects, no adapters. It is validated on construction so that every instance has

* ``boxes``      float32 ``[N, 4]``, x1, y1, x2, y2 in ORIGINAL image pixels;
* ``scores``     float32 ``[N]``;
* ``class_ids``  int32 ``[N]``;
* ``class_names`` the artifact's full list of class names (``tuple[str, ...]``),
  indexed by ``class_ids``;
* ``masks``      optional bool ``[N, H, W]`` (instance segmentation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: What ``Detections[...]`` accepts: an int, a slice, a boolean mask ``[N]`` or an index array.
IndexLike = int | slice | Sequence[int] | Sequence[bool] | np.ndarray


def _as_array(value: Any, dtype: type, name: str) -> np.ndarray:
    """Convert ``value`` to a numpy array of ``dtype``; integer targets refuse non-integral floats."""
    array = np.asarray(value)
    if array.dtype == dtype:
        return array
    float_to_int = np.issubdtype(dtype, np.integer) and array.size and np.issubdtype(array.dtype, np.floating)
    if float_to_int and not (np.all(np.isfinite(array)) and np.array_equal(array, np.round(array))):
        raise ValueError(f"{name}: expected integral values (dtype {np.dtype(dtype).name}), found {array.dtype} "
                         "with fractional or non-finite values")
    if array.size and not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"{name}: expected a numeric array, found dtype {array.dtype}")
    return array.astype(dtype)


def _vector(value: Any, dtype: type, name: str, n: int) -> np.ndarray:
    """``value`` as a 1-D array of ``dtype`` and length ``n`` (matching ``boxes``)."""
    array = _as_array(value, dtype, name)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{name}: expected shape [{n}] to match boxes, found {tuple(array.shape)}")
    return array


@dataclass(eq=False)
class Detections:
    """Detections of one image; see the module docstring for shapes and dtypes.

    Index it like an array (``dets[dets.scores > 0.5]``, ``dets[[0, 2]]``, ``dets[:3]``,
    ``dets[0]``): every form returns a new :class:`Detections` sharing ``class_names``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...] = ()
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = _as_array(self.boxes, np.float32, "boxes")
        if boxes.size == 0 and boxes.ndim < 2:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes: expected shape [N, 4] (x1, y1, x2, y2), found {tuple(boxes.shape)}")
        n = boxes.shape[0]
        scores = _vector(self.scores, np.float32, "scores", n)
        class_ids = _vector(self.class_ids, np.int32, "class_ids", n)
        names = tuple(str(name) for name in self.class_names)
        if names and n and (class_ids.min() < 0 or class_ids.max() >= len(names)):
            raise ValueError(f"class_ids: expected values in [0, {len(names) - 1}] (one per class name), "
                             f"found range [{class_ids.min()}, {class_ids.max()}]")
        self.boxes, self.scores, self.class_ids, self.class_names = boxes, scores, class_ids, names
        self.masks = None if self.masks is None else self._validated_masks(self.masks, n)

    @staticmethod
    def _validated_masks(masks: Any, n: int) -> np.ndarray:
        array = np.asarray(masks)
        if array.ndim != 3 or array.shape[0] != n:
            raise ValueError(f"masks: expected shape [{n}, H, W], found {tuple(array.shape)}")
        return array if array.dtype == np.bool_ else array.astype(bool)

    @classmethod
    def empty(cls, class_names: Sequence[str] = ()) -> Detections:
        """No detections (``N = 0``) for an artifact with ``class_names``."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), tuple(class_names))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, index: IndexLike) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        elif not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == np.bool_ and index.shape != (len(self),):
                raise IndexError(f"boolean index: expected shape ({len(self)},), found {index.shape}")
            if index.size == 0:
                index = index.astype(np.intp)
        return Detections(
            self.boxes[index],
            self.scores[index],
            self.class_ids[index],
            self.class_names,
            None if self.masks is None else self.masks[index],
        )

    @property
    def labels(self) -> list[str]:
        """Class name of every detection (the id as text when the artifact has no name for it)."""
        names = self.class_names
        return [names[i] if 0 <= i < len(names) else str(i) for i in self.class_ids.tolist()]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form: ``{"boxes": [[x1, y1, x2, y2], ...], "scores", "class_ids", "labels"}``.

        Boxes are rounded to 3 decimals and scores to 5 (float32 noise only). Masks are not
        included (they would dwarf the rest); read ``.masks`` directly.
        """
        return {
            "boxes": np.round(self.boxes.astype(np.float64), 3).tolist(),
            "scores": np.round(self.scores.astype(np.float64), 5).tolist(),
            "class_ids": self.class_ids.tolist(),
            "labels": self.labels,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON."""
        return json.dumps(self.to_dict())

    def __repr__(self) -> str:
        extra = "" if self.masks is None else f", masks={tuple(self.masks.shape)}"
        return f"Detections(n={len(self)}, labels={self.labels[:5]}{'...' if len(self) > 5 else ''}{extra})"
