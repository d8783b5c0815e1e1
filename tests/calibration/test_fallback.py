"""Accuracy-guarded fallback and the fp32 vs int8 report (tiny held-out split, real sessions)."""

from __future__ import annotations

import cv2
import onnx

from edgecv.calibration import quantize
from edgecv.calibration.sensitivity import layer_sensitivity


def test_within_budget_keeps_everything_quantized(model_copy):
    result = quantize(model_copy, samples=4, max_drop=100.0, eval_count=8)
    acc = result.accuracy
    assert result.excluded == [] and set(acc) >= {"fp32", "int8", "drop_points", "latency_ratio"}
    assert acc["fp32"]["map50_95"] > 0 and acc["int8"]["latency_ms"] > 0
    assert result.metadata.accuracy["drop_points"] == acc["drop_points"]
    assert result.path.name == "model_int8.onnx" and result.plot.is_file()
    assert cv2.imread(str(result.plot)) is not None


def test_unreachable_budget_keeps_best_graph_and_says_so(model_copy, capsys):
    from rich.console import Console

    result = quantize(model_copy, samples=4, max_drop=-100.0, eval_count=8, target="tensorrt",
                      console=Console(width=200))
    out = capsys.readouterr().out
    assert "not reached" in out and "best achieved" in out
    assert result.metadata.calibration["excluded_nodes"] == result.excluded
    model = onnx.load(str(result.path))
    names = {n.name: n for n in model.graph.node}
    for name in result.excluded:  # kept-float layers read float tensors (no DequantizeLinear on input 0)
        producer = {o: n for n in model.graph.node for o in n.output}.get(names[name].input[0])
        assert producer is None or producer.op_type != "DequantizeLinear"


def test_sensitivity_ranks_compute_layers(quantized, small_onnx):
    from edgecv.data.synthetic import ShapesDataset
    from edgecv.runtimes import Predictor
    from edgecv.runtimes.preprocess import preprocess_batch

    meta = Predictor(small_onnx).metadata
    batches = [preprocess_batch([ShapesDataset("val", 2, 160)[i].image], meta)[0] for i in range(2)]
    ranking = layer_sensitivity(onnx.load(str(small_onnx)), onnx.load(str(quantized["onnxruntime"].path)), batches)
    assert len(ranking) > 10 and ranking[0][1] >= ranking[-1][1]
