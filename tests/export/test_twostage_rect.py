"""Non-square static two-stage exports (``edgecv export maskrcnn_tiny --imgsz 320x256``).

One real ``edgecv export maskrcnn_tiny --imgsz 320x256 --int8 --target openvino`` of the shipped tiny
Mask R-CNN (module fixture, through the CLI: fidelity check on -- torchvision's own model vs the ONNX
graph in ONNX Runtime --, then calibration and the fp32 vs int8 mAP on scenes of 256x320) is shared
by the metadata, predictor (16:9 frames, masks at the frame's size, the PyTorch reference predictor
at the same H x W) and int8 / OpenVINO rows; a side that is not a multiple of 32 fails in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecv.calibration.sources import CalibrationWarning
from edgecv.cli import app
from edgecv.data.synthetic import ShapesDataset
from edgecv.export.twostage_fidelity import pairs
from edgecv.models.maskrcnn_tiny import demo_weights_path
from edgecv.runtimes import Predictor

pytestmark = pytest.mark.skipif(not demo_weights_path().is_file(), reason="no shipped tiny Mask R-CNN weights")
runner = CliRunner()
W, H = 320, 256  # 5:4 at 320 wide: 80 % of the 320x320 square's pixels
#: Score threshold of the export: the demo model's scores on busy scenes are spread; at 0.05 the
#: default check images give >= 20 torchvision detections, so the fidelity check compares (not "not compared").
CONF = 0.05
#: Share of the scenes' objects found (right class, IoU >= 0.5) on 16:9 frames: 18/18 on these four
#: (fp32 and OpenVINO int8), 23/26 on six, for this export and the 320x320 square one alike.
RECALL = 0.75


@pytest.fixture(scope="module")
def rect_onnx(tmp_path_factory) -> Path:
    """The fp32 artifact; ``model_int8_openvino.onnx`` beside it (8 calibration scenes on purpose: speed)."""
    out = tmp_path_factory.mktemp("rect2stage") / "model.onnx"
    with pytest.warns(CalibrationWarning):  # 8 calibration samples, said so
        result = runner.invoke(app, ["export", "maskrcnn_tiny", "--imgsz", f"{W}x{H}", "--conf", str(CONF),
                                     "--out", str(out), "--int8", "--target", "openvino", "--calib-samples", "8",
                                     "--eval-count", "4"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return out


def _recall(predictor, scenes: ShapesDataset) -> tuple[int, int]:  # noqa: ANN001 (Predictor-like)
    """(objects found at IoU >= 0.5 with the right class, objects) over ``scenes``; every result's
    boxes inside the frame and its masks at the frame's own size."""
    found = total = 0
    for i in range(len(scenes)):
        sample = scenes[i]
        dets = predictor(sample.image)
        h, w = sample.image.shape[:2]
        assert dets.masks is not None and dets.masks.image_shape == (h, w) and len(dets.masks) == len(dets)
        assert np.all(dets.boxes >= -1)
        assert np.all(dets.boxes[:, [0, 2]] <= w + 1) and np.all(dets.boxes[:, [1, 3]] <= h + 1)
        total += len(sample.boxes)
        # + 1: the scenes count shapes from 0, Mask R-CNN's class 0 is the background
        found += len(pairs(sample.boxes, sample.class_ids + 1, dets.boxes, dets.class_ids, 0.5))
    return found, total


def test_rect_two_stage_metadata_and_fidelity(rect_onnx: Path) -> None:
    with Predictor(rect_onnx) as predictor:
        meta = predictor.metadata
    assert meta.input_shape == [1, 3, H, W] and meta.letterbox_size == [H, W] and meta.task == "segment"
    report = meta.fidelity
    assert report["passed"] and report["status"] == "passed", report  # compared, not merely "not failed"
    assert report["torch_dets"] >= 20 and report["matched_share"] >= 0.99 and report["mask_iou_mean"] >= 0.98
    assert set(report["sizes"]) == {f"{H}x{W}", f"{H * 3 // 4}x{W}"}  # its own H x W, and one with padded rows
    assert report["graph"]["imgsz"] == [H, W]  # TwoStageConfig: height first


