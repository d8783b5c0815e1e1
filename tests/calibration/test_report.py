"""The fp32 vs int8 table and the per-class plot: units stated, spread and backend shown, axes drawn."""

from __future__ import annotations

import cv2
import numpy as np
from rich.console import Console

from edgecv.calibration.report import comparison_table, per_class_plot, timing_backend

ACCURACY = {"fp32": {"map50_95": 0.9344, "map50": 0.99}, "int8": {"map50_95": 0.9337, "map50": 0.985},
            "eval_images": 300, "eval_data": "shapes",
            "latency": {"backend": "onnxruntime", "precision": {"fp32": "fp32", "int8": "int8"},
                        "input_size": [640, 640], "batch": 1, "rounds": 3, "calls_per_round": 10,
                        "rows": {"fp32": {"p50_ms": 130.2, "p90_ms": 141.0, "ratio": 1.0, "ratio_range": [1.0, 1.0]},
                                 "int8": {"p50_ms": 71.6, "p90_ms": 90.3, "ratio": 0.55,
                                          "ratio_range": [0.49, 0.80]}}}}


def _render(accuracy: dict) -> str:
    console = Console(width=250, record=True)
    console.print(comparison_table(accuracy))
    return console.export_text()


def test_table_uses_points_throughout_and_shows_backend_and_spread():
    text = _render(ACCURACY)
    assert "mAP in points" in text and "mAP50-95" in text and "drop" in text
    assert "93.44" in text and "93.37" in text and "+0.07" in text and "0.9344" not in text
    assert "bare onnxruntime call" in text and "71.6" in text and "90.3" in text
    assert "0.55x" in text and "0.49-0.80" in text and "3 rounds x 10 calls" in " ".join(text.split())
    assert "on onnxruntime" in text


def test_table_names_device_precision_where_it_differs_from_the_graph():
    ov = {**ACCURACY, "latency": {**ACCURACY["latency"], "backend": "openvino",
                                  "precision": {"fp32": "bf16", "int8": "bf16"}}}
    text = _render(ov)
    assert "int8 (bf16 inference)" in text and "on openvino" in text and "bare openvino call" in text


def test_table_without_latency_says_why():
    skipped = {**ACCURACY, "latency": {"skipped": timing_backend("tensorrt")[1]}}
    text = " ".join(_render(skipped).split())
    assert "latency not measured: tensorrt-target graph" in text and "not indicative" in text
    assert "x" not in [cell.strip() for cell in text.split("│")]  # no ratio cell was made up
    assert timing_backend("onnxruntime") == ("onnxruntime", "")


def test_per_class_plot_has_y_axis_values(tmp_path):
    path = per_class_plot({"circle": 0.9, "square": 0.5}, {"circle": 0.85, "square": 0.4}, tmp_path / "p.png")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None and not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary left
    left_band = image[45:310, :50]  # left of the y axis: tick values 0..100 and the axis label
    rows_with_ink = np.flatnonzero((left_band < 128).any(axis=1))
    assert len(rows_with_ink) > 30
    # six tick labels, evenly spread from the top of the plot to the baseline
    groups = np.split(rows_with_ink, np.flatnonzero(np.diff(rows_with_ink) > 3) + 1)
    assert len(groups) >= 6


def test_openvino_target_is_timed_on_openvino(model_copy):
    import pytest

    from edgecv.calibration import quantize

    pytest.importorskip("openvino")  # an optional backend (the 'openvino' extra)
    result = quantize(model_copy, samples=4, target="openvino", evaluate=True, eval_count=4,
                      console=Console(quiet=True))
    latency = result.accuracy["latency"]
    assert latency["backend"] == "openvino" and set(latency["rows"]) == {"fp32", "int8"}
    assert result.path.name == "model_int8_openvino.onnx"
