"""The calibrate command (thin layer over quantize)."""

from __future__ import annotations

from typer.testing import CliRunner

from edgecv.cli import app


def test_calibrate_command(model_copy):
    runner = CliRunner()
    result = runner.invoke(app, ["calibrate", str(model_copy), "--samples", "4", "--target", "tensorrt",
                                 "--method", "minmax"])
    assert result.exit_code == 0, result.output
    assert (model_copy.parent / "model_int8.onnx").is_file() and (model_copy.parent / "model.calib.json").is_file()
    again = runner.invoke(app, ["calibrate", str(model_copy.parent / "model_int8.onnx")])
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
    assert out.is_file() and (tmp_path / "model_int8.onnx").is_file() and (tmp_path / "model_fp16.onnx").is_file()
    assert "int8" in result.output and "mAP50-95" in result.output  # the accuracy cost is reported
    assert (tmp_path / "model_int8_per_class.png").is_file()


def test_eval_shows_recorded_comparison(model_copy):
    from edgecv.calibration import quantize

    int8 = quantize(model_copy, samples=4, evaluate=True, eval_count=4).path
    result = CliRunner().invoke(app, ["eval", str(int8), "--count", "4"])
    assert result.exit_code == 0, result.output
    assert "fp32 vs int8 recorded" in result.output
