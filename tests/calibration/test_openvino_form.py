"""The OpenVINO placement pass: conv-input Q/DQ pairs move above data-movement ops, one pair per
source, one scale per concat group; the graph still runs in ONNX Runtime and OpenVINO."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecv.calibration.emit import EmitOptions, emit
from edgecv.calibration.openvino_form import hoist_activation_qdq, sort_topologically


def _c2f_like() -> onnx.ModelProto:
    """x [1,4,8,8] -> conv a -> SiLU -> Split(2) -> (p, q); q -> conv b -> SiLU -> r;
    MaxPool(p) ; Concat(pool, q, r) -> conv c -> out. Plus a float reader of SiLU a (Sigmoid)."""
    rng = np.random.default_rng(0)
    w = lambda name, co, ci: numpy_helper.from_array(rng.normal(0, 0.3, (co, ci, 1, 1)).astype(np.float32), name)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a"),
             helper.make_node("Sigmoid", ["a"], ["a_sig"], name="sig_a"),
             helper.make_node("Mul", ["a", "a_sig"], ["a_act"], name="silu_a"),
             helper.make_node("Split", ["a_act", "split"], ["p", "q"], name="split", axis=1),
             helper.make_node("Conv", ["q", "wb"], ["b"], name="conv_b"),
             helper.make_node("Sigmoid", ["b"], ["b_sig"], name="sig_b"),
             helper.make_node("Mul", ["b", "b_sig"], ["r"], name="silu_b"),
             helper.make_node("MaxPool", ["p"], ["pool"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["pool", "q", "r"], ["cat"], name="concat", axis=1),
             helper.make_node("Conv", ["cat", "wc"], ["out"], name="conv_c"),
             helper.make_node("Sigmoid", ["a_act"], ["side"], name="side")]
    graph = helper.make_graph(
        nodes, "c2f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("side", TensorProto.FLOAT, None)],
        [w("wa", 8, 4), w("wb", 4, 4), w("wc", 4, 12), numpy_helper.from_array(np.array([4, 4], np.int64), "split")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ranges(model: onnx.ModelProto, x: np.ndarray) -> dict[str, tuple[float, float]]:
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = [o for n in model.graph.node for o in n.output]
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    values = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    ranges = {n: (float(v.min()), float(v.max())) for n, v in zip(names, values)}
    ranges["x"] = (float(x.min()), float(x.max()))
    return ranges


@pytest.fixture(scope="module")
def placed() -> tuple[onnx.ModelProto, onnx.ModelProto, np.ndarray]:
    model = _c2f_like()
    x = np.random.default_rng(1).normal(0, 1, (1, 4, 8, 8)).astype(np.float32)
    return model, emit(model, _ranges(model, x), EmitOptions(target="openvino")), x


def test_pairs_move_to_sources_with_one_scale_per_concat(placed):
    _, int8, _ = placed
    inits = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    quantized = {n.input[0]: n for n in int8.graph.node if n.op_type == "QuantizeLinear"}
    # sources: the input and the two SiLU outputs; never the split / pool outputs
    assert set(quantized) == {"x", "a_act", "r"}
    scale = {name: float(inits[q.input[1]]) for name, q in quantized.items()}
    assert scale["a_act"] == scale["r"]  # they meet in the concat: one grid
    by_name = {n.name: n for n in int8.graph.node}
    dq_of = {n.input[0]: n.output[0] for n in int8.graph.node if n.op_type == "DequantizeLinear"}
    assert by_name["split"].input[0] == dq_of[quantized["a_act"].output[0]]
    assert by_name["conv_c"].input[0] == "cat" and by_name["concat"].input[2] == dq_of[quantized["r"].output[0]]
    assert by_name["side"].input[0] == "a_act" and by_name["silu_a"].input[0] == "a"  # float readers stay float


def test_placed_graph_runs_close_to_float(placed, monkeypatch):
    model, int8, x = placed
    onnx.checker.check_model(int8)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})  # noqa: E731
    ref, got = run(model), run(int8)
    span = float(np.ptp(ref[0]))
    assert np.abs(ref[0] - got[0]).max() < 0.1 * span and np.abs(ref[1] - got[1]).max() < 0.01
    import openvino as ov

    # OpenVINO reads the moved pairs as it read them in front of the convs (AVX2's int16 pair sums can
    # saturate on these random weights in both forms, so the float graph is not the reference here)
    def run_ov(m: onnx.ModelProto) -> np.ndarray:
        compiled = ov.Core().compile_model(ov.Core().read_model(m.SerializeToString(), b""), "CPU")
        return compiled({"x": x})[compiled.outputs[0]]

    monkeypatch.setattr("edgecv.calibration.emit.hoist_activation_qdq", lambda m, *a, **k: m)
    before = emit(model, _ranges(model, x), EmitOptions(target="openvino"))
    assert np.abs(run_ov(int8) - run_ov(before)).max() < 0.05 * span


def test_pair_without_a_range_stays_and_sorting_refuses_cycles(placed):
    model, _, x = placed
    ranges = _ranges(model, x)
    del ranges["r"]  # the concat group cannot be placed: its conv keeps its own pair
    int8 = emit(model, ranges, EmitOptions(target="openvino"))
    assert any(n.op_type == "DequantizeLinear" and n.output[0] == next(
        i for i in next(c for c in int8.graph.node if c.name == "conv_c").input) for n in int8.graph.node)
    loop = helper.make_graph([helper.make_node("Relu", ["b"], ["a"], name="one"),
                              helper.make_node("Relu", ["a"], ["b"], name="two")], "loop", [], [])
    with pytest.raises(ValueError, match="cycle or a missing input"):
        sort_topologically(loop)
    assert hoist_activation_qdq(model, {}) is model  # no Q/DQ: nothing to move


def test_only_the_convs_reading_the_input_get_seven_bit_weights(placed):
    _, int8, _ = placed
    inits = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    producers = {o: n for n in int8.graph.node for o in n.output}
    peaks = {}
    for conv in (n for n in int8.graph.node if n.op_type == "Conv"):
        weights = inits[producers[conv.input[1]].input[0]]
        peaks[conv.name] = int(np.abs(weights.astype(np.int32)).reshape(len(weights), -1).max())
    # conv_a reads x: [-64, 63] (uint8 x int8 pair sums stay within int16 without VNNI); the others use 127
    assert peaks == {"conv_a": 63, "conv_b": 127, "conv_c": 127}
