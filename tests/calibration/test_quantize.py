"""Quantization end to end on the small demo model, with real ONNX Runtime sessions."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgecv.calibration import quantize
from edgecv.calibration.graph import COMPUTE_OPS, postprocess_nodes
from edgecv.calibration.openvino_form import PRESERVING
from edgecv.errors import QuantizationError
from edgecv.export.nms import NMS_PREFIX
from edgecv.runtimes import Predictor


def _zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[2]] for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]


#: int8 vs fp32 on the demo model (4 scenes at 160 px, ~30 detections): measured 28-29 of 30 matched at
#: IoU >= 0.9 for every target; the bar leaves room for calibration noise, not for a broken graph.
MATCH_IOU, MIN_MATCHED = 0.7, 0.85


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: (x[:, 2:] - x[:, :2]).clip(0).prod(1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def assert_same_boxes(ref: list, got: list) -> None:
    """Detections of ``got`` match ``ref`` one to one (same class, IoU >= MATCH_IOU) for >= MIN_MATCHED of
    the larger count, over >= 20 reference detections (a blank output cannot pass)."""
    matched = total = 0
    for a, b in zip(ref, got, strict=True):
        total += max(len(a), len(b))
        if not len(a) or not len(b):
            continue
        ious = _iou(a.boxes, b.boxes) * (a.class_ids[:, None] == b.class_ids[None, :])
        while ious.size and ious.max() >= MATCH_IOU:
            i, j = np.unravel_index(np.argmax(ious), ious.shape)
            matched, ious[i, :], ious[:, j] = matched + 1, -1, -1
    assert sum(len(a) for a in ref) >= 20, "too few reference detections for a meaningful comparison"
    assert matched >= MIN_MATCHED * total, f"{matched}/{total} detections matched (class + IoU >= {MATCH_IOU})"


def _scenes(n: int = 4) -> list[np.ndarray]:
    from edgecv.data.synthetic import ShapesDataset

    data = ShapesDataset("val", n, 160)
    return [data[i].image for i in range(n)]


def test_tensorrt_target_is_symmetric_int8_on_compute_inputs(quantized):
    model = onnx.load(str(quantized["tensorrt"].path))
    zps = _zero_points(model)
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    consumers = {i: n for n in model.graph.node for i in n.input}
    dq_outputs = [n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert {consumers[t].op_type for t in dq_outputs} <= COMPUTE_OPS  # Q/DQ only feed Conv/MatMul/Gemm
    assert not any(n.op_type == "DequantizeLinear" and "bias" in n.input[0] for n in model.graph.node)


def test_openvino_target_is_uint8_on_compute_inputs(quantized, small_onnx):
    model = onnx.load(str(quantized["openvino"].path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q_dtypes = {inits[n.input[2]].dtype for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert q_dtypes == {np.dtype(np.uint8)}
    readers = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    dq_outputs = [n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"]
    # Q/DQ sit on compute inputs, or above the data-movement ops in front of them (edgecv.calibration.openvino_form)
    assert {r.op_type for t in dq_outputs for r in readers[t]} <= COMPUTE_OPS | PRESERVING
    quantized_sources = [n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantized_sources) == len(set(quantized_sources))  # one pair per tensor, shared by its readers
    first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "images")
    assert np.isclose(inits[first_q.input[1]], 1 / 255) and inits[first_q.input[2]] == 0  # pixels exactly
    first_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == first_q.output[0])
    first_convs = [n.name for n in readers[first_dq.output[0]] if n.op_type == "Conv"]
    assert quantized["openvino"].metadata.calibration["seven_bit_weights"] == first_convs and len(first_convs) == 1
    assert "seven_bit_weights" not in quantized["onnxruntime"].metadata.calibration
    images = _scenes()
    with Predictor(small_onnx) as ref, Predictor(quantized["openvino"].path, backend="openvino") as q:
        a, b = ref(images), q(images)
    assert_same_boxes(a, b)


def test_onnxruntime_target_form(quantized):
    model = onnx.load(str(quantized["onnxruntime"].path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q_dtypes = {inits[n.input[2]].dtype for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert q_dtypes == {np.dtype(np.uint8)}  # activations: uint8 (measured fastest on x86)
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                 and inits[n.input[0]].dtype == np.int8]
    assert weight_dq and all(inits[n.input[1]].size > 1 for n in weight_dq)  # per-channel int8 weights


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime", "openvino"])
def test_postprocessing_stays_float_and_runs(quantized, small_onnx, target):
    result = quantized[target]
    fp32, model = onnx.load(str(small_onnx)), onnx.load(str(result.path))
    post = postprocess_nodes(fp32)
    quant_tensors = {o for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                     for o in (*n.input, *n.output)}
    post_nodes = [n for n in model.graph.node if n.name in post]
    assert len(post_nodes) == len(post) and any(n.name.startswith(NMS_PREFIX) for n in post_nodes)
    assert not any(set(n.input) & quant_tensors for n in post_nodes)
    meta = result.metadata
    assert meta.precision == "int8" and meta.calibration["target"] == target
    assert meta.calibration["samples"] == 8 and meta.calibration["method"] == "percentile"
    assert meta.calibration["data_hash"] and meta.calibration["excluded_nodes"] == []
    images = _scenes()
    with Predictor(small_onnx) as ref, Predictor(result.path) as q:
        a, b = ref(images), q(images)
    assert Predictor(result.path).metadata.precision == "int8"
    assert_same_boxes(a, b)


def test_cache_round_trip_skips_data(quantized, small_onnx, tmp_path, monkeypatch):
    import edgecv.calibration.api as api

    cache = quantized["tensorrt"].cache_path
    assert cache.is_file() and not quantized["onnxruntime"].calibration_seconds
    assert quantized["onnxruntime"].cache_hit
    monkeypatch.setattr(api, "collect_stats", lambda *a, **k: pytest.fail("data was re-run despite the cache"))
    again = quantize(small_onnx, tmp_path / "p.onnx", target="tensorrt", method="percentile", samples=8,
                     cache=cache, exclude=["/model/stem/stem.0/conv/Conv"])
    assert again.cache_hit and again.metadata.calibration["excluded_nodes"] == ["/model/stem/stem.0/conv/Conv"]
    model = onnx.load(str(again.path))
    stem = next(n for n in model.graph.node if n.name == "/model/stem/stem.0/conv/Conv")
    assert stem.input[0] == "images"  # excluded layer reads float


def test_already_quantized_and_bad_options(quantized, small_onnx, tmp_path):
    with pytest.raises(QuantizationError, match="already-quantized"):
        quantize(quantized["tensorrt"].path, tmp_path / "x.onnx", samples=2, cache=False)
    with pytest.raises(QuantizationError, match="target: expected one of"):
        quantize(small_onnx, tmp_path / "x.onnx", samples=2, target="tflite", cache=tmp_path / "c.json")
    with pytest.raises(QuantizationError, match="unknown"):
        quantize(small_onnx, tmp_path / "x.onnx", samples=2, exclude=["nope"], cache=tmp_path / "c.json")


def test_openvino_warns_about_a_tensorrt_target_graph(quantized):
    with pytest.warns(UserWarning, match="--target openvino"):
        Predictor(quantized["tensorrt"].path, backend="openvino").close()
