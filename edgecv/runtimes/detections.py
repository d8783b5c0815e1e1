"""The result of a detection predictor: plain numpy arrays in original-image pixels, and its JSON schema.

:class:`Detections` is deliberately small (architecture contract 6): no framework
objects, no adapters. It is validated on construction so that every instance has

* ``boxes``      float32 ``[N, 4]``, x1, y1, x2, y2 in ORIGINAL image pixels;
* ``scores``     float32 ``[N]``;
* ``class_ids``  int32 ``[N]``;
* ``class_names`` the artifact's full list of class names (``tuple[str, ...]``),
  indexed by ``class_ids``;
* ``masks``      optional :class:`~edgecv.runtimes.masks.InstanceMasks` (instance segmentation):
  ``N`` masks in original-image pixels, each cropped to its box and bit-packed;
  ``masks.dense()`` gives bool ``[N, H, W]``. A dense ``[N, H, W]`` array given here is
  converted (cropped to each mask's set pixels);
* ``track_ids``  optional int64 ``[N]``: persistent object ids from a tracker
  (:class:`~edgecv.runtimes.streams.tracking.Tracker`), ``-1`` for a detection the tracker
  has not (yet) confirmed. ``None`` when tracking is off.

Result schema ``edgecv.result/1`` (:data:`RESULT_SCHEMA`)
---------------------------------------------------------

The one JSON form of a result: :meth:`Detections.to_dict` writes it, every line of
``predictions.jsonl`` is one (plus the frame's ``name``), and :meth:`Detections.from_dict`
/ :func:`check_result` read and validate it. One JSON object per image / frame:

=============== ========== =====================================================================
key             required   value
=============== ========== =====================================================================
``schema``      yes        ``"edgecv.result/1"``
``boxes``       yes        ``[[x1, y1, x2, y2], ...]`` original-image pixels, ``N`` rows
``scores``      yes        ``N`` numbers in [0, 1]
``class_ids``   yes        ``N`` integers >= 0 (index into the artifact's ``class_names``)
``labels``      yes        ``N`` strings (the class name, or the id as text when unnamed)
``name``        no         the source item: file name, ``clip.mp4#000012``, ...
``frame_index`` no         integer >= 0, position of the frame in its stream (streams)
``timestamp``   no         finite number, seconds on the source's clock (streams; ROS bags: the
                           message's ``header.stamp``)
``log_time``    no         finite number, seconds: when a ROS bag recorded the frame's message
``frame_id``    no         string, the ROS ``header.frame_id`` of a bag frame
``track_ids``   no         ``N`` integers >= 0, or null for an untracked detection (tracking;
                           ``Detections.track_ids`` holds -1 where the document has null)
``masks``       no         ``N`` COCO RLE documents ``{"size": [H, W], "counts": "..."}``, one per
                           detection, full-image, column-major, COMPRESSED counts string
                           (:mod:`edgecv.runtimes.rle`; pycocotools reads them as they are)
``semantic``    no         a label map (task ``semantic``; then ``boxes`` etc. are empty lists):
                           ``{"size": [H, W], "classes": [{"class_id", "label", "area",
                           "rle": {"size", "counts"}}, ...]}``, one COCO RLE per class present
                           (COCO-stuff style), the classes' masks covering every pixel once;
                           :meth:`edgecv.runtimes.semantic_map.SemanticMap.from_dict` reads it
=============== ========== =====================================================================

Extending it: a later feature adds its key to :data:`RESULT_KEYS` (with its check) and to
the table above, as an optional key -- never an ad hoc field; :func:`check_result` rejects
keys it does not know, so an undocumented field fails the writer's own tests. Changing the
meaning of an existing key, or making a new key required, bumps the version
(``edgecv.result/2``). Readers accept their own version; ``strict=False`` ignores unknown
keys (lines written by a newer edgecv that only added optional keys).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgecv.errors import ResultError
from edgecv.runtimes.masks import InstanceMasks
from edgecv.runtimes.rle import rle_problem

#: What ``Detections[...]`` accepts: an int, a slice, a boolean mask ``[N]`` or an index array.
IndexLike = int | slice | Sequence[int] | Sequence[bool] | np.ndarray

#: Version tag of the result documents written by :meth:`Detections.to_dict` (see the module docstring).
RESULT_SCHEMA = "edgecv.result/1"


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
    masks: InstanceMasks | None = None
    track_ids: np.ndarray | None = None

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
        if self.track_ids is not None:
            track_ids = _vector(self.track_ids, np.int64, "track_ids", n)
            if n and track_ids.min() < -1:
                raise ValueError(f"track_ids: expected ids >= 0 or -1 (untracked), found {track_ids.min()}")
            self.track_ids = track_ids

    @staticmethod
    def _validated_masks(masks: Any, n: int) -> InstanceMasks:
        if not isinstance(masks, InstanceMasks):
            array = np.asarray(masks)
            if array.ndim != 3 or array.shape[0] != n:
                raise ValueError(f"masks: expected shape [{n}, H, W], found {tuple(array.shape)}")
            masks = InstanceMasks.from_dense(array)
        if len(masks) != n:
            raise ValueError(f"masks: expected {n} masks (one per box), found {len(masks)}")
        return masks

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
            None if self.track_ids is None else self.track_ids[index],
        )

    @property
    def labels(self) -> list[str]:
        """Class name of every detection (the id as text when the artifact has no name for it)."""
        names = self.class_names
        return [names[i] if 0 <= i < len(names) else str(i) for i in self.class_ids.tolist()]

    def to_dict(self) -> dict[str, Any]:
        """The result document (schema :data:`RESULT_SCHEMA`, see the module docstring):
        ``{"schema", "boxes": [[x1, y1, x2, y2], ...], "scores", "class_ids", "labels"}``.

        Boxes are rounded to 3 decimals and scores to 5 (float32 noise only). With masks, the
        document has ``"masks"``: one COCO RLE per detection (compressed counts). With ``track_ids``,
        the document has ``"track_ids"``: the ids, null where a detection is untracked (-1).
        """
        doc: dict[str, Any] = {
            "schema": RESULT_SCHEMA,
            "boxes": np.round(self.boxes.astype(np.float64), 3).tolist(),
            "scores": np.round(self.scores.astype(np.float64), 5).tolist(),
            "class_ids": self.class_ids.tolist(),
            "labels": self.labels,
        }
        if self.track_ids is not None:
            doc["track_ids"] = [None if i < 0 else i for i in self.track_ids.tolist()]
        if self.masks is not None:
            doc["masks"] = self.masks.to_rle()
        return doc

    def to_json(self) -> str:
        """:meth:`to_dict` as one line of JSON."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], class_names: Sequence[str] | None = None, *,
                  strict: bool = True) -> Detections:
        """Read a result document (a :meth:`to_dict` output or a ``predictions.jsonl`` line).

        ``class_names``: the artifact's names; checked against the document's labels. Without
        them, names are rebuilt from the labels (ids without a label in the document get the id
        as text). ``strict=False`` ignores keys this version does not know.

        Raises:
            ResultError: the document breaks the schema (every problem listed, expected vs found).
        """
        problems = check_result(doc, strict=strict)
        if problems:
            raise ResultError(f"result document: {len(problems)} problem(s): " + "; ".join(problems))
        ids = [int(i) for i in doc["class_ids"]]
        labels = list(doc["labels"])
        if class_names is None:
            known = dict(zip(ids, labels))
            class_names = [known.get(i, str(i)) for i in range(max(ids) + 1)] if ids else []
        names = tuple(str(n) for n in class_names)
        wrong = [(i, label) for i, label in zip(ids, labels) if (names[i] if i < len(names) else str(i)) != label]
        if wrong:
            i, label = wrong[0]
            expected = names[i] if i < len(names) else str(i)
            raise ResultError(f"result document: labels: expected {expected!r} for class id {i} (from class_names), "
                              f"found {label!r}")
        boxes = np.asarray(doc["boxes"], np.float32).reshape(-1, 4)
        track_ids = doc.get("track_ids")
        if track_ids is not None:
            track_ids = np.asarray([-1 if i is None else i for i in track_ids], np.int64)
        masks = None
        if doc.get("masks") is not None:
            try:
                masks = InstanceMasks.from_rle(doc["masks"])
            except ValueError as exc:
                raise ResultError(f"result document: masks: {exc}") from exc
        return cls(boxes, np.asarray(doc["scores"], np.float32), np.asarray(ids, np.int32), names,
                   masks=masks, track_ids=track_ids)

    def __repr__(self) -> str:
        extra = "" if self.masks is None else f", masks={self.masks.shape} ({self.masks.nbytes} bytes)"
        if self.track_ids is not None:
            extra += f", track_ids={self.track_ids[:5].tolist()}{'...' if len(self) > 5 else ''}"
        return f"Detections(n={len(self)}, labels={self.labels[:5]}{'...' if len(self) > 5 else ''}{extra})"


