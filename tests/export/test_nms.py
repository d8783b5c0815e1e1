"""Tests for edgecv.export.nms: the appended ONNX NMS subgraph run in ONNX Runtime (CPU)
against nms_reference and torchvision.ops.batched_nms."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from onnx import TensorProto, helper

from edgecv.errors import ExportError
from edgecv.export.nms import (
    DEFAULT_MAX_CANDIDATES, NMS_OUTPUTS, NMS_PREFIX, TENSORRT_NMS_MAX_BOXES, TENSORRT_TOPK_MAX, append_nms,
)
from edgecv.export.nms_reference import nms_reference

IOU, CONF = 0.45, 0.25


def identity_model(opset: int = 17, num_classes: int | str = 4, *, box_dims=("B", "N", 4), score_dims=None):
    """Graph inputs in_boxes/in_scores -> Identity -> outputs raw_boxes/raw_scores (symbolic B, N)."""
    score_dims = score_dims or ("B", "N", num_classes)
    nodes = [
        helper.make_node("Identity", ["in_boxes"], ["raw_boxes"], name="id_boxes"),
        helper.make_node("Identity", ["in_scores"], ["raw_scores"], name="id_scores"),
    ]
    graph = helper.make_graph(
        nodes,
        "raw_detector",
        [
            helper.make_tensor_value_info("in_boxes", TensorProto.FLOAT, list(box_dims)),
            helper.make_tensor_value_info("in_scores", TensorProto.FLOAT, list(score_dims)),
        ],
        [
            helper.make_tensor_value_info("raw_boxes", TensorProto.FLOAT, list(box_dims)),
            helper.make_tensor_value_info("raw_scores", TensorProto.FLOAT, list(score_dims)),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run(sess, boxes, scores):
    return sess.run(None, {"in_boxes": boxes, "in_scores": scores})


def clustered(rng, batch: int, n: int, num_classes: int, clusters: int = 6, size: float = 640.0):
    """Boxes jittered around a few cluster centres (heavy overlap), float32 scores in [0, 1)."""
    centres = rng.uniform(40, size - 40, (batch, clusters, 2))
    halves = rng.uniform(10, 40, (batch, clusters, 2))
    which = rng.integers(0, clusters, (batch, n, 1))
    centre = np.take_along_axis(centres, which, axis=1) + rng.normal(0, 3, (batch, n, 2))
    half = np.take_along_axis(halves, which, axis=1) * rng.uniform(0.8, 1.25, (batch, n, 2))
    boxes = np.concatenate([centre - half, centre + half], axis=-1).astype(np.float32)
    scores = (rng.uniform(0, 1, (batch, n, num_classes)) ** 2).astype(np.float32)
    return boxes, scores


def assert_same(got, ref):
    """Exact equality of the four contract tensors, dtypes included."""
    for name, g, r in zip(NMS_OUTPUTS, got, ref):
        assert g.dtype == r.dtype, f"{name}: dtype {g.dtype} != {r.dtype}"
        assert g.shape == r.shape, f"{name}: shape {g.shape} != {r.shape}"
        np.testing.assert_array_equal(g, r, err_msg=name)


def batched_nms_rows(boxes, scores, max_det, iou=IOU, conf=CONF):
    """Independent check of one image via torchvision.ops.batched_nms: sorted (x1,y1,x2,y2,score,class) rows."""
    n_idx, c_idx = np.nonzero(scores > np.float32(conf))
    cand_scores = torch.from_numpy(scores[n_idx, c_idx])
    keep = torchvision.ops.batched_nms(
        torch.from_numpy(boxes[n_idx]), cand_scores, torch.from_numpy(c_idx), iou
    ).numpy()[:max_det]
    rows = [(*boxes[n_idx[k]].tolist(), float(scores[n_idx[k], c_idx[k]]), int(c_idx[k])) for k in keep]
    return sorted(rows)


def contract_rows(num, boxes, scores, classes, b):
    k = int(num[b, 0])
    return sorted((*boxes[b, i].tolist(), float(scores[b, i]), int(classes[b, i])) for i in range(k))


# ----------------------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("batch", [1, 3])
def test_matches_reference_on_clustered_boxes(opset, batch):
    rng = np.random.default_rng(opset * 10 + batch)
    boxes, scores = clustered(rng, batch, 300, 5)
    if batch == 3:
        scores[1] *= 0.4  # fewer detections in item 1 ...
        scores[2, :, 1:] = 0.0  # ... and only class 0 in item 2
    model = append_nms(identity_model(opset, 5), max_det=50, iou_threshold=IOU, conf_threshold=CONF)
    got = run(session(model), boxes, scores)
    ref = nms_reference(boxes, scores, max_det=50, iou_threshold=IOU, conf_threshold=CONF)
    assert_same(got, ref)
    num = got[0][:, 0]
    assert (num > 0).all() and (num < 50).all()
    if batch == 3:
        assert len(set(num.tolist())) == 3, f"expected different detection counts per item, got {num}"
    for b in range(batch):
        assert contract_rows(*got, b) == batched_nms_rows(boxes[b], scores[b], 50)
        k = num[b]
        assert np.all(np.diff(got[2][b, :k]) <= 0), "scores not sorted descending"
        assert not got[1][b, k:].any() and not got[2][b, k:].any() and not got[3][b, k:].any(), "padding not zero"


def test_dynamic_n_and_batch_through_one_model():
    sess = session(append_nms(identity_model(17, 3), max_det=30))
    rng = np.random.default_rng(1)
    for batch, n in ((1, 64), (2, 900), (4, 7)):
        boxes, scores = clustered(rng, batch, n, 3)
        got = run(sess, boxes, scores)
        assert_same(got, nms_reference(boxes, scores, max_det=30, iou_threshold=IOU, conf_threshold=CONF))


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("n", [0, 50])
def test_no_candidate_above_threshold_gives_zeros(opset, n):
    rng = np.random.default_rng(2)
    boxes, scores = clustered(rng, 2, n, 4)
    scores = np.minimum(scores, np.float32(CONF))  # every score <= conf
    got = run(session(append_nms(identity_model(opset, 4), max_det=10)), boxes, scores)
    assert got[0].tolist() == [[0], [0]]
    assert [a.shape for a in got] == [(2, 1), (2, 10, 4), (2, 10), (2, 10)]
    assert not any(a.any() for a in got)
    assert_same(got, nms_reference(boxes, scores, max_det=10, iou_threshold=IOU, conf_threshold=CONF))


def test_truncation_keeps_highest_scores():
    n = 40
    x = np.arange(n, dtype=np.float32) * 20  # disjoint boxes: nothing is suppressed
    boxes = np.stack([x, np.zeros(n), x + 10, np.full(n, 10)], axis=-1).astype(np.float32)[None]
    scores = np.random.default_rng(3).permutation(np.linspace(0.3, 0.99, n)).astype(np.float32)[None, :, None]
    got = run(session(append_nms(identity_model(17, 1), max_det=8)), boxes, scores)
    best = np.argsort(-scores[0, :, 0])[:8]
    assert got[0].tolist() == [[8]]
    np.testing.assert_array_equal(got[2][0], scores[0, best, 0])
    np.testing.assert_array_equal(got[1][0], boxes[0, best])
    assert_same(got, nms_reference(boxes, scores, max_det=8, iou_threshold=IOU, conf_threshold=CONF))


def test_truncation_across_classes_and_per_class_cap():
    """One class alone has more survivors than max_det; the top max_det across classes wins."""
    rng = np.random.default_rng(4)
    x = np.arange(60, dtype=np.float32) * 20
    boxes = np.stack([x, np.zeros(60), x + 10, np.full(60, 10)], axis=-1).astype(np.float32)[None]
    scores = rng.uniform(0.3, 1.0, (1, 60, 3)).astype(np.float32)
    got = run(session(append_nms(identity_model(17, 3), max_det=25)), boxes, scores)
    assert got[0].tolist() == [[25]]
    np.testing.assert_array_equal(got[2][0], np.sort(scores.ravel())[::-1][:25])
    assert_same(got, nms_reference(boxes, scores, max_det=25, iou_threshold=IOU, conf_threshold=CONF))


def test_conf_threshold_is_strict():
    boxes = np.array([[[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]], np.float32)
    conf = np.float32(CONF)
    above = np.nextafter(conf, np.float32(1))
    scores = np.array([[[conf], [above], [np.nextafter(conf, np.float32(0))]]], np.float32)
    got = run(session(append_nms(identity_model(17, 1), max_det=5, conf_threshold=CONF)), boxes, scores)
    assert got[0].tolist() == [[1]]
    np.testing.assert_array_equal(got[1][0, 0], boxes[0, 1])
    assert got[2][0, 0] == above
    assert_same(got, nms_reference(boxes, scores, max_det=5, iou_threshold=IOU, conf_threshold=CONF))


def test_iou_threshold_is_strict():
    # IoU of the first two boxes is exactly 0.5 (intersection 100, union 200); the third overlaps more.
    boxes = np.array([[[0, 0, 20, 10], [0, 0, 10, 10], [0, 0, 19, 10]]], np.float32)
    scores = np.array([[[0.9], [0.8], [0.7]]], np.float32)
    got = run(session(append_nms(identity_model(17, 1), max_det=5, iou_threshold=0.5)), boxes, scores)
    assert got[0].tolist() == [[2]]
    np.testing.assert_array_equal(got[1][0, :2], boxes[0, :2])
    assert_same(got, nms_reference(boxes, scores, max_det=5, iou_threshold=0.5, conf_threshold=CONF))


def test_class_aware_and_multi_label():
    """Identical boxes of different classes never suppress each other; one box may be kept per class."""
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11]]], np.float32)
    scores = np.array([[[0.9, 0.1], [0.1, 0.8], [0.7, 0.6]]], np.float32)
    got = run(session(append_nms(identity_model(17, 2), max_det=5)), boxes, scores)
    assert got[0].tolist() == [[2]]
    assert got[3][0, :2].tolist() == [0, 1]
    np.testing.assert_array_equal(got[2][0, :2], np.array([0.9, 0.8], np.float32))
    scores = np.array([[[0.9, 0.8], [0.0, 0.0], [0.0, 0.0]]], np.float32)
    got = run(session(append_nms(identity_model(17, 2), max_det=5)), boxes, scores)
    assert got[3][0, :2].tolist() == [0, 1]
    np.testing.assert_array_equal(got[1][0, 0], got[1][0, 1])


def test_equal_scores_ordered_like_reference():
    """Ties: ordered by class, then candidate index -- in the graph and in the reference."""
    x = np.arange(6, dtype=np.float32) * 20
    boxes = np.stack([x, np.zeros(6), x + 10, np.full(6, 10)], axis=-1).astype(np.float32)[None]
    scores = np.full((1, 6, 3), 0.5, np.float32)
    scores[0, 2:4] = 0.75  # duplicate overlapping boxes with tied scores too
    boxes[0, 3] = boxes[0, 2]
    got = run(session(append_nms(identity_model(17, 3), max_det=7)), boxes, scores)
    assert_same(got, nms_reference(boxes, scores, max_det=7, iou_threshold=IOU, conf_threshold=CONF))
    assert got[3][0].tolist() == [0, 1, 2, 0, 0, 0, 0]
    np.testing.assert_array_equal(got[1][0, 0], boxes[0, 2])  # lower index wins the tie


@pytest.mark.parametrize("max_candidates", [1, 25, 3840, None])
def test_max_candidates_preselection(max_candidates):
    rng = np.random.default_rng(5)
    boxes, scores = clustered(rng, 2, 200, 4)
    model = append_nms(identity_model(17, 4), max_det=40, conf_threshold=0.05, max_candidates=max_candidates)
    got = run(session(model), boxes, scores)
    kwargs = dict(max_det=40, iou_threshold=IOU, conf_threshold=0.05)
    assert_same(got, nms_reference(boxes, scores, max_candidates=max_candidates, **kwargs))
    if max_candidates is None or max_candidates >= 200:  # pre-selection of everything changes nothing
        assert_same(got, nms_reference(boxes, scores, **kwargs))
    else:
        assert (got[0] <= max_candidates * 4).all()


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
def test_graph_is_valid_and_outputs_declared(opset):
    source = identity_model(opset, 4)
    before = source.SerializeToString()
    model = append_nms(source, max_det=20, max_candidates=64)
    assert source.SerializeToString() == before, "input model was modified"
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert [o.name for o in inferred.graph.output] == list(NMS_OUTPUTS)
    declared = {
        o.name: (o.type.tensor_type.elem_type, [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim])
        for o in inferred.graph.output
    }
    assert declared == {
        "num_dets": (TensorProto.INT32, ["B", 1]),
        "boxes": (TensorProto.FLOAT, ["B", 20, 4]),
        "scores": (TensorProto.FLOAT, ["B", 20]),
        "classes": (TensorProto.INT32, ["B", 20]),
    }
    assert model.opset_import[0].version == opset
    new_nodes = model.graph.node[len(source.graph.node) :]
    assert all(node.name.startswith(NMS_PREFIX) for node in new_nodes)
    assert sum(node.op_type == "NonMaxSuppression" for node in new_nodes) == 1
    outputs = [o.type for o in session(model).get_outputs()]
    assert outputs == ["tensor(int32)", "tensor(float)", "tensor(float)", "tensor(int32)"]


def test_custom_output_names():
    model = identity_model(17, 2)
    for node, out in zip(model.graph.node, ("det_b", "det_s")):
        node.output[0] = out
    for value, out in zip(model.graph.output, ("det_b", "det_s")):
        value.name = out
    model = append_nms(model, boxes_output="det_b", scores_output="det_s", max_det=5)
    onnx.checker.check_model(model)
    boxes, scores = clustered(np.random.default_rng(6), 1, 30, 2)
    got = run(session(model), boxes, scores)
    assert_same(got, nms_reference(boxes, scores, max_det=5, iou_threshold=IOU, conf_threshold=CONF))


# ----------------------------------------------------------------------------------------- errors


def test_missing_output_names_expected_and_found():
    with pytest.raises(ExportError, match=r"'boxes_xyxy'.*found outputs \['raw_boxes', 'raw_scores'\]"):
        append_nms(identity_model(), boxes_output="boxes_xyxy")


@pytest.mark.parametrize(
    ("box_dims", "score_dims", "match"),
    [
        (("B", 4), None, r"'raw_boxes'.*expected rank 3.*found rank 2"),
        (("B", "N", 4), ("N", 4), r"'raw_scores'.*expected rank 3.*found rank 2"),
        (("B", "N", 5), None, r"expected last dim 4.*found 5"),
        ((2, 10, 4), (2, 11, 3), r"share dim N.*10 vs 11"),
    ],
)
def test_wrong_ranks_and_dims(box_dims, score_dims, match):
    with pytest.raises(ExportError, match=match):
        append_nms(identity_model(box_dims=box_dims, score_dims=score_dims))


def test_wrong_dtype_opset_and_double_append():
    model = identity_model()
    model.graph.output[1].type.tensor_type.elem_type = TensorProto.FLOAT16
    with pytest.raises(ExportError, match="expected dtype FLOAT.*found FLOAT16"):
        append_nms(model)
    with pytest.raises(ExportError, match="opset >= 13, found opset 12"):
        append_nms(identity_model(opset=12))
    appended = append_nms(identity_model())
    appended.graph.output.extend(
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("raw_boxes", "raw_scores")]
    )
    with pytest.raises(ExportError, match="NMS already appended"):
        append_nms(appended)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_det": 0}, {"max_det": 2.5}, {"iou_threshold": 1.5}, {"conf_threshold": -0.1}, {"max_candidates": 0},
     {"max_det": 3841}, {"max_candidates": 3841}],
)
def test_invalid_parameters(kwargs):
    with pytest.raises(ExportError, match="expected"):
        append_nms(identity_model(), **kwargs)
    params = {"max_det": 10, "iou_threshold": IOU, "conf_threshold": CONF, **kwargs}
    with pytest.raises(ExportError, match="expected"):
        nms_reference(np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 1), np.float32), **params)


def test_reference_rejects_bad_shapes():
    with pytest.raises(ExportError, match=r"found \(1, 3, 4\) and \(1, 2, 2\)"):
        nms_reference(np.zeros((1, 3, 4)), np.zeros((1, 2, 2)), max_det=5, iou_threshold=IOU, conf_threshold=CONF)


def test_module_imports_neither_onnx_nor_torch():
    root = Path(__file__).resolve().parents[2]
    code = "import sys, edgecv.export.nms; assert not {'torch', 'onnx', 'torchvision'} & set(sys.modules), sys.modules"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# ------------------------------------------------------------------------- TensorRT's TopK / NMS limits


def test_max_det_above_tensorrt_topk_limit_is_one_line_error():
    with pytest.raises(ExportError) as info:
        append_nms(identity_model(), max_det=5000)
    message = str(info.value)
    assert "\n" not in message
    assert f"expected max_det <= {TENSORRT_TOPK_MAX}" in message and "found 5000" in message


def topk_bounds(model) -> list[int | None]:
    """For each TopK of the appended subgraph, the largest k it can get (None when unbounded)."""
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
              if n.op_type == "Constant"}
    producers = {out: n for n in model.graph.node for out in n.output}
    bounds = []
    for node in model.graph.node:
        if node.op_type != "TopK":
            continue
        k = node.input[1]
        if k in consts:
            bounds.append(int(consts[k].max()))
        elif producers[k].op_type == "Min":  # min(N, cap): bounded by its constant operand
            bounds.append(min((int(consts[i].max()) for i in producers[k].input if i in consts), default=None))
        else:
            bounds.append(None)
    return bounds


def nms_input_count(model, image: np.ndarray) -> int:
    """How many candidates reach NonMaxSuppression, run in ONNX Runtime (its boxes input made an extra output)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    nms = next(n for n in probe.graph.node if n.op_type == "NonMaxSuppression")
    probe.graph.output.append(helper.make_empty_tensor_value_info(nms.input[0]))
    sess = session(probe)
    return int(sess.run([nms.input[0]], {sess.get_inputs()[0].name: image})[0].shape[1])


