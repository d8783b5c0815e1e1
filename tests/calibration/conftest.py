"""Calibration fixtures: the demo YOLO exported small (160 px, no fidelity check) once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_onnx(tmp_path_factory) -> Path:
    """The demo YOLO at 160x160, batch 1, conf 0.1 (fp32, NMS in the graph)."""
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    out = tmp_path_factory.mktemp("calib_model") / "model.onnx"
    return export_model("yolo", out=out, opts=ExportOptions(imgsz=160, conf=0.1, check=False)).path


@pytest.fixture()
def model_copy(small_onnx, tmp_path) -> Path:
    """A private copy of :func:`small_onnx` (its own folder: cache and outputs land beside it)."""
    path = tmp_path / "model.onnx"
    shutil.copy(small_onnx, path)
    return path


@pytest.fixture(scope="session")
def quantized(small_onnx, tmp_path_factory) -> dict:
    """int8 graphs of :func:`small_onnx` for every target from one calibration (8 synthetic images)."""
    from edgecv.calibration import quantize

    folder = tmp_path_factory.mktemp("calib_out")
    cache = folder / "model.calib.json"
    return {target: quantize(small_onnx, folder / f"{target}.onnx", target=target, samples=8, cache=cache)
            for target in ("tensorrt", "onnxruntime", "openvino")}
