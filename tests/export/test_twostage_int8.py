"""INT8 for two-stage graphs through the existing calibration: real exports, real ONNX Runtime.

What must hold: the convolutions and the box head read int8 (Q/DQ), the RPN decode, top-k, NMS
and RoI level assignment stay float (RoI Align's ``rois`` are float boxes), and on a model with
trained outputs (the tiny Mask R-CNN of :mod:`twostage_tiny`) the int8 detections and masks match
the fp32 ones.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgecv.calibration import quantize
from edgecv.errors import DatasetError
from edgecv.export.onnx_export import set_metadata
from edgecv.export.twostage import trace_graph, twostage_metadata
from edgecv.export.twostage_fidelity import check_images, mask_iou, pairs
from edgecv.models.tv_twostage import TwoStageConfig, TwoStageGraph
from edgecv.runtimes import Predictor

sys.path.insert(0, str(Path(__file__).parent))
from twostage_tiny import NAMES, SIZE, load_tiny  # noqa: E402

COCO_TO_SHAPES = "circle=person,square=car,triangle=dog,star=cat,cross=bird"
#: int8 vs fp32 on the tiny trained model (its class scores are still low: ~0.1, hence the threshold):
#: fp32 detections scoring >= CONF + MARGIN (clear of the threshold, which int8's score error of ~0.002
#: would otherwise cross) must be found again in int8 (same class, IoU >= 0.7) for >= 90 %; their
#: masks (pasted into the image by the runtime) agree at mean IoU >= 0.95, their scores within 0.01.
CONF, MARGIN = 0.08, 0.02
INT8_MATCH_SHARE = 0.9
INT8_MATCH_IOU = 0.7
INT8_MASK_IOU = 0.95
INT8_SCORE_DIFF = 0.01


def producers(graph: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.graph.node for out in node.output}


def reads_dequantized(node: onnx.NodeProto, made_by: dict[str, onnx.NodeProto], position: int) -> bool:
    source = made_by.get(node.input[position]) if position < len(node.input) else None
    return source is not None and source.op_type == "DequantizeLinear"


def assert_float_regions(graph: onnx.ModelProto) -> None:
    """Convs read int8; NMS, TopK and RoI Align's boxes read float; nothing is quantized after NMS."""
    made_by = producers(graph)
    ops = [n for n in graph.graph.node]
    convs = [n for n in ops if n.op_type == "Conv"]
    assert convs and all(reads_dequantized(n, made_by, 0) and reads_dequantized(n, made_by, 1) for n in convs)
    assert all(reads_dequantized(n, made_by, 0) for n in ops if n.op_type == "Gemm")  # the box head
    for node in ops:
        if node.op_type in ("NonMaxSuppression", "TopK"):
            assert not any(reads_dequantized(node, made_by, i) for i in range(len(node.input))), node.name
        if node.op_type in ("RoiAlign", "MaxRoiPool"):
            assert not reads_dequantized(node, made_by, 1), node.name  # rois: float boxes
    assert [n.op_type for n in ops].count("NonMaxSuppression") == 2


def test_cli_int8_export_of_a_coco_named_faster_rcnn(tmp_path) -> None:
    """``edgecv export fasterrcnn_mobilenet_v3_large_320_fpn --int8 --class-map ...``: the COCO-named
    head is compared on the synthetic shapes through the class map; without it, a one-line error
    before calibration."""
    out = tmp_path / "model.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "edgecv.cli", "export", "fasterrcnn_mobilenet_v3_large_320_fpn", "--imgsz", "128",
         "--max-det", "10", "--no-check", "--out", str(out), "--int8", "--calib-samples", "8", "--eval-count", "4",
         "--class-map", COCO_TO_SHAPES], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Expected bias" not in done.stdout + done.stderr  # shared initializers are unshared before emitting
    int8_path = tmp_path / "model_int8_onnxruntime.onnx"
    assert_float_regions(onnx.load(int8_path))
    with Predictor(out, backend="onnxruntime") as predictor:  # the fp32 graph the CLI named
        assert predictor.metadata.model_family == "fasterrcnn_mobilenet_v3_large_320_fpn"
        assert predictor.metadata.max_det == 10 and predictor.metadata.class_names[1] == "person"
    with Predictor(int8_path, backend="onnxruntime") as predictor:
        meta = predictor.metadata
        assert meta.precision == "int8" and meta.accuracy["class_map"]["circle"] == "person"
        assert meta.accuracy["eval_images"] == 4 and "map50_95" in meta.accuracy["int8"]
        result = predictor(check_images(128, count=1)[0])
        assert (result.boxes >= 0).all() and (result.boxes <= 128).all()
    with pytest.raises(DatasetError, match="--class-map"):
        quantize(out, out_path=tmp_path / "again.onnx", samples=8, evaluate=True, cache=False)
    assert not (tmp_path / "again.onnx").exists()


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny trained Mask R-CNN exported (fp32, 128 px, batch 1) and its int8 graph (32 synthetic
    calibration images, percentile)."""
    folder = tmp_path_factory.mktemp("tiny_int8")
    cfg = TwoStageConfig(imgsz=SIZE, max_det=20, conf=CONF, iou=0.5)
    graph = trace_graph(TwoStageGraph(load_tiny(cfg.conf, cfg.iou, cfg.max_det), cfg).eval(), 1)
    meta = twostage_metadata("maskrcnn_mobilenet_v3_large_fpn", cfg, 1, NAMES, "tests/data/tiny_maskrcnn_shapes.pt")
    meta.model_family = "tiny_maskrcnn (tests)"
    set_metadata(graph, meta)
    fp32 = folder / "model.onnx"
    onnx.save(graph, fp32)
    return fp32, quantize(fp32, samples=32, cache=False).path


def test_int8_mask_rcnn_matches_fp32_on_a_trained_model(tiny_pair) -> None:
    """See :data:`INT8_MATCH_SHARE`: over a non-trivial count of fp32 detections (>= 20)."""
    fp32, int8 = tiny_pair
    assert_float_regions(onnx.load(int8))
    found = matched = 0
    ious: list[float] = []
    score_diffs: list[float] = []
    images = check_images(SIZE, count=8) + check_images((96, SIZE), count=2)
    with Predictor(fp32, backend="onnxruntime") as ref, Predictor(int8, backend="onnxruntime") as got:
        assert got.metadata.precision == "int8" and got.metadata.task == "segment"
        for image in images:
            a, b = ref(image), got(image)
            clear = a.scores >= CONF + MARGIN
            found += int(clear.sum())
            hits = [(i, j) for i, j in pairs(a.boxes, a.class_ids, b.boxes, b.class_ids, INT8_MATCH_IOU) if clear[i]]
            matched += len(hits)
            dense_a, dense_b = a.masks.dense(), b.masks.dense()
            ious += [mask_iou(dense_a[i], dense_b[j]) for i, j in hits]
            score_diffs += [abs(float(a.scores[i] - b.scores[j])) for i, j in hits]
        grey = got(np.full((SIZE, SIZE, 3), 128, np.uint8))
    assert found >= 20, f"only {found} fp32 detections: not a comparison"
    assert matched / found >= INT8_MATCH_SHARE, (matched, found)
    assert np.mean(ious) >= INT8_MASK_IOU, np.mean(ious)
    assert np.mean(score_diffs) <= INT8_SCORE_DIFF, np.mean(score_diffs)
    assert len(grey.masks) == len(grey)