def demo_batch(size: int, count: int) -> np.ndarray:
    """``count`` synthetic validation scenes through the runtime's pre-processing for the demo YOLO: [count,3,size,size]."""
    from edgecv.evaluation import SyntheticCoco
    from edgecv.export.onnx_export import ExportOptions
    from edgecv.export.torch_predictor import TorchPredictor
    from edgecv.models import load_for_export
    from edgecv.runtimes.preprocess import preprocess_batch

    data = SyntheticCoco(count, size, seed=3)
    metadata = TorchPredictor(load_for_export("yolo"), ExportOptions(imgsz=size)).metadata
    return preprocess_batch([data.read(e) for e in data.gt["images"]], metadata, batch_size=count)[0]


@pytest.fixture(scope="module")
def demo_raw_640():
    """The demo YOLO's raw graph (boxes + scores, before NMS) traced at 640: 8,400 candidates."""
    from edgecv.export.onnx_export import ExportOptions, torch_to_onnx
    from edgecv.models import load_for_export

    detector = load_for_export("yolo")
    return torch_to_onnx(detector.module, ExportOptions(imgsz=640))


def test_default_graph_at_640_stays_within_tensorrt_limits(demo_raw_640):
    candidates = demo_raw_640.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    assert candidates == 8400
    image = demo_batch(640, 1)
    uncapped = append_nms(demo_raw_640, max_candidates=None, conf_threshold=0.001)
    assert nms_input_count(uncapped, image) == 8400  # what TensorRT would truncate
    for max_det in (100, TENSORRT_TOPK_MAX):
        model = append_nms(demo_raw_640, max_det=max_det, conf_threshold=0.001)
        bounds = topk_bounds(model)
        assert len(bounds) == 2 and all(b is not None and b <= TENSORRT_TOPK_MAX for b in bounds), bounds
    assert nms_input_count(model, image) == DEFAULT_MAX_CANDIDATES <= TENSORRT_NMS_MAX_BOXES
    num, boxes, _, _ = session(model).run(None, {"images": image})
    assert boxes.shape == (1, TENSORRT_TOPK_MAX, 4) and 0 < int(num[0, 0]) <= TENSORRT_TOPK_MAX


