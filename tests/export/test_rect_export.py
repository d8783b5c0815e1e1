"""Non-square static exports (``edgecv export --imgsz WxH``, ``ExportOptions.imgsz=(w, h)``).

One real export of the demo YOLO at W=320, H=192 (module fixture, fidelity check on) is shared by
the metadata, predictor, calibration / OpenVINO, info, benchmark and TensorRT-plan rows; a tiny
U-Net covers the semantic exporter; bad sizes fail before any trace. Two-stage graphs at W x H:
tests/export/test_twostage_rect.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.data.synthetic import ShapesDataset
from edgecv.errors import ExportError
from edgecv.export.api import export_model
from edgecv.export.fidelity import box_iou
from edgecv.export.onnx_export import ExportOptions, check_imgsz, export_hw, parse_imgsz
from edgecv.runtimes.predictor import Predictor

runner = CliRunner()
W, H = 320, 192  # 16:9-ish camera at 320 wide: 60 % of the 320x320 square's pixels


@pytest.fixture(scope="module")
def rect_onnx(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rect") / "model.onnx"
    return export_model("yolo", out=out, opts=ExportOptions(imgsz=(W, H)), warn_stale=False).path


def test_size_helpers_width_first() -> None:
    assert export_hw(640) == (640, 640)
    assert export_hw((640, 384)) == (384, 640)  # (width, height) in, (h, w) out
    assert parse_imgsz("640") == 640 and parse_imgsz("640x384") == (640, 384) and parse_imgsz(None) is None
    assert check_imgsz((640, 384), 32) == (384, 640)
    with pytest.raises(ExportError, match=r"multiple of 32.*found 330x192"):
        check_imgsz((330, 192), 32)
    with pytest.raises(ExportError, match="found 'abc'"):
        parse_imgsz("abc")
    with pytest.raises(ExportError, match=r"found \(0, 192\)"):
        export_hw((0, 192))


def test_rect_metadata_and_fidelity(rect_onnx: Path) -> None:
    with Predictor(rect_onnx) as predictor:
        meta = predictor.metadata
    assert meta.input_shape == [1, 3, H, W]
    assert meta.letterbox_size == [H, W]
    report = meta.fidelity
    assert report["passed"] and list(report["sizes"]) == [f"{H}x{W}"]  # checked at H x W, not a square
    assert report["sizes"][f"{H}x{W}"]["torch_dets"] > 0 and report["sizes"][f"{H}x{W}"]["matched"] >= 0.99


def _recall(predictor: Predictor, scenes: ShapesDataset, iou: float = 0.5) -> tuple[int, int]:
    """(ground-truth objects found at IoU >= ``iou`` with the right class, objects) over ``scenes``."""
    found = total = 0
    for i in range(len(scenes)):
        sample = scenes[i]
        dets = predictor(sample.image)
        h, w = sample.image.shape[:2]
        assert np.all(dets.boxes >= -1) and np.all(dets.boxes[:, [0, 2]] <= w + 1) and np.all(dets.boxes[:, [1, 3]] <= h + 1)
        total += len(sample.boxes)
        if len(dets) and len(sample.boxes):
            overlap = box_iou(sample.boxes, dets.boxes) * (sample.class_ids[:, None] == dets.class_ids[None, :])
            found += int(np.sum(overlap.max(axis=1) >= iou))
    return found, total


def test_predictor_on_a_16_9_frame_finds_the_scene_objects(rect_onnx: Path) -> None:
    """640x360 frames letterboxed into 320x192 (no padding rows to speak of): boxes come back in
    original pixels, on the objects the scenes hold."""
    scenes = ShapesDataset("val", 6, (360, 640), seed=77)
    with Predictor(rect_onnx) as predictor:
        found, total = _recall(predictor, scenes)
    assert total > 10 and found / total >= 0.7, (found, total)


@pytest.mark.filterwarnings("ignore::edgecv.calibration.sources.CalibrationWarning")  # 8 samples on purpose
def test_int8_calibration_of_the_rect_artifact_runs_on_openvino(rect_onnx: Path, tmp_path: Path) -> None:
    from edgecv.calibration import quantize
    from edgecv.calibration.sources import open_source

    with Predictor(rect_onnx) as predictor:
        source = open_source("shapes", predictor.metadata, samples=8)
    assert next(iter(source.images())).shape == (H, W, 3)  # scenes of the artifact's own shape
    from edgecv.evaluation import eval_size

    assert eval_size(predictor.metadata) == (H, W)  # the fp32-vs-int8 mAP draws them too, not H x H squares
    result = quantize(rect_onnx, tmp_path / "int8.onnx", samples=8, target="openvino", cache=False)
    assert result.metadata.input_shape == [1, 3, H, W]
    scenes = ShapesDataset("val", 4, (360, 640), seed=77)
    with Predictor(result.path, backend="openvino") as predictor:
        assert predictor.backend.name == "openvino"
        found, total = _recall(predictor, scenes)
    assert found / total >= 0.5, (found, total)


def test_info_benchmark_and_trt_profile_follow_h_and_w(rect_onnx: Path, tmp_path: Path) -> None:
    from edgecv.export.tensorrt_plan import plan_build
    from edgecv.runtimes.benchmark import benchmark

    info = runner.invoke(app, ["info", str(rect_onnx)], terminal_width=200)
    assert info.exit_code == 0, info.output
    assert f"[1, 3, {H}, {W}]" in info.output and f"[{H}, {W}]" in info.output
    result = benchmark(rect_onnx, backend="onnxruntime", warmup=1, iters=2)
    assert result.input_size == [H, W] and result.frame_size == [W, H]
    plan = plan_build(rect_onnx, tmp_path / "m.engine")
    assert [tuple(s) for s in (plan.profiles[0].min, plan.profiles[0].opt, plan.profiles[0].max)] == [(1, 3, H, W)] * 3


@pytest.mark.parametrize("size, found", [("330x192", "found 330x192"), ("0x192", "found '0x192'"),
                                         ("abc", "found 'abc'")])
def test_cli_bad_sizes_fail_in_one_line(size: str, found: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "yolo", "--imgsz", size, "--out", str(tmp_path / "m.onnx")],
                           terminal_width=300)
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if "--imgsz" in line]
    assert len(error) == 1 and found in error[0] and "expected" in error[0], result.output
    assert not (tmp_path / "m.onnx").exists()


def test_semantic_export_at_a_non_square_size(tmp_path: Path) -> None:
    from edgecv.models.checkpoint import save_checkpoint
    from edgecv.models.tv_segmentation import perturb_batchnorm
    from edgecv.models.unet import TINY_WIDTH, UNet, UNetConfig

    torch.manual_seed(0)
    model = perturb_batchnorm(UNet(UNetConfig(6, TINY_WIDTH, 4)))
    names = ["background", "circle", "square", "triangle", "star", "cross"]
    ckpt = save_checkpoint(tmp_path / "u.pt", family="unet", config=model.config.to_dict(), class_names=names,
                           imgsz=64, state_dict=model.state_dict(), half=False)
    result = export_model("unet", ckpt, tmp_path / "u.onnx", ExportOptions(imgsz=(96, 64)), warn_stale=False)
    assert result.metadata.input_shape == [1, 3, 64, 96] and result.metadata.letterbox_size == [64, 96]
    assert result.fidelity["passed"]
    with Predictor(result.path) as predictor:
        out = predictor(np.full((90, 160, 3), 127, np.uint8))
    assert out.labels.shape == (90, 160)  # back at the frame's own size
    from edgecv.evaluation import eval_size
    from edgecv.evaluation_semantic import evaluate_semantic_artifact

    assert eval_size(result.metadata) == (64, 96)  # mIoU scenes shaped like the export's frames
    score = evaluate_semantic_artifact(result.path, count=4)
    assert 0.0 <= score.miou <= 1.0 and score.images == 4


def test_uint8_input_with_a_frame_on_the_rect_artifact(rect_onnx: Path, tmp_path: Path) -> None:
    """``--input uint8 --frame 640x360`` on a 320x192 graph: the in-graph letterbox targets H x W and
    the detections equal the float artifact's (same frames, IoU >= 0.99, same class)."""
    from edgecv.export.fidelity import match_detections
    from edgecv.export.uint8_input import export_uint8_input

    framed = export_uint8_input(rect_onnx, tmp_path / "framed.onnx", frame_wh=(640, 360))
    scenes = ShapesDataset("val", 4, (360, 640), seed=78)
    matched = count = 0
    with Predictor(rect_onnx) as float_predictor, Predictor(framed) as uint8_predictor:
        assert uint8_predictor.metadata.input_shape == [1, 360, 640, 3]
        assert uint8_predictor.metadata.letterbox_size == [H, W]
        for i in range(len(scenes)):
            ref, got = float_predictor(scenes[i].image), uint8_predictor(scenes[i].image)
            count += max(len(ref), len(got))
            matched += match_detections(ref.boxes, ref.class_ids, got.boxes, got.class_ids)
    assert count > 0 and matched / count >= 0.95, (matched, count)
