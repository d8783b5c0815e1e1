"""Metadata schema v2: every field validated on read, all problems in one ArtifactError; a newer
schema refused, an older one read."""

from __future__ import annotations

import json
import re

import pytest

from edgecv.errors import ArtifactError
from edgecv.metadata import SCHEMA_VERSION, ArtifactMetadata


def document(**changes: object) -> str:
    doc = json.loads(ArtifactMetadata(task="detect", class_names=["a", "b"]).to_json())
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("task", "track", r"one of \['detect', 'segment', 'semantic'\]"),
    ("class_names", "cat", "a non-empty list of strings"),  # used to label detections 'c', 'a', 't'
    ("class_names", [], "a non-empty list of strings"),
    ("class_names", ["a", 3], "a non-empty list of strings"),
    ("input_name", "", "a non-empty string"),
    ("input_shape", [1, 3, 320], r"\[B, 3, H, W\]"),
    ("input_shape", [1, 3, "320", 320], r"\[B, 3, H, W\]"),
    ("input_shape", [1, 4, 320, 320], "channels 3"),
    ("input_shape", [1, 3, 0, 320], "each > 0 or -1"),
    ("input_dtype", "int8", r"one of \['float32', 'float16', 'uint8'\]"),
    ("layout", "NCWH", r"one of \['NCHW', 'NHWC'\]"),
    ("color_order", "rgb", r"one of \['RGB', 'BGR'\]"),
    ("mean", [0.5, 0.5], "a list of 3 finite numbers"),
    ("mean", "0.5", "a list of 3 finite numbers"),
    ("std", [1.0, 0.0, 1.0], "a list of 3 numbers > 0"),
    ("std", [1.0, -1.0, 1.0], "a list of 3 numbers > 0"),
    ("letterbox_size", [320], r"\[H, W\]: 2 integers > 0"),
    ("letterbox_size", [320, -1], r"\[H, W\]: 2 integers > 0"),
    ("stride", 0, "an integer >= 1"),
    ("stride", 32.0, "an integer >= 1"),
    ("pad_value", 256, r"an integer in \[0, 255\]"),
    ("pad_value", "114", r"an integer in \[0, 255\]"),
    ("resize", "crop", r"one of \['letterbox', 'stretch'\]"),
    ("outputs", "boxes", "a non-empty list of non-empty strings"),
    ("max_det", 0, "an integer >= 1"),
    ("max_det", True, "an integer >= 1"),
    ("conf_threshold", 2.0, r"a number in \[0, 1\]"),
    ("conf_threshold", "0.25", r"a number in \[0, 1\]"),
    ("iou_threshold", -0.1, r"a number in \[0, 1\]"),
    ("precision", "int4", r"one of \['fp32', 'fp16', 'int8'\]"),
    ("dynamic", "yes", "true or false"),
    ("model_family", 3, "a string"),
    ("source_weights_sha256", None, "a string"),
    ("parent", [], "a JSON object"),
    ("calibration", "minmax", "a JSON object"),
    ("fidelity", 1, "a JSON object"),
    ("accuracy", None, "a JSON object"),
    ("versions", "1.0", "a JSON object"),
])
def test_each_bad_field_is_one_clear_error(field: str, value: object, expected: str) -> None:
    with pytest.raises(ArtifactError) as info:
        ArtifactMetadata.from_json(document(**{field: value}), source="model.onnx")
    message = str(info.value)
    assert message.startswith("model.onnx: invalid edgecv metadata (1 problem): ")
    assert f"{field}: expected " in message and "found " + repr(value)[:20] in message
    assert re.search(expected, message), message
    assert "\n" not in message


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ArtifactError, match=r"\(3 problems\): class_names: .*; mean: .*; pad_value: "):
        ArtifactMetadata.from_json(document(class_names="abc", mean=[1], pad_value=-1))


def test_missing_required_keys() -> None:
    doc = json.loads(document())
    del doc["class_names"], doc["task"]
    with pytest.raises(ArtifactError, match="task: expected a value, found the key missing; class_names"):
        ArtifactMetadata.from_json(json.dumps(doc))


def test_newer_schema_is_refused_before_anything_else() -> None:
    """An older runtime must refuse a newer artifact (it may stretch, or whatever v3 adds), not guess."""
    newer = document(schema_version=SCHEMA_VERSION + 1, resize="something-new")
    with pytest.raises(ArtifactError, match=f"expected metadata schema_version <= {SCHEMA_VERSION}, found "
                                            f"{SCHEMA_VERSION + 1}.*upgrade edgecv"):
        ArtifactMetadata.from_json(newer)
    for bad in ("2", None, 0, True):
        with pytest.raises(ArtifactError, match="schema_version an integer"):
            ArtifactMetadata.from_json(document(schema_version=bad))


def test_v1_artifact_is_read_with_v1_behaviour() -> None:
    """A v1 document (no resize, no parent) reads as letterbox; unknown keys are ignored."""
    doc = json.loads(document(schema_version=1))
    del doc["resize"], doc["parent"]
    doc["some_v1_extra"] = 1
    meta = ArtifactMetadata.from_json(json.dumps(doc))
    assert meta.schema_version == 1 and meta.resize == "letterbox" and meta.parent == {}
    assert meta.class_names == ["a", "b"]


def test_valid_document_round_trips() -> None:
    meta = ArtifactMetadata(task="detect", class_names=["x"], resize="stretch", color_order="BGR", pad_value=0,
                            input_shape=[-1, 3, -1, -1], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    assert ArtifactMetadata.from_json(meta.to_json()) == meta
    assert meta.check() is meta and meta.problems() == []


def test_non_text_and_non_object() -> None:
    with pytest.raises(ArtifactError, match="expected a JSON object as edgecv metadata, found list"):
        ArtifactMetadata.from_json("[1, 2]")
    with pytest.raises(ArtifactError, match="expected edgecv metadata as JSON text, found int"):
        ArtifactMetadata.from_json(5)  # type: ignore[arg-type]