def test_dynamic_graph_topk_is_bounded():
    bounds = topk_bounds(append_nms(identity_model(17, 3), max_det=50))
    assert bounds == [DEFAULT_MAX_CANDIDATES, 50]
    assert topk_bounds(append_nms(identity_model(17, 3), max_det=50, max_candidates=None)) == [50]


def test_cap_that_does_not_bind_changes_no_detection():
    """The demo at 320 (2,100 candidates) through a dynamic-N graph: capped == uncapped, bit for bit."""
    from edgecv.export.onnx_export import ExportOptions, torch_to_onnx
    from edgecv.models import load_for_export

    detector = load_for_export("yolo")
    opts = ExportOptions(imgsz=320, dynamic=True, batch=1)
    raw = torch_to_onnx(detector.module, opts)
    assert raw.graph.output[0].type.tensor_type.shape.dim[1].dim_param  # symbolic N: the cap is in the graph
    capped = append_nms(raw, conf_threshold=0.001, iou_threshold=0.6)
    ops = [n.op_type for n in capped.graph.node[len(raw.graph.node):]]
    assert ops.index("TopK") < ops.index("NonMaxSuppression")  # the pre-selection is there, and runs
    uncapped = append_nms(raw, conf_threshold=0.001, iou_threshold=0.6, max_candidates=None)
    sessions = [session(m) for m in (capped, uncapped)]
    tensor = demo_batch(320, 4)
    got = [s.run(None, {"images": tensor}) for s in sessions]
    assert int(got[0][0].sum()) > 50, "expected detections to compare"
    assert_same(got[0], got[1])


