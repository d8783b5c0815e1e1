"""``--mask-rows``: the Mask R-CNN mask stage on the detected rows (default) or on all ``max_det`` rows.

The shipped tiny Mask R-CNN exported both ways at batch 2: the same outputs bit for bit on real
ONNX Runtime and OpenVINO sessions, and the mask RoI Align of the default graph pools
``B * max(num_dets)`` rows (its output read from the session), not ``B * max_det``."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.errors import OptionError
from edgecv.export.api import export_model
from edgecv.export.onnx_export import ExportOptions
from edgecv.export.rcnn_ops import detected_rows
from edgecv.export.twostage_fidelity import check_images
from edgecv.models.tv_twostage import TwoStageConfig
from edgecv.plugins.roi_align.graph import find_scopes
from edgecv.runtimes.preprocess import preprocess_batch

SIZE, MAX_DET = 128, 30


@pytest.mark.parametrize("kept, rows, position", [
    ([[1, 1, 0, 0], [1, 0, 0, 0]], [0, 1], [0, 1, 1, 1]),  # the union over the batch
    ([[0, 0, 0, 0], [0, 0, 0, 0]], [0], [0, 0, 0, 0]),  # nothing: row 0 still runs (no empty tensors)
    ([[0, 0, 1, 0]], [0, 2], [0, 0, 1, 1]),  # not a prefix: still each kept row's place
])
def test_detected_rows(kept: list, rows: list, position: list) -> None:
    got_rows, got_position = detected_rows(torch.tensor(kept, dtype=torch.bool))
    assert got_rows.tolist() == rows and got_position.tolist() == position


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("mask_rows")
    return {rows: export_model("maskrcnn_tiny", out=folder / f"{rows}.onnx", warn_stale=False,
                               opts=ExportOptions(imgsz=SIZE, batch=2, max_det=MAX_DET, mask_rows=rows)).path
            for rows in ("detected", "all")}


def _with_mask_pool_output(path) -> bytes:  # noqa: ANN001
    """The graph at ``path`` with its mask RoI Align result as an extra output (last)."""
    model = onnx.load(str(path))
    scope = next(s for s in find_scopes(model) if s.name == "mask")
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(scope.output))
    return model.SerializeToString()


def test_same_outputs_and_the_mask_stage_follows_the_detections(exported) -> None:
    import openvino as ov

    from edgecv.runtimes import Predictor

    graphs = {rows: onnx.load(str(path)) for rows, path in exported.items()}
    assert "NonZero" in {n.op_type for n in graphs["detected"].graph.node}
    assert "NonZero" not in {n.op_type for n in graphs["all"].graph.node}
    with Predictor(exported["detected"], backend="onnxruntime") as predictor:
        assert predictor.metadata.fidelity["graph"]["mask_rows"] == "detected"
        busy, grey = check_images(SIZE)[0], np.full((SIZE, SIZE, 3), 114, np.uint8)
        for images in ([busy, grey], [grey, grey]):
            tensor, _ = preprocess_batch(images, predictor.metadata, batch_size=2)
            ort_out = {rows: ort.InferenceSession(_with_mask_pool_output(path), providers=["CPUExecutionProvider"])
                       .run(None, {"images": tensor}) for rows, path in exported.items()}
            ov_out = {rows: [np.asarray(v) for v in ov.Core().compile_model(str(path), "CPU")(tensor).values()]
                      for rows, path in exported.items()}
            for outs in ({k: v[:5] for k, v in ort_out.items()}, ov_out):
                assert all(np.array_equal(a, b) for a, b in zip(outs["detected"], outs["all"]))
            num = ort_out["all"][0][:, 0]
            assert (num.max() > 0) == (images[0] is busy)
            assert ort_out["all"][5].shape[0] == 2 * MAX_DET
            assert ort_out["detected"][5].shape[0] == 2 * max(int(num.max()), 1)
        assert len(predictor(busy).masks) > 0


def test_bad_mask_rows_are_one_line_errors() -> None:
    with pytest.raises(OptionError, match="mask rows: expected one of detected, all, found 'some'"):
        TwoStageConfig(mask_rows="some")
    runner = CliRunner()
    for args, expected in ((["maskrcnn_tiny", "--mask-rows", "some"], "expected one of detected, all"),
                           (["yolo", "--mask-rows", "all"], "expected a Mask R-CNN export")):
        result = runner.invoke(app, ["export", *args, "--no-check"], terminal_width=200)
        assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) <= 2, result.output  # the error line (+ the demo-weights notice)
