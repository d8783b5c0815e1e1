"""Accuracy-guarded fallback and the fp32 vs int8 report (tiny held-out split, real sessions)."""

from __future__ import annotations

import json

import cv2
import onnx
from rich.console import Console

from edgecv.calibration import quantize
from edgecv.calibration.sensitivity import layer_sensitivity


def test_within_budget_keeps_everything_quantized(model_copy, capsys):
    result = quantize(model_copy, samples=4, max_drop=100.0, eval_count=8, console=Console(width=250))
    out = capsys.readouterr().out
    acc = result.accuracy
    assert result.excluded == [] and set(acc) >= {"fp32", "int8", "drop_points", "latency"}
    assert acc["fp32"]["map50_95"] > 0
    assert result.metadata.accuracy["drop_points"] == acc["drop_points"]
    # latency: timed on the target's own runtime with the project's benchmark, spread recorded
    latency = acc["latency"]
    assert latency["backend"] == "onnxruntime" and latency["rounds"] * latency["calls_per_round"] >= 30
    lo, hi = latency["rows"]["int8"]["ratio_range"]
    assert 0 < lo <= hi and latency["rows"]["int8"]["p50_ms"] > 0 and latency["rows"]["fp32"]["ratio"] == 1.0
    out = " ".join(out.split())  # the caption wraps with the console width
    assert "bare onnxruntime call" in out and "3 rounds x 10 calls" in out
    # each report beside its own graph, named after it, and the CLI/API says it wrote them
    assert result.path.name == "model_int8_onnxruntime.onnx"
    assert result.plot == model_copy.parent / "model_int8_onnxruntime_per_class.png"
    assert cv2.imread(str(result.plot)) is not None and f"wrote {result.plot}" in out
    report = json.loads(result.report.read_text())
    assert report["graph"] == result.path.name and report["float_nodes"] == []
    assert f"wrote {result.report}" in out


def test_unreachable_budget_keeps_best_graph_and_says_so(model_copy, capsys):
    result = quantize(model_copy, samples=4, max_drop=-100.0, eval_count=8, target="tensorrt",
                      console=Console(width=250))
    out = capsys.readouterr().out
    assert "not reached" in out and "best achieved" in out
    assert result.metadata.calibration["excluded_nodes"] == result.excluded
    model = onnx.load(str(result.path))
    names = {n.name: n for n in model.graph.node}
    for name in result.excluded:  # kept-float layers read float tensors (no DequantizeLinear on input 0)
        producer = {o: n for n in model.graph.node for o in n.output}.get(names[name].input[0])
        assert producer is None or producer.op_type != "DequantizeLinear"
    # console: one header, one line per step; the node list goes to the report file, not the terminal
    lines = [line for line in out.splitlines() if line.strip()]
    steps = result.fallback["steps"]
    assert sum(line.startswith("fallback:") for line in lines) == 1
    assert sum(line.strip().startswith("step ") for line in lines) == len(steps) >= 2
    assert "int8_float" not in out and not any(node in out for node in result.excluded)
    report = json.loads((model_copy.parent / "model_int8_tensorrt_report.json").read_text())
    assert report["float_nodes"] == result.excluded and len(report["fallback"]["steps"]) == len(steps)
    assert report["fallback"]["within_budget"] is False


def test_sensitivity_ranks_compute_layers(quantized, small_onnx):
    from edgecv.data.synthetic import ShapesDataset
    from edgecv.runtimes import Predictor
    from edgecv.runtimes.preprocess import preprocess_batch

    meta = Predictor(small_onnx).metadata
    batches = [preprocess_batch([ShapesDataset("val", 2, 160)[i].image], meta)[0] for i in range(2)]
    ranking = layer_sensitivity(onnx.load(str(small_onnx)), onnx.load(str(quantized["onnxruntime"].path)), batches)
    assert len(ranking) > 10 and ranking[0][1] >= ranking[-1][1]