# ------------------------------------------------------------------------ channel-first raw outputs


def transposed_model(opset: int = 17, num_classes: int = 4, batch: int | str = "B", n: int | str = "N",
                     materialised: bool = False):
    """Graph inputs cf_boxes [B,4,N] / cf_scores [B,C,N] -> Transpose(0,2,1) -> outputs raw_boxes / raw_scores,
    the form of a channel-first head (Ultralytics'). ``materialised``: an Identity behind each Transpose
    makes the outputs, so ``append_nms`` reads the transposed [B,N,X] tensors (its form for any other graph)."""
    nodes = []
    for role in ("boxes", "scores"):
        out = f"t_{role}" if materialised else f"raw_{role}"
        nodes.append(helper.make_node("Transpose", [f"cf_{role}"], [out], name=f"transpose_{role}", perm=[0, 2, 1]))
        if materialised:
            nodes.append(helper.make_node("Identity", [out], [f"raw_{role}"], name=f"id_{role}"))
    graph = helper.make_graph(
        nodes, "channel_first_detector",
        [helper.make_tensor_value_info("cf_boxes", TensorProto.FLOAT, [batch, 4, n]),
         helper.make_tensor_value_info("cf_scores", TensorProto.FLOAT, [batch, num_classes, n])],
        [helper.make_tensor_value_info("raw_boxes", TensorProto.FLOAT, [batch, n, 4]),
         helper.make_tensor_value_info("raw_scores", TensorProto.FLOAT, [batch, n, num_classes])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def tied(rng, batch: int, n: int, num_classes: int):
    """Clustered candidates, channel-first, with scores on a 1/16 grid and repeated boxes: many exact ties
    in the best-class score (pre-selection order) and within classes (NMS order)."""
    boxes, scores = clustered(rng, batch, n, num_classes)
    scores = np.floor(scores * 16) / 16
    boxes[:, 1::7] = boxes[:, 0:1]  # every 7th candidate repeats the first box
    return np.ascontiguousarray(boxes.transpose(0, 2, 1)), np.ascontiguousarray(scores.transpose(0, 2, 1))


@pytest.mark.parametrize("opset,dims,max_candidates", [
    (13, ("B", "N"), 64),   # pre-selection, symbolic shapes: offsets from the graph's Shape, k = min(N, cap)
    (18, (2, 300), 64),     # pre-selection, static shapes: constant offsets; ReduceMax axes as input
    (17, (1, 300), 64),     # pre-selection, batch 1: Gather along N, no offsets
    (17, (2, 300), 3840),   # N within the cap: no pre-selection, NMS reads the source scores
    (18, ("B", "N"), None),  # no cap
])
def test_channel_first_source_gives_the_same_detections_without_full_transposes(opset, dims, max_candidates, tmp_path):
    cf_boxes, cf_scores = tied(np.random.default_rng(opset), dims[0] if dims[0] == 1 else 2, 300, 5)
    kwargs = dict(max_det=60, conf_threshold=0.1, iou_threshold=IOU, max_candidates=max_candidates)
    direct = append_nms(transposed_model(opset, 5, *dims), **kwargs)
    onnx.checker.check_model(direct, full_check=True)
    transposes = [n for n in direct.graph.node if n.op_type == "Transpose"]
    assert [n.name for n in transposes] == [NMS_PREFIX + "boxes_bn4"], "a [B,C,N] tensor is still transposed"
    assert not any(n.op_type == "GatherND" and n.name.startswith(NMS_PREFIX + "pre/") for n in direct.graph.node)
    reference = append_nms(transposed_model(opset, 5, *dims, materialised=True), **kwargs)
    assert sum(n.op_type == "Transpose" for n in reference.graph.node) == 3  # the two of the model + scores_bcn
    feed = {"cf_boxes": cf_boxes, "cf_scores": cf_scores}
    got, ref = session(direct).run(None, feed), session(reference).run(None, feed)
    assert_same(got, ref)
    assert 10 < int(got[0].sum()) < 60 * len(cf_boxes), "expected detections (and room for ties) to compare"
    kept = got[2][got[2] > 0]
    assert len(np.unique(kept)) < len(kept), "expected tied scores among the detections"
    from edgecv.runtimes.onnx_graph import nms_class_count  # the runtime's reader finds C behind the new form

    onnx.save(direct, str(tmp_path / "direct.onnx"))
    assert nms_class_count(tmp_path / "direct.onnx") == 5


def test_transpose_read_elsewhere_or_not_transposing_stays():
    """A Transpose whose output another node reads, or of another perm, is kept: the [B,N,X] form is read."""
    model = transposed_model(17, 3)
    model.graph.node.append(helper.make_node("Identity", ["raw_scores"], ["extra"], name="reader"))
    model.graph.output.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["B", "N", 3]))
    appended = append_nms(model, max_det=10)
    assert "transpose_scores" in {n.name for n in appended.graph.node}  # read elsewhere: kept, scores_bcn used
    assert NMS_PREFIX + "scores_bcn" in {n.name for n in appended.graph.node}
    assert "transpose_boxes" not in {n.name for n in appended.graph.node}  # the boxes one is dead: dropped
    cf_boxes, cf_scores = tied(np.random.default_rng(2), 2, 120, 3)
    feed = {"cf_boxes": cf_boxes, "cf_scores": cf_scores}
    assert_same(session(appended).run(None, feed), session(append_nms(transposed_model(17, 3, materialised=True),
                                                                     max_det=10)).run(None, feed))


