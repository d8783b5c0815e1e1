"""Two-stage export (Faster R-CNN FPN, Mask R-CNN): real torchvision models (seeded random weights,
nothing downloaded), real ONNX Runtime through the Predictor, compared with torchvision's own model."""

from __future__ import annotations

import collections
import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgecv.errors import ExportError, OptionError, UnknownModelError, WeightsError
from edgecv.export.onnx_export import set_metadata
from edgecv.export.twostage import export_twostage, trace_graph, twostage_metadata
from edgecv.export.twostage_fidelity import check_images, check_twostage
from edgecv.models import load_for_export
from edgecv.models.tv_twostage import TwoStageConfig, TwoStageGraph, class_names_for, seeded_random_model
from edgecv.runtimes import Predictor
from edgecv.runtimes.masks import InstanceMasks
from edgecv.runtimes.preprocess import preprocess_batch

FASTER = "fasterrcnn_mobilenet_v3_large_320_fpn"
MASK = "maskrcnn_mobilenet_v3_large_fpn"
SIZE = 192
CFG = TwoStageConfig(imgsz=SIZE, max_det=20, conf=0.05, iou=0.5, pre_nms_top_n=100, post_nms_top_n=50)


@pytest.fixture(scope="module")
def faster(tmp_path_factory) -> tuple[Path, dict, torch.nn.Module]:
    """Faster R-CNN saved as a torchvision state dict, loaded back through ``load_for_export`` and exported
    (batch 1) with the fidelity check: (artifact, report, torchvision model)."""
    folder = tmp_path_factory.mktemp("faster")
    model = seeded_random_model(FASTER, CFG)
    torch.save(model.state_dict(), folder / "weights.pt")
    detector = load_for_export("fasterrcnn", folder / "weights.pt")
    result = export_twostage(detector.extra["builder"], folder / "model.onnx", CFG, state=detector.extra["state"],
                             source=detector.source, class_names=detector.class_names)
    return result.path, result.fidelity, model


def test_faster_rcnn_matches_torchvision_through_the_predictor(faster) -> None:
    path, report, _ = faster
    assert report["status"] == "passed", report
    assert report["torch_dets"] >= 20 and report["matched_share"] >= 0.99  # a non-trivial count, not 0/0
    sizes = report["sizes"]  # two original sizes, the non-square one letterboxed, each compared
    assert set(sizes) == {f"{SIZE}x{SIZE}", f"{SIZE * 3 // 4}x{SIZE}"} and all(s["torch_dets"] > 0 for s in sizes.values())
    assert report["images"] == 8  # 4 + 1 grey at the side, 2 + 1 grey at 3/4 side (many, one, no objects)
    graph = onnx.load(path)
    assert not {"Loop", "If", "Scan"} & {n.op_type for n in graph.graph.node}
    assert [n.op_type for n in graph.graph.node].count("NonMaxSuppression") == 2  # RPN + second stage
    with Predictor(path, backend="onnxruntime") as predictor:
        assert predictor.metadata.task == "detect" and predictor.metadata.class_names[1] == "person"
        assert predictor.metadata.mean == [0.485, 0.456, 0.406] and predictor.metadata.color_order == "RGB"
        dets = predictor(check_images(SIZE)[0])
        assert len(dets) > 0 and dets.masks is None
        assert (dets.boxes >= 0).all() and (dets.boxes <= SIZE).all() and (dets.class_ids > 0).all()


def zero_detection_graph(model: torch.nn.Module, cfg: TwoStageConfig, builder: str, path: Path, batch: int) -> Path:
    """``model``'s graph with an RPN score threshold no objectness reaches: no proposal survives, so no
    detection either (the path an empty image takes), saved with its metadata at ``path``."""
    empty = copy.deepcopy(model)
    empty.rpn.score_thresh = 1.5
    graph = trace_graph(TwoStageGraph(empty, cfg).eval(), batch)
    set_metadata(graph, twostage_metadata(builder, cfg, batch, class_names_for(91), "test"))
    onnx.save(graph, path)
    return path


def test_zero_detections_do_not_crash(tmp_path, faster) -> None:
    """No proposal and no detection in a batch of two: num_dets 0, zero rows, an empty result."""
    _, _, model = faster
    path = zero_detection_graph(model, CFG, FASTER, tmp_path / "zero.onnx", 2)
    with Predictor(path, backend="onnxruntime") as predictor:
        tensor, _ = preprocess_batch(check_images(SIZE)[:2], predictor.metadata, batch_size=2)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        num, boxes, scores, classes = session.run(None, {"images": tensor})
        assert num.tolist() == [[0], [0]] and not boxes.any() and not scores.any() and not classes.any()
        results = predictor(check_images(SIZE)[:2])
        assert [len(r) for r in results] == [0, 0]


