import json

import numpy as np
import pytest

from edgecv.runtimes.detections import Detections

NAMES = ("cat", "dog", "bird")


def make(n: int = 3) -> Detections:
    boxes = np.arange(n * 4, dtype=np.float64).reshape(n, 4)
    return Detections(boxes, np.linspace(0.9, 0.3, n), np.arange(n) % 3, NAMES)


def test_coerces_dtypes_and_shapes() -> None:
    dets = make()
    assert dets.boxes.dtype == np.float32 and dets.boxes.shape == (3, 4)
    assert dets.scores.dtype == np.float32 and dets.class_ids.dtype == np.int32
    assert dets.class_names == NAMES and isinstance(dets.class_names, tuple)
    assert len(dets) == 3


def test_from_plain_lists_and_empty() -> None:
    dets = Detections([[1, 2, 3, 4]], [0.5], [2.0], ["a", "b", "c"])
    assert dets.labels == ["c"]
    empty = Detections([], [], [], NAMES)
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    assert len(Detections.empty(NAMES)) == 0 and Detections.empty(NAMES).class_names == NAMES


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"boxes": np.zeros((2, 5))}, r"boxes: expected shape \[N, 4\].*\(2, 5\)"),
        ({"scores": np.zeros(2)}, r"scores: expected shape \[3\].*\(2,\)"),
        ({"class_ids": np.zeros((3, 1))}, r"class_ids: expected shape \[3\].*\(3, 1\)"),
        ({"class_ids": [0.5, 1, 2]}, r"class_ids: expected integral values"),
        ({"class_ids": [0, 1, 3]}, r"class_ids: expected values in \[0, 2\].*\[0, 3\]"),
        ({"scores": ["a", "b", "c"]}, r"scores: expected a numeric array"),
        ({"masks": np.zeros((2, 4, 4))}, r"masks: expected shape \[3, H, W\].*\(2, 4, 4\)"),
    ],
)
def test_validation_names_expected_and_found(kwargs: dict, message: str) -> None:
    base = {"boxes": np.zeros((3, 4)), "scores": np.zeros(3), "class_ids": [0, 1, 2], "class_names": NAMES}
    with pytest.raises(ValueError, match=message):
        Detections(**{**base, **kwargs})


def test_indexing_forms() -> None:
    dets = make(4)
    high = dets[dets.scores > 0.5]
    assert isinstance(high, Detections) and len(high) == 2
    np.testing.assert_array_equal(high.boxes, dets.boxes[:2])
    assert dets[[3, 0]].class_ids.tolist() == [0, 0]
    assert len(dets[1:3]) == 2
    one = dets[-1]
    assert len(one) == 1 and one.boxes.shape == (1, 4)
    assert len(dets[np.zeros(4, bool)]) == 0
    assert len(dets[[]]) == 0
    assert high.class_names == NAMES
    with pytest.raises(IndexError, match=r"expected shape \(4,\)"):
        dets[np.ones(3, bool)]


def test_masks_are_bool_and_indexed() -> None:
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[1, 2:4, 2:4] = 255
    dets = Detections(np.zeros((3, 4)), np.ones(3), [0, 1, 2], NAMES, masks)
    assert dets.masks is not None and dets.masks.dtype == np.bool_
    sub = dets[[1]]
    assert sub.masks is not None and sub.masks.shape == (1, 8, 8) and sub.masks.sum() == 4


def test_labels_and_json_roundtrip() -> None:
    dets = make()
    assert dets.labels == ["cat", "dog", "bird"]
    assert Detections([[0, 0, 1, 1]], [1.0], [7]).labels == ["7"]  # no names: the id
    data = json.loads(dets.to_json())
    assert data == dets.to_dict()
    assert set(data) == {"boxes", "scores", "class_ids", "labels"}
    assert data["boxes"][1] == [4.0, 5.0, 6.0, 7.0]
    assert data["scores"][0] == pytest.approx(0.9)
    assert all(type(v) is int for v in data["class_ids"])