def test_channel_first_graph_runs_in_openvino():
    """OpenVINO compiles the channel-first pre-selection (flat Gather, symbolic shapes) and gives the detections
    it gives for the graph with the Transposes materialised (OpenVINO's own NMS breaks exact ties its own way)."""
    import openvino as ov

    kwargs = dict(max_det=60, conf_threshold=0.1, max_candidates=64)
    cf_boxes, cf_scores = tied(np.random.default_rng(9), 2, 300, 5)
    feed = {"cf_boxes": cf_boxes, "cf_scores": cf_scores}
    got = []
    for model in (append_nms(transposed_model(17, 5), **kwargs),
                  append_nms(transposed_model(17, 5, materialised=True), **kwargs)):
        core = ov.Core()
        compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU")
        result = compiled(feed)
        got.append([result[compiled.output(name)] for name in NMS_OUTPUTS])
    assert 20 < int(got[0][0].sum()) < 120
    for g, r in zip(*got):
        np.testing.assert_array_equal(g, r)


def materialise(raw: onnx.ModelProto) -> onnx.ModelProto:
    """``raw`` with an Identity behind each Transpose that makes a graph output: ``append_nms`` then reads the
    transposed ``[B,N,X]`` tensors, as it did before it learnt to read channel-first sources."""
    model = onnx.ModelProto()
    model.CopyFrom(raw)
    outputs = {o.name for o in model.graph.output}
    for node in list(model.graph.node):
        if node.op_type == "Transpose" and node.output[0] in outputs:
            name = node.output[0]
            node.output[0] = f"{name}_transposed"
            model.graph.node.append(helper.make_node("Identity", [node.output[0]], [name], name=f"{name}_identity"))
    return model


