"""A conv whose bias is huge next to its weight and input scales: int32 would overflow.

ONNX Runtime's quantizer clips such a bias (logging "Quantized bias ... exceeds the range of a
int32") or, in newer versions, silently coarsens the weights; edgecv keeps the bias float, records
it in the metadata and says so in one console line.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console

from edgecv.calibration import quantize
from edgecv.calibration.emit import EmitOptions, emit, pop_float_biases
from edgecv.metadata import METADATA_KEY, ArtifactMetadata

SIZE = 32


def tiny_model() -> onnx.ModelProto:
    """images [1,3,32,32] -> Conv (weights 1e-6, bias up to 20) -> Relu -> Conv (ordinary) -> feat.

    Bias scale = input scale (~1/255) x weight scale (1e-6 / 127) ~ 3e-11: a bias of 10 needs
    3e11 steps, far beyond int32 (2.1e9).
    """
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.full((4, 3, 3, 3), 1e-6, np.float32), "big.weight"),
        numpy_helper.from_array(np.array([10.0, 0.5, -20.0, 2.0], np.float32), "big.bias"),
        numpy_helper.from_array(rng.normal(0, 0.5, (2, 4, 1, 1)).astype(np.float32), "ok.weight"),
        numpy_helper.from_array(np.array([0.1, -0.1], np.float32), "ok.bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "big.weight", "big.bias"], ["c1"], name="/big/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="/big/Relu"),
        helper.make_node("Conv", ["r1", "ok.weight", "ok.bias"], ["feat"], name="/ok/Conv"),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                            [1, 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("feat", TensorProto.FLOAT, [1, 2, SIZE, SIZE])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = ArtifactMetadata(task="detect", class_names=["a"], input_shape=[1, 3, SIZE, SIZE],
                            letterbox_size=[SIZE, SIZE], outputs=["feat"])
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x})[0]


def test_overflowing_bias_stays_float_and_is_recorded(tmp_path, caplog) -> None:
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), path)
    console = Console(record=True, width=200)
    with caplog.at_level(logging.WARNING):
        result = quantize(path, tmp_path / "tiny_int8.onnx", samples=4, cache=False, console=console)
    assert not [r for r in caplog.records if "exceeds the range of a int32" in r.getMessage()]  # not leaked
    assert result.metadata.calibration["float_biases"] == ["big.bias"]
    lines = [line for line in console.export_text().splitlines() if line.startswith("kept")]
    assert lines == ["kept 1 bias(es) float (int32 bias scale too small): big.bias"]
    int8 = onnx.load(str(tmp_path / "tiny_int8.onnx"))
    inits = {i.name: i for i in int8.graph.initializer}
    assert inits["big.bias"].data_type == inits["big.weight"].data_type == TensorProto.FLOAT  # that conv is float
    assert inits["ok.bias_quantized"].data_type == TensorProto.INT32  # an ordinary bias is still int32
    saved = ArtifactMetadata.from_json(next(p.value for p in int8.metadata_props if p.key == METADATA_KEY))
    assert saved.calibration["float_biases"] == ["big.bias"]
    assert not [p for p in int8.metadata_props if p.key.startswith("edgecv.")]  # the emitter's record was consumed
    x = np.random.default_rng(1).random((1, 3, SIZE, SIZE), dtype=np.float32)
    reference = _run(tiny_model(), x)
    np.testing.assert_allclose(_run(int8, x), reference, atol=0.05 * np.abs(reference).max())


@pytest.mark.parametrize("form", ["qdq", "qoperator"])
def test_emit_keeps_the_graph_exact_in_both_forms(form: str) -> None:
    """Clipping would turn the bias 10 into ~0.07: the int8 output stays within a few % of fp32 instead."""
    model = tiny_model()
    ranges = {"images": (0.0, 1.0), "c1": (-20.0, 10.0), "r1": (0.0, 10.0), "feat": (-8.0, 8.0)}
    int8 = emit(model, ranges, EmitOptions(form=form))
    kept = pop_float_biases(int8)
    assert kept in (["big.bias"], [])  # QOperator: newer ONNX Runtime rescales the weights instead
    if form == "qdq":
        assert kept == ["big.bias"]
    x = np.random.default_rng(2).random((1, 3, SIZE, SIZE), dtype=np.float32)
    reference = _run(model, x)
    np.testing.assert_allclose(_run(int8, x), reference, atol=0.05 * np.abs(reference).max())