def test_graph_is_batched_node_count_independent_of_batch(faster) -> None:
    """The batch-4 graph is one batched graph: no Loop, exactly the batch-1 graph's nodes, and each
    image gets its batch-1 result."""
    path, _, model = faster
    graph = TwoStageGraph(model, CFG).eval()
    four = trace_graph(graph, 4)
    one = onnx.load(path)
    assert not {"Loop", "If", "Scan"} & {n.op_type for n in four.graph.node}
    assert collections.Counter(n.op_type for n in four.graph.node) == collections.Counter(
        n.op_type for n in one.graph.node)
    with Predictor(path, backend="onnxruntime") as predictor:
        meta = predictor.metadata
    images = check_images(SIZE)[:4]
    tensor, _ = preprocess_batch(images, meta, batch_size=4)
    batched = ort.InferenceSession(four.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": tensor})
    single = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in range(4):
        alone = single.run(None, {"images": tensor[b:b + 1]})
        n = int(alone[0][0, 0])
        assert n > 0 and int(batched[0][b, 0]) == n
        np.testing.assert_allclose(batched[1][b, :n], alone[1][0, :n], atol=1e-3)
        np.testing.assert_array_equal(batched[3][b, :n], alone[3][0, :n])


def test_mask_rcnn_masks_match_torchvision(tmp_path) -> None:
    """Mask R-CNN (torchvision's MaskRCNN on the MobileNetV3 FPN backbone): boxes matched and masks
    (pasted by the runtime from both sides' 28x28 grids) by mean IoU >= 0.98; InstanceMasks out."""
    cfg = TwoStageConfig(imgsz=SIZE, max_det=10, conf=0.05, iou=0.5, pre_nms_top_n=100, post_nms_top_n=30)
    model = seeded_random_model(MASK, cfg)
    result = export_twostage(MASK, tmp_path / "mask.onnx", cfg, state=model.state_dict())
    report = result.fidelity
    assert report["status"] == "passed", report
    assert report["torch_dets"] >= 20 and report["matched_share"] >= 0.99
    assert report["mask_pairs"] >= 20 and report["mask_iou_mean"] >= 0.98
    assert all(s["mask_pairs"] > 0 and s["mask_iou_mean"] >= 0.98 for s in report["sizes"].values())  # pasted back
    with Predictor(result.path, backend="onnxruntime") as predictor:
        assert predictor.metadata.task == "segment"
        image = check_images(SIZE)[0]
        dets = predictor(image[:, 16:])  # not square: letterboxed, masks pasted back into 192 x 176
        assert len(dets) > 0 and isinstance(dets.masks, InstanceMasks)
        assert dets.masks.dense().shape == (len(dets), SIZE, SIZE - 16)
    zero = zero_detection_graph(model, cfg, MASK, tmp_path / "zero.onnx", 1)
    outputs = ort.InferenceSession(str(zero), providers=["CPUExecutionProvider"]).run(
        None, {"images": np.zeros((1, 3, SIZE, SIZE), np.float32)})
    assert outputs[0].tolist() == [[0]] and outputs[4].shape == (1, 10, 28, 28) and not outputs[4].any()
    with Predictor(zero, backend="onnxruntime") as predictor:
        empty = predictor(image)
        assert len(empty) == 0 and isinstance(empty.masks, InstanceMasks) and len(empty.masks) == 0


def test_roi_pool_option_shows_its_cost(tmp_path, faster) -> None:
    """The RoI Pool graph against torchvision's RoI Align model: reported as informative, and it
    matches fewer detections than the RoI Align graph (quantised bins move the boxes)."""
    _, align_report, model = faster
    pool_cfg = TwoStageConfig(**{**CFG.__dict__, "pooler": "pool"})
    path = tmp_path / "pool.onnx"
    graph = trace_graph(TwoStageGraph(model, pool_cfg).eval(), 1)
    assert "MaxRoiPool" in {n.op_type for n in graph.graph.node}
    set_metadata(graph, twostage_metadata(FASTER, pool_cfg, 1, class_names_for(91), "test"))
    onnx.save(graph, path)
    report = check_twostage(model, path, pool_cfg, check_images(SIZE, count=2))
    assert report["status"].startswith("informative") and report["torch_dets"] >= 20
    assert report["matched_share"] < align_report["matched_share"]


def test_bad_inputs_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(OptionError, match="pooler"):
        TwoStageConfig(imgsz=64, pooler="max")
    with pytest.raises(UnknownModelError, match="expected one of"):
        export_twostage("fasterrcnn_vgg", tmp_path / "x.onnx")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pt"):
        load_for_export("maskrcnn", tmp_path / "bad.pt")
    torch.save({"backbone.body.0.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="cls_score"):
        load_for_export("fasterrcnn", tmp_path / "other.pt")
    with pytest.raises(ExportError, match="multiple of 32"):
        export_twostage(FASTER, tmp_path / "x.onnx", TwoStageConfig(imgsz=200))


def test_dynamic_is_refused_in_one_line(tmp_path) -> None:
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    with pytest.raises(ExportError, match="--dynamic: expected a static input"):
        export_model("fasterrcnn", out=tmp_path / "d.onnx", opts=ExportOptions(dynamic=True, check=False))
