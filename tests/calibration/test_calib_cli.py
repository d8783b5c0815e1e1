"""The calibrate command (thin layer over quantize)."""

from __future__ import annotations

import onnx
import pytest
from typer.testing import CliRunner

from edgecv.cli import app


def _target(path) -> str:
    from edgecv.calibration.api import read_metadata

    return read_metadata(onnx.load(str(path)), str(path)).calibration["target"]


def test_calibrate_names_the_graph_by_target(model_copy):
    runner = CliRunner()
    result = runner.invoke(app, ["calibrate", str(model_copy), "--samples", "4", "--target", "tensorrt",
                                 "--method", "minmax"])
    assert result.exit_code == 0, result.output
    trt = model_copy.parent / "model_int8_tensorrt.onnx"
    assert trt.is_file() and (model_copy.parent / "model.calib.json").is_file()
    # a second target beside it does not overwrite the first (cache hit: no recalibration)
    ort = runner.invoke(app, ["calibrate", str(model_copy), "--samples", "4", "--method", "minmax"])
    assert ort.exit_code == 0 and "cache hit" in ort.output
    assert _target(trt) == "tensorrt" and _target(model_copy.parent / "model_int8_onnxruntime.onnx") == "onnxruntime"
    again = runner.invoke(app, ["calibrate", str(trt)])
    assert again.exit_code == 2 and "already-quantized" in again.output


def test_calibrate_empty_folder(model_copy, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["calibrate", str(model_copy), "--data", str(empty)])
    assert result.exit_code == 2 and "expected image files" in " ".join(result.output.split())


def test_export_int8_and_fp16(tmp_path):
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(app, ["export", "yolo", "--imgsz", "160", "--no-check", "--out", str(out), "--int8",
                                      "--calib-samples", "4", "--target", "tensorrt", "--fp16",
                                      "--eval-count", "4"])
    assert result.exit_code == 0, result.output
    int8 = tmp_path / "model_int8_tensorrt.onnx"
    assert out.is_file() and int8.is_file() and (tmp_path / "model_fp16.onnx").is_file()
    assert not (tmp_path / "model_int8.onnx").exists()
    text = " ".join(result.output.split())
    assert "mAP in points" in text and "drop" in text  # the accuracy cost is reported, in points
    # a tensorrt-target graph is not timed on ONNX Runtime as if that meant something
    assert "latency not measured: tensorrt-target graph" in text and "not indicative" in text
    assert (tmp_path / "model_int8_tensorrt_per_class.png").is_file()
    assert f"wrote {tmp_path / 'model_int8_tensorrt_per_class.png'}" in text


def test_export_engine_checks_tensorrt_before_calibrating(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here: the early refusal cannot be observed")
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(app, ["export", "yolo", "--imgsz", "160", "--no-check", "--out", str(out), "--int8",
                                      "--calib-samples", "4", "--engine"])
    assert result.exit_code == 2 and "needs TensorRT" in result.output
    assert list(tmp_path.iterdir()) == []  # refused before the export and the calibration


def test_eval_shows_recorded_comparison(model_copy):
    from edgecv.calibration import quantize

    int8 = quantize(model_copy, samples=4, evaluate=True, eval_count=4).path
    result = CliRunner().invoke(app, ["eval", str(int8), "--count", "4"])
    assert result.exit_code == 0, result.output
    assert "fp32 vs int8 recorded" in result.output and "int8 (at calibration)" in result.output
    assert "bare onnxruntime call" in result.output  # the backend the latency was measured on


def test_recalibrating_without_evaluation_removes_the_old_reports(model_copy):
    from edgecv.calibration import quantize

    first = quantize(model_copy, samples=4, evaluate=True, eval_count=4)
    assert first.plot.is_file() and first.report.is_file()
    result = CliRunner().invoke(app, ["calibrate", str(model_copy), "--samples", "4", "--method", "minmax"])
    assert result.exit_code == 0, result.output
    assert not first.plot.exists() and not first.report.exists()  # they described the replaced graph
    assert f"removed {first.plot}" in " ".join(result.output.split())
