"""Two-stage graphs whose work follows the data (default) vs ``--static-shapes``.

The shipped tiny Mask R-CNN exported both ways at batch 2: the same outputs bit for bit on real
ONNX Runtime and OpenVINO sessions; the default graph's mask RoI Align pools ``B * max(num_dets)``
rows (its output read from the session), not ``B * max_det``, and each FPN level's ``RoiAlign``
only the RoIs assigned to it (+ one)."""

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
from edgecv.export.rcnn_ops import TENSORRT_TYPED, detected_rows, multilevel_roi_pool
from edgecv.export.twostage_fidelity import check_images
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


@pytest.mark.parametrize("pooler", ["align", "pool"])
def test_per_level_pooling_equals_every_level_pooling(pooler: str) -> None:
    """Each level pooling its own RoIs gives the rows of every level pooling every RoI, exactly; the
    coarsest level gets no RoI here (an empty level is the case the extra RoI 0 is for)."""
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(2, 8, 64 // 2 ** i, 64 // 2 ** i, generator=generator) for i in range(4)]  # strides 4..32
    corner = torch.rand(2, 40, 2, generator=generator) * 20
    side = torch.rand(2, 40, 1, generator=generator) * 234 + 2  # levels 2-4 of torchvision's mapper
    boxes = torch.cat([corner, (corner + side).clamp(max=256)], -1)
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    data = multilevel_roi_pool(features, scales, boxes, 7, 2, pooler)
    static = multilevel_roi_pool(features, scales, boxes, 7, 2, pooler, static=True)
    assert data.shape == (80, 8, 7, 7) and torch.equal(data, static)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("mask_rows")
    return {form: export_model("maskrcnn_tiny", out=folder / f"{form}.onnx", warn_stale=False,
                               opts=ExportOptions(imgsz=SIZE, batch=2, max_det=MAX_DET,
                                                  static_shapes=form == "static")).path
            for form in ("data", "static")}


def _with_pool_outputs(path) -> bytes:  # noqa: ANN001
    """The graph at ``path`` with, as extra outputs: the mask RoI Align result, then the input of
    every ``RoiAlign`` node of the box scope (the RoIs each level pools), finest level first."""
    model = onnx.load(str(path))
    scopes = {s.name: s for s in find_scopes(model)}
    extra = [scopes["mask"].output] + [n.input[1] for n in model.graph.node
                                       if n.op_type == "RoiAlign" and n.name.startswith("/edgecv_roialign/box/")]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in extra)
    return model.SerializeToString()


def test_same_outputs_and_the_mask_stage_follows_the_detections(exported) -> None:
    import openvino as ov

    from edgecv.runtimes import Predictor

    graphs = {rows: onnx.load(str(path)) for rows, path in exported.items()}
    assert "NonZero" in {n.op_type for n in graphs["data"].graph.node}
    assert "NonZero" not in {n.op_type for n in graphs["static"].graph.node}
    inferred = onnx.shape_inference.infer_shapes(graphs["data"]).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input]}
    typed = [n for n in inferred.node if n.op_type in TENSORRT_TYPED]
    assert {n.op_type for n in typed} == set(TENSORRT_TYPED)  # TensorRT's parser: FP32 / FP16 inputs only
    assert all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in typed)
    for graph in graphs.values():  # declared static (the exporter left them symbolic behind NonMaxSuppression)
        assert [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in graph.graph.output] == [
            [2, 1], [2, MAX_DET, 4], [2, MAX_DET], [2, MAX_DET], [2, MAX_DET, 28, 28]]
    with Predictor(exported["static"], backend="onnxruntime") as predictor:
        assert predictor.metadata.fidelity["graph"]["static_shapes"] is True
        busy, grey = check_images(SIZE)[0], np.full((SIZE, SIZE, 3), 114, np.uint8)
        for images in ([busy, grey], [grey, grey]):
            tensor, _ = preprocess_batch(images, predictor.metadata, batch_size=2)
            ort_out = {form: ort.InferenceSession(_with_pool_outputs(path), providers=["CPUExecutionProvider"])
                       .run(None, {"images": tensor}) for form, path in exported.items()}
            ov_out = {form: [np.asarray(v) for v in ov.Core().compile_model(str(path), "CPU")(tensor).values()]
                      for form, path in exported.items()}
            for outs in ({k: v[:5] for k, v in ort_out.items()}, ov_out):
                assert all(np.array_equal(a, b) for a, b in zip(outs["data"], outs["static"]))
            num = ort_out["static"][0][:, 0]
            assert (num.max() > 0) == (images[0] is busy)
            assert ort_out["static"][5].shape[0] == 2 * MAX_DET
            assert ort_out["data"][5].shape[0] == 2 * max(int(num.max()), 1)
            proposals = ort_out["static"][6].shape[0]  # B * post_nms_top_n, every level
            levels = [rois.shape[0] - 1 for rois in ort_out["data"][6:]]  # each level's own (+ RoI 0)
            assert all(r.shape[0] == proposals for r in ort_out["static"][6:]) and sum(levels) == proposals
        assert len(predictor(busy).masks) > 0


def test_static_shapes_for_a_static_family_is_a_one_line_error() -> None:
    result = CliRunner().invoke(app, ["export", "yolo", "--static-shapes", "--no-check"], terminal_width=200)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--static-shapes: expected a two-stage export (Faster / Mask R-CNN), found family" in result.output
    with pytest.raises(OptionError, match="static already"):
        export_model("yolo", opts=ExportOptions(static_shapes=True, check=False), warn_stale=False)


def test_both_forms_take_the_roi_align_plugin(exported) -> None:
    """The plugin pass replaces the per-level form (a ``Gather`` leaves the scope) and the static one
    (a ``Where`` chain) alike; with the CPU twin both plugin graphs give the portable detections."""
    from edgecv.plugins.roi_align import OP_TYPE, graph, twin

    busy = check_images(SIZE)[0]
    tensor = np.stack([busy[:, :, ::-1]] * 2).astype(np.float32) / 255
    tensor = ((tensor - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(0, 3, 1, 2).astype(np.float32)
    want = ort.InferenceSession(str(exported["static"]), providers=["CPUExecutionProvider"]).run(None, {"images": tensor})
    for path in exported.values():
        plugged = graph.replace(onnx.load(str(path)))
        assert sorted(n.name.split("/")[2] for n in plugged.graph.node if n.op_type == OP_TYPE) == ["box", "mask"]
        got = ort.InferenceSession(plugged.SerializeToString(), twin.session_options(),
                                   providers=["CPUExecutionProvider"]).run(None, {"images": tensor})
        assert want[0][0, 0] > 0 and np.array_equal(got[0], want[0]) and np.array_equal(got[3], want[3])
        np.testing.assert_allclose(got[1], want[1], atol=1e-3)
        np.testing.assert_allclose(got[4], want[4], atol=1e-4)