def test_rect_two_stage_predictor_on_16_9_frames(rect_onnx: Path) -> None:
    """640x360 frames letterboxed into 320x256: boxes and masks back at 640x360, on the scenes'
    objects, and the PyTorch reference predictor (the traced module, letterboxed to the same H x W)
    gives the same detections."""
    from edgecv.export.twostage_predictor import predictor_for
    from edgecv.models.maskrcnn_tiny import load_tiny

    scenes = ShapesDataset("val", 4, (360, 640), seed=77)
    with Predictor(rect_onnx) as predictor:
        found, total = _recall(predictor, scenes)
        onnx_dets = [predictor(scenes[i].image) for i in range(len(scenes))]
    assert total > 10 and found / total >= RECALL, (found, total)
    reference = predictor_for(load_tiny(), imgsz=(H, W), conf=CONF, iou=0.45)
    assert reference.metadata.letterbox_size == [H, W]
    torch_dets = reference([scenes[i].image for i in range(len(scenes))])
    count = sum(max(len(a), len(b)) for a, b in zip(torch_dets, onnx_dets))
    matched = sum(len(pairs(a.boxes, a.class_ids, b.boxes, b.class_ids, 0.99)) for a, b in zip(torch_dets, onnx_dets))
    assert count > 10 and matched / count >= 0.99, (matched, count)


@pytest.mark.filterwarnings("ignore::edgecv.calibration.sources.CalibrationWarning")  # 8 samples on purpose
def test_rect_two_stage_int8_on_openvino(rect_onnx: Path) -> None:
    """The CLI's ``--int8``: calibrated and compared on scenes of the artifact's own H x W; on OpenVINO
    its detections still find the 16:9 scenes' objects."""
    from edgecv.calibration.sources import open_source
    from edgecv.evaluation import eval_size

    with Predictor(rect_onnx) as predictor:
        source = open_source("shapes", predictor.metadata, samples=8)
        assert eval_size(predictor.metadata) == (H, W)  # the fp32 vs int8 mAP scenes: not H x H squares
    assert next(iter(source.images())).shape == (H, W, 3)  # calibration scenes of the artifact's own shape
    int8 = rect_onnx.parent / "model_int8_openvino.onnx"
    with Predictor(int8, backend="openvino") as predictor:
        meta = predictor.metadata
        assert predictor.backend.name == "openvino" and meta.precision == "int8"
        assert meta.input_shape == [1, 3, H, W] and meta.letterbox_size == [H, W]
        assert meta.accuracy["eval_images"] == 4 and meta.accuracy["latency"]["input_size"] == [H, W]
        found, total = _recall(predictor, ShapesDataset("val", 4, (360, 640), seed=77))
    assert found / total >= RECALL - 0.1, (found, total)


@pytest.mark.parametrize("hw", [(H, W), (W, H)])
def test_torchvision_transform_is_an_identity_at_h_x_w(hw: tuple[int, int]) -> None:
    """build_torchvision's min_size / max_size = the short / long side: torchvision's own model (the
    fidelity check's reference) sees the runtime's H x W tensor unchanged, landscape or portrait."""
    import torch

    from edgecv.models.tv_twostage import TwoStageConfig, build_torchvision

    cfg = TwoStageConfig(imgsz=hw)
    assert cfg.hw == hw and TwoStageConfig(imgsz=(W, W)).imgsz == W  # a square pair is the int side
    model = build_torchvision("maskrcnn_tiny", cfg, 6)
    image = torch.randn(3, *hw)
    batch, _ = model.transform([image])
    assert batch.image_sizes == [hw] and torch.equal(batch.tensors[0], image)


def test_a_side_not_a_multiple_of_32_fails_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "maskrcnn_tiny", "--imgsz", "330x256", "--out", str(tmp_path / "m.onnx")],
                           terminal_width=300)
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if "--imgsz" in line]
    assert len(error) == 1 and "multiple of 32" in error[0] and "found 330x256" in error[0], result.output
    assert not (tmp_path / "m.onnx").exists()


def test_uint8_input_with_a_frame_on_the_rect_two_stage_artifact(rect_onnx: Path, tmp_path: Path) -> None:
    """``--input uint8 --frame 640x360`` on the 320x256 graph (what export_loaded runs after the float
    export): the in-graph letterbox targets H x W and every float detection comes back (IoU >= 0.99)."""
    import shutil

    from edgecv.export.twostage_uint8 import to_uint8_input

    out = tmp_path / "model.onnx"
    shutil.copy(rect_onnx, out)
    scenes = ShapesDataset("val", 3, (360, 640), seed=78)
    record = to_uint8_input(out, [scenes[i].image for i in range(len(scenes))], (640, 360))
    assert record["total"] > 5 and record["matched"] == record["total"], record
    with Predictor(out) as predictor:
        assert predictor.metadata.input_shape == [1, 360, 640, 3] and predictor.metadata.letterbox_size == [H, W]
        dets = predictor(scenes[0].image)
    assert len(dets) and dets.masks.image_shape == (360, 640)
