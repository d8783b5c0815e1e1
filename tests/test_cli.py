"""The command line, run in-process through typer's runner: real exports, real files."""

import importlib.util
import json
import re

import cv2
import pytest
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.data import ShapesDataset

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    ds = ShapesDataset("test", 3, 320, seed=11)
    for i in range(3):
        cv2.imwrite(str(folder / f"scene{i}.jpg"), ds[i].image)
    return folder


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("export", "predict", "eval", "train", "info"):
        assert command in result.output


def test_export_predict_info(tmp_path, images):
    out = tmp_path / "m.onnx"
    result = run("export", "yolo", "--out", out, "--max-det", 50)
    assert result.exit_code == 0, result.output
    assert "built-in demo weights" in result.output and "fidelity check passed" in result.output
    info = run("info", out, "--json")
    assert info.exit_code == 0 and '"max_det": 50' in info.output
    save = tmp_path / "pred"
    result = run("predict", out, "--source", images / "scene0.jpg", "--save", save)
    assert result.exit_code == 0, result.output
    assert (save / "scene0.jpg").is_file()
    lines = (save / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])


@pytest.mark.parametrize("args, message", [
    (("export", "resnet"), "unknown model 'resnet'"),
    (("export", "yolo", "--weights", "nope.pt"), "weights file not found"),
    (("export", "yolo", "--names", "a,b"), "trained for 5 classes"),
    (("export", "yolo", "--imgsz", "300"), "multiple of 32"),
])
def test_user_mistakes_exit_cleanly(args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_engine_without_tensorrt_names_the_extra(tmp_path):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    result = run("export", "yolo", "--imgsz", "160", "--engine", "--out", str(tmp_path / "m.onnx"))
    assert result.exit_code == 2 and "pip install edgecv[tensorrt]" in " ".join(result.output.split())
    assert not (tmp_path / "m.onnx").exists()  # refused before the export (and calibration), not after


def test_predict_rect_needs_a_dynamic_artifact(demo_onnx, images):
    result = run("predict", demo_onnx, "--source", images / "scene0.jpg", "--rect")
    assert result.exit_code == 2 and "--dynamic" in " ".join(result.output.split())


def test_predict_rejects_non_onnx_and_bad_images(tmp_path, demo_onnx):
    text = tmp_path / "notes.onnx"
    text.write_text("hello")
    result = run("predict", text, "--source", tmp_path)
    assert result.exit_code == 2 and "ONNX" in result.output
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    result = run("predict", demo_onnx, "--source", broken)
    assert result.exit_code == 2 and "broken.jpg" in " ".join(result.output.split())


def test_eval_of_artifact_and_weights(tmp_path, demo_onnx):
    out = tmp_path / "e.json"
    result = run("eval", demo_onnx, "--count", 16, "--json", out)
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    # the demo model scores ~0.9 mAP50-95 on this split: a broken pre/post-processing or box
    # mapping lands far below 0.6, which a range check [0, 1] would accept
    assert 0.6 < figures["map50_95"] <= figures["map50"] <= 1 and figures["images"] == 16
    assert figures["detections"] >= 16 and set(figures["per_class"]) == set(ShapesDataset.class_names)
    result = run("eval", "yolo", "--count", 16)
    assert result.exit_code == 0, result.output
    torch_map = float(re.search(r"mAP50-95 ([0-9.]+)", result.output).group(1))
    assert torch_map > 0.6
