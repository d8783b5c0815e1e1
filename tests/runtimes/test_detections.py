import json

import numpy as np
import pytest

from edgecv.errors import ResultError
from edgecv.runtimes.detections import Detections, check_result

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
    assert sub.masks is not None and sub.masks.shape == (1, 8, 8) and sub.masks.area().tolist() == [4]
    assert np.asarray(sub.masks).sum() == 4 and sub.masks.dense()[0, 2:4, 2:4].all()  # dense on request


def test_labels_and_json_roundtrip() -> None:
    dets = make()
    assert dets.labels == ["cat", "dog", "bird"]
    assert Detections([[0, 0, 1, 1]], [1.0], [7]).labels == ["7"]  # no names: the id
    data = json.loads(dets.to_json())
    assert data == dets.to_dict()
    assert set(data) == {"schema", "boxes", "scores", "class_ids", "labels"} and data["schema"] == "edgecv.result/1"
    assert data["boxes"][1] == [4.0, 5.0, 6.0, 7.0]
    assert data["scores"][0] == pytest.approx(0.9)
    assert all(type(v) is int for v in data["class_ids"])


def test_result_document_round_trips_through_from_dict() -> None:
    dets = make()
    line = json.loads(json.dumps({"name": "scene.jpg", "frame_index": 3, **dets.to_dict()}))  # a jsonl line
    assert check_result(line) == []
    back = Detections.from_dict(line)
    np.testing.assert_allclose(back.boxes, dets.boxes, atol=1e-3)
    np.testing.assert_allclose(back.scores, dets.scores, atol=1e-5)
    assert back.class_ids.tolist() == dets.class_ids.tolist() and back.labels == dets.labels
    assert Detections.from_dict(line, dets.class_names).class_names == dets.class_names


@pytest.mark.parametrize(("change", "message"), [
    ({"schema": "edgecv.result/2"}, "schema: expected 'edgecv.result/1', found 'edgecv.result/2'"),
    ({"boxes": [[1, 2, 3]] * 3}, r"boxes: expected a list of \[x1, y1, x2, y2\] lists of 4 finite numbers"),
    ({"scores": [0.9, 0.8]}, r"scores: expected a list of 3 numbers in \[0, 1\] \(one per box\), found \[0.9, 0.8\]"),
    ({"scores": [0.9, 0.8, 7.0]}, r"scores: expected a list of 3 numbers in \[0, 1\]"),
    ({"class_ids": [0, 1.5, 2]}, r"class_ids: expected a list of 3 integers >= 0"),
    ({"labels": "cat dog bird"}, "labels: expected a list of 3 strings"),
    ({"frame_index": -1}, "frame_index: expected an integer >= 0"),
    ({"timestamp": "noon"}, r"timestamp: expected a finite number \(seconds\)"),
    ({"track_ids": [1, 2]}, "track_ids: expected a list of 3 integers or null"),
    ({"speed": 3}, r"keys: expected only \[.*\] \(edgecv.result/1; add new keys there\), found unknown \['speed'\]"),
])
def test_result_document_violations_are_named(change: dict, message: str) -> None:
    doc = {**make().to_dict(), **change}
    with pytest.raises(ResultError, match=message):
        Detections.from_dict(doc)


def test_result_document_missing_keys_and_lenient_reading() -> None:
    doc = make().to_dict()
    del doc["schema"], doc["labels"]
    assert check_result(doc) == ["schema: expected a value, found the key missing",
                                 "labels: expected a value, found the key missing"]
    newer = {**make().to_dict(), "future_key": 1}
    assert len(Detections.from_dict(newer, strict=False)) == 3
    assert check_result([1, 2]) == ["expected a JSON object, found list"]
    with pytest.raises(ResultError, match="labels: expected 'dog' for class id 1 .*found 'cat'"):
        Detections.from_dict({**make().to_dict(), "labels": ["cat", "cat", "bird"]}, ("cat", "dog", "bird"))


def test_predictions_jsonl_lines_follow_the_result_schema(tmp_path, toy_artifact, chelsea_bgr) -> None:
    """What `edgecv predict --save` writes is readable back with from_dict, line by line."""
    import cv2

    from edgecv.runtimes import Predictor
    from edgecv.runtimes.predict import JSONL_NAME, predict_source

    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "cat.jpg"), chelsea_bgr)
    with Predictor(toy_artifact) as predictor:
        predict_source(predictor, tmp_path / "in", tmp_path / "out", show_progress=False)
        expected = predictor(cv2.imread(str(tmp_path / "in" / "cat.jpg")))
    lines = (tmp_path / "out" / JSONL_NAME).read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    assert len(docs) == 1 and docs[0]["schema"] == "edgecv.result/1" and check_result(docs[0]) == []
    back = Detections.from_dict(docs[0], predictor.class_names)
    assert len(back) == len(expected) > 0 and back.labels == expected.labels
    np.testing.assert_allclose(back.boxes, expected.boxes, atol=1e-3)