# --- result schema checks -------------------------------------------------------------------------

def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _per_detection(item_ok: Callable[[Any], bool], expected: str) -> Callable[[Any, int], str | None]:
    """A check for a list of ``N`` items (one per detection) each passing ``item_ok``."""
    def check(value: Any, n: int) -> str | None:
        ok = isinstance(value, list) and len(value) == n and all(item_ok(v) for v in value)
        return None if ok else f"a list of {n} {expected} (one per box)"
    return check


def _box(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(_finite(v) for v in value)


def _single(ok: Callable[[Any], bool], expected: str) -> Callable[[Any, int], str | None]:
    return lambda value, n: None if ok(value) else expected


#: Every key of a result document: ``(required, check(value, N) -> None or what was expected)``.
#: ``N`` is the number of boxes. Later features add their optional key here (module docstring).
RESULT_KEYS: dict[str, tuple[bool, Callable[[Any, int], str | None]]] = {
    "schema": (True, _single(lambda v: v == RESULT_SCHEMA, repr(RESULT_SCHEMA))),
    "boxes": (True, lambda v, n: None if isinstance(v, list) and all(_box(b) for b in v)
              else "a list of [x1, y1, x2, y2] lists of 4 finite numbers"),
    "scores": (True, _per_detection(lambda v: _finite(v) and 0.0 <= v <= 1.0, "numbers in [0, 1]")),
    "class_ids": (True, _per_detection(lambda v: _integer(v) and v >= 0, "integers >= 0")),
    "labels": (True, _per_detection(lambda v: isinstance(v, str), "strings")),
    "name": (False, _single(lambda v: isinstance(v, str), "a string")),
    "frame_index": (False, _single(lambda v: _integer(v) and v >= 0, "an integer >= 0")),
    "timestamp": (False, _single(_finite, "a finite number (seconds)")),
    "log_time": (False, _single(_finite, "a finite number (seconds; a ROS bag's log time)")),
    "frame_id": (False, _single(lambda v: isinstance(v, str), "a string (ROS header frame_id)")),
    "track_ids": (False, _per_detection(lambda v: v is None or (_integer(v) and v >= 0),
                                            "integers or null (ids >= 0; null: untracked)")),
    "masks": (False, _per_detection(lambda v: rle_problem(v) is None,
                                    'COCO RLE objects {"size": [H, W], "counts": ...}')),
    "semantic": (False, lambda v, n: _semantic_problem(v)),
}


def _semantic_problem(value: Any) -> str | None:
    """None when ``value`` is a ``semantic`` entry (module docstring), else what was expected."""
    expected = ('{"size": [H, W], "classes": [{"class_id": int >= 0, "label": str, "area": int >= 0, '
                '"rle": COCO RLE}, ...]}')
    if not isinstance(value, dict) or set(value) != {"size", "classes"} or not isinstance(value["classes"], list):
        return expected
    size = value["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(_integer(v) and v > 0 for v in size)):
        return expected
    for entry in value["classes"]:
        ok = (isinstance(entry, dict) and set(entry) == {"class_id", "label", "area", "rle"}
              and _integer(entry["class_id"]) and entry["class_id"] >= 0 and isinstance(entry["label"], str)
              and _integer(entry["area"]) and entry["area"] >= 0 and rle_problem(entry["rle"]) is None
              and entry["rle"]["size"] == size)
        if not ok:
            return expected
    return None


def check_result(doc: Any, *, strict: bool = True) -> list[str]:
    """Every problem of a result document, ``"<key>: expected ..., found ..."`` each (empty: valid).

    ``strict`` reports keys that are not in :data:`RESULT_KEYS`.
    """
    if not isinstance(doc, Mapping):
        return [f"expected a JSON object, found {type(doc).__name__}"]
    problems = [f"{key}: expected a value, found the key missing"
                for key, (required, _) in RESULT_KEYS.items() if required and key not in doc]
    boxes = doc.get("boxes")
    n = len(boxes) if isinstance(boxes, list) else 0
    for key, (_, check) in RESULT_KEYS.items():
        if key in doc:
            expected = check(doc[key], n)
            if expected is not None:
                shown = repr(doc[key])
                problems.append(f"{key}: expected {expected}, found {shown if len(shown) <= 60 else shown[:57] + '...'}")
    if strict:
        unknown = sorted(set(doc) - set(RESULT_KEYS))
        if unknown:
            problems.append(f"keys: expected only {list(RESULT_KEYS)} ({RESULT_SCHEMA}; add new keys there), "
                            f"found unknown {unknown}")
    return problems
