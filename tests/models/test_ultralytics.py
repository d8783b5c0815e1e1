"""Ultralytics YOLO checkpoints (built from the package's yaml, random weights: no download)."""

import sys

import numpy as np
import onnxruntime as ort
import pytest

from edgecv.errors import MissingDependencyError, WeightsError
from edgecv.export.onnx_export import ExportOptions, export_detector
from edgecv.models import load_for_export


@pytest.fixture(scope="module")
def yolov8n_pt(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("YOLO_OFFLINE", "1")  # no update checks or downloads
    pytest.importorskip("ultralytics", reason="the optional ultralytics package is not installed")
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("ultra") / "yolov8n.pt"
    YOLO("yolov8n.yaml").save(str(path))
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_ultralytics_checkpoint_needs_explicit_trust(yolov8n_pt):
    with pytest.raises(WeightsError, match="--trust-weights"):
        load_for_export("yolo", yolov8n_pt)


def test_ultralytics_checkpoint_exports_with_the_contract(yolov8n_pt, tmp_path):
    with pytest.raises(WeightsError, match="trained for 80 classes"):
        load_for_export("yolo", yolov8n_pt, trust=True, class_names=["a", "b"])
    names = [f"c{i}" for i in range(80)]  # a yaml-built model is named "0".."79"
    detector = load_for_export("yolo", yolov8n_pt, trust=True, class_names=names)
    assert detector.class_names == names
    result = export_detector(detector, tmp_path / "v8n.onnx", ExportOptions(imgsz=160, batch=2, conf=0.001, max_det=50))
    assert result.fidelity["passed"]
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    num, boxes, scores, classes = session.run(None, {"images": np.random.rand(2, 3, 160, 160).astype(np.float32)})
    assert num.shape == (2, 1) and boxes.shape == (2, 50, 4) and classes.max() < 80
    assert classes.dtype == np.int32 and scores.max() <= 1.0  # random weights: few or no detections


def test_without_ultralytics_the_message_names_the_package(yolov8n_pt, monkeypatch):
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import now raises ImportError
    with pytest.raises(MissingDependencyError, match="pip install ultralytics"):
        load_for_export("yolo", yolov8n_pt, trust=True)