def test_ultralytics_yolov8n_at_640_loses_its_full_transposes_not_a_detection(tmp_path, monkeypatch):
    """A YOLOv8n built from Ultralytics' yaml (channel-first head, 80 classes, 8,400 candidates: pre-selected),
    exported as edgecv exports it: same detections as with the head's Transposes kept, and no Transpose of
    the [B, 4+80, N] head output or of the scores left in the graph."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")  # no update checks or downloads
    from ultralytics import YOLO

    from edgecv.export.onnx_export import ExportOptions, slim, torch_to_onnx
    from edgecv.models import load_for_export

    torch.manual_seed(0)
    yolo = YOLO("yolov8n.yaml")
    for module in yolo.model.modules():  # spread features and put scores near the threshold (random weights)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    for branch in yolo.model.model[-1].cv3:
        torch.nn.init.constant_(branch[-1].bias, -3.0)
    yolo.save(str(tmp_path / "v8n.pt"))
    detector = load_for_export("yolo", tmp_path / "v8n.pt", trust=True, class_names=[f"c{i}" for i in range(80)])
    raw = slim(torch_to_onnx(detector.module, ExportOptions(imgsz=640, batch=2)))
    kwargs = dict(conf_threshold=0.05, max_det=100)
    model, before = append_nms(raw, **kwargs), append_nms(materialise(raw), **kwargs)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    transposed = [shapes.get(n.input[0]) for n in model.graph.node if n.op_type == "Transpose"]
    assert [2, 4, DEFAULT_MAX_CANDIDATES] in transposed  # the pre-selected boxes, for NMS
    assert not [s for s in transposed if s and len(s) == 3 and s[2] == 8400], transposed  # no [B, X, N] transposed
    images = np.random.default_rng(0).random((2, 3, 640, 640), np.float32)
    got, ref = session(model).run(None, {"images": images}), session(before).run(None, {"images": images})
    assert int(got[0].sum()) > 50, "expected detections to compare"
    assert_same(got, ref)
    from edgecv.runtimes.onnx_graph import nms_class_count

    onnx.save(model, str(tmp_path / "model.onnx"))
    assert nms_class_count(tmp_path / "model.onnx") == 80
