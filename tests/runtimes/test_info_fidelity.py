"""``edgecv info``: whose fidelity figures it shows, and the training command recorded at export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.runtimes.info import artifact_info

runner = CliRunner()
FP32_REPORT = {"compared": "PyTorch vs ONNX Runtime", "precision": "fp32", "images": 8, "passed": True,
               "status": "passed", "sizes": {"320x320": {"max_abs_boxes": 3e-4, "max_abs_scores": 3e-6,
                                                         "torch_dets": 33, "onnx_dets": 33, "matched": 1.0}}}


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_info_shows_the_training_command_of_the_demo_export(demo_onnx: Path) -> None:
    """The README's promise: the demo checkpoint's ["train"]["command"] reaches the artifact and `edgecv info`."""
    import torch

    from edgecv.models.yolo_io import demo_weights_path

    command = torch.load(demo_weights_path(), weights_only=True)["train"]["command"]
    info = artifact_info(demo_onnx)
    assert info.metadata.training["command"] == command and info.metadata.training["epochs"] > 0
    result = runner.invoke(app, ["info", str(demo_onnx)])
    assert result.exit_code == 0, result.output
    assert f"training command │ {command}" in result.output
    assert "fidelity (this fp32 graph, PyTorch vs ONNX Runtime)" in _flat(result.output)


def test_int8_graph_labels_the_fp32_graphs_fidelity_as_its_parents(tmp_path: Path,
                                                                   toy_artifact_writer: Callable[..., Path]) -> None:
    """An int8 graph carries its fp32 parent's fidelity block (calibration copies the metadata): say whose it is."""
    path = toy_artifact_writer(tmp_path / "model_int8.onnx", precision="int8", fidelity=FP32_REPORT,
                               parent={"name": "model.onnx", "sha256": "ab" * 32})
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    title = "fidelity (of the fp32 graph model.onnx, PyTorch vs ONNX Runtime; not a check of this int8 graph)"
    assert title in _flat(result.output)
    as_json = json.loads(runner.invoke(app, ["info", str(path), "--json"]).output)
    assert as_json["fidelity_of"] == title[len("fidelity ("):-1]


def test_fp32_graph_fidelity_is_its_own_and_absent_block_has_no_label(tmp_path: Path,
                                                                       toy_artifact_writer: Callable[..., Path]) -> None:
    own = artifact_info(toy_artifact_writer(tmp_path / "model.onnx", fidelity=FP32_REPORT))
    assert own.fidelity_of == "this fp32 graph, PyTorch vs ONNX Runtime"
    older = dict(FP32_REPORT)
    del older["precision"], older["compared"]  # reports written before the label existed: fp32 exports only
    derived = artifact_info(toy_artifact_writer(tmp_path / "old_int8.onnx", precision="int8", fidelity=older))
    assert derived.fidelity_of.startswith("of the fp32 ONNX graph this artifact was derived from")
    assert artifact_info(toy_artifact_writer(tmp_path / "none.onnx")).fidelity_of == ""


def test_real_fp16_graph_does_not_claim_the_fp32_check(demo_onnx: Path, tmp_path: Path) -> None:
    from edgecv.export.fp16 import export_fp16

    fp16 = export_fp16(demo_onnx, tmp_path / "model_fp16.onnx")
    result = runner.invoke(app, ["info", str(fp16)])
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert "fidelity (of the fp32" in text and "not a check of this fp16 graph" in text
    assert "training command │ edgecv train yolo" in result.output  # derived graphs keep the training record


def test_engine_does_not_claim_its_onnx_graphs_check(tmp_path: Path) -> None:
    """An engine's json copies the ONNX graph's metadata: the figures are ONNX Runtime's, not TensorRT's."""
    from edgecv.metadata import ArtifactMetadata

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a real plan")
    meta = ArtifactMetadata(task="detect", class_names=["a", "b"], input_shape=[1, 3, 64, 64], letterbox_size=[64, 64],
                            max_det=10, fidelity=FP32_REPORT)
    doc = {**json.loads(meta.to_json()), "tensorrt": {"version": "10.13.3.9", "compute_capability": "8.6"}}
    (tmp_path / "model.engine.json").write_text(json.dumps(doc))
    result = runner.invoke(app, ["info", str(engine)])
    assert result.exit_code == 0, result.output
    assert "not a check of this fp32 TensorRT engine" in _flat(result.output)


def test_info_shows_the_int8_record_in_points_not_as_json():
    from edgecv.runtimes.info import _accuracy_rows

    record = {"fp32": {"map50_95": 0.9229, "map50": 0.9627}, "int8": {"map50_95": 0.9160, "map50": 0.9549},
              "eval_images": 100, "eval_data": "shapes", "max_drop": 0.5,
              "latency": {"backend": "onnxruntime", "rounds": 3,
                          "rows": {"int8": {"ratio": 0.612, "p50_ms": 33.8, "ratio_range": [0.563, 0.805]}}}}
    rows = _accuracy_rows(record)
    assert rows["fp32"].startswith("mAP50-95 92.29 pts") and rows["drop"] == "+0.69 pts mAP50-95"
    assert rows["latency"] == "int8 0.61x fp32 (p50 33.8 ms; 0.56-0.81 over 3 rounds) on onnxruntime"
    assert rows["max drop"] == "0.5 pts"
    skipped = _accuracy_rows({**record, "latency": {"skipped": "tensorrt-target graph: not indicative on ORT"}})
    assert skipped["latency"].startswith("not measured: tensorrt-target graph")
