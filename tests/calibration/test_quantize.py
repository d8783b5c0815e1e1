"""Quantization end to end on the small demo model, with real ONNX Runtime sessions."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgecv.calibration import quantize
from edgecv.calibration.graph import COMPUTE_OPS, postprocess_nodes
from edgecv.errors import QuantizationError
from edgecv.export.nms import NMS_PREFIX
from edgecv.runtimes import Predictor


def _zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[2]] for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]


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
    consumers = {i: n for n in model.graph.node for i in n.input}
    dq_outputs = [n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert {consumers[t].op_type for t in dq_outputs} <= COMPUTE_OPS
    pytest.importorskip("openvino", reason="openvino not installed")
    images = _scenes()
    with Predictor(small_onnx) as ref, Predictor(quantized["openvino"].path, backend="openvino") as q:
        a, b = ref(images), q(images)
    assert sum(len(d) for d in a) > 0
    assert abs(sum(len(d) for d in a) - sum(len(d) for d in b)) <= max(2, sum(len(d) for d in a) // 5)


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
    assert sum(len(d) for d in a) > 0
    assert abs(sum(len(d) for d in a) - sum(len(d) for d in b)) <= max(2, sum(len(d) for d in a) // 5)


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
    pytest.importorskip("openvino", reason="openvino not installed")
    with pytest.warns(UserWarning, match="--target openvino"):
        Predictor(quantized["tensorrt"].path, backend="openvino").close()
