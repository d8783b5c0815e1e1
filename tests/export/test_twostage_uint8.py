"""``edgecv export maskrcnn --input uint8 [--frame WxH] [--check-images DIR]``: the two-stage artifact
takes uint8 BGR frames (checked against the float artifact), and a ``--frame`` artifact calibrates
and evaluates on frames of its size."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.data.synthetic import ShapesDataset
from edgecv.errors import ExportError
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.models.maskrcnn_tiny import demo_weights_path
from edgecv.runtimes import Predictor

pytestmark = pytest.mark.skipif(not demo_weights_path().is_file(), reason="no shipped tiny Mask R-CNN weights")
runner = CliRunner()


def _meta(path: Path) -> ArtifactMetadata:
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return ArtifactMetadata.from_json(props[METADATA_KEY])


@pytest.fixture(scope="module")
def scenes_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), ShapesDataset("val", 3, (240, 320), seed=9)[i].image)
    return folder


def test_uint8_two_stage_export_matches_the_float_graph(tmp_path: Path, scenes_folder: Path) -> None:
    out, ref = tmp_path / "u8" / "model.onnx", tmp_path / "float" / "model.onnx"
    for path, extra in ((out, ["--input", "uint8", "--check-images", str(scenes_folder)]), (ref, [])):
        result = runner.invoke(app, ["export", "maskrcnn", "--out", str(path), *extra])
        assert result.exit_code == 0, result.output
    meta = _meta(out)
    record = meta.fidelity["uint8_input"]  # checked on the 3 --check-images scenes, every detection matched
    assert record["images"] == 3 and record["matched"] == record["total"] > 0
    assert (meta.input_dtype, meta.layout, meta.color_order, meta.input_shape) == ("uint8", "NHWC", "BGR",
                                                                                [1, 256, 256, 3])
    assert meta.task == "segment" and meta.fidelity["passed"]
    frames = [ShapesDataset("val", 4, (240, 320), seed=2)[i].image for i in range(4)]
    with Predictor(ref) as floats, Predictor(out) as uint8s:
        a, b = floats(frames), uint8s(frames)
    assert sum(len(d) for d in a) >= 4
    for x, y in zip(a, b):
        assert np.array_equal(x.class_ids, y.class_ids) and np.allclose(x.boxes, y.boxes, atol=0.05)
        assert x.masks is not None and y.masks is not None


def test_frame_artifact_exports_calibrates_and_evaluates(tmp_path: Path) -> None:
    """--frame 320x240 --int8: calibration and the fp32-vs-int8 evaluation draw 320x240 frames (before:
    'expected 320x240 frames, found 256x256' once the int8 graph was written)."""
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "maskrcnn", "--out", str(out), "--input", "uint8", "--frame", "320x240",
                                 "--int8", "--calib-samples", "8", "--eval-count", "6"])
    assert result.exit_code == 0, result.output
    assert _meta(out).input_shape == [1, 240, 320, 3]
    report = json.loads((tmp_path / "model_int8_onnxruntime_report.json").read_text())
    assert report["accuracy"]["int8"]["map50_95"] > 0.3
    with Predictor(tmp_path / "model_int8_onnxruntime.onnx") as int8:
        assert len(int8(ShapesDataset("val", 1, (240, 320), seed=4)[0].image)) > 0


def test_uint8_check_failure_keeps_the_float_artifact(tmp_path: Path) -> None:
    from edgecv.export.twostage_uint8 import to_uint8_input

    out = tmp_path / "model.onnx"
    assert runner.invoke(app, ["export", "maskrcnn", "--out", str(out), "--no-check"]).exit_code == 0
    before = out.read_bytes()
    with pytest.raises(ExportError, match=r"expected detections of the float artifact.*found none on 2"):
        to_uint8_input(out, [np.full((256, 256, 3), 128, np.uint8)] * 2, None)
    assert out.read_bytes() == before and _meta(out).input_dtype == "float32"
    bad = runner.invoke(app, ["export", "maskrcnn", "--out", str(tmp_path / "b.onnx"), "--frame", "320x240"])
    assert bad.exit_code == 2 and "--frame" in bad.output and "Traceback" not in bad.output
