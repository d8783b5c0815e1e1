"""fp16 graph pass: fp32 I/O, float post-processing and NMS, runs in ONNX Runtime on a CPU."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgecv.export.fp16 import export_fp16
from edgecv.export.nms import NMS_PREFIX


@pytest.fixture(scope="module")
def small_fp32(tmp_path_factory):
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    out = tmp_path_factory.mktemp("fp16") / "model.onnx"
    return export_model("yolo", out=out, opts=ExportOptions(imgsz=192, conf=0.1, check=False)).path


def test_fp16_graph_runs_and_matches(small_fp32):
    from edgecv.data.synthetic import ShapesDataset
    from edgecv.runtimes import Predictor

    path = export_fp16(small_fp32)
    model = onnx.load(str(path))
    assert all(v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16 for v in (*model.graph.input,
                                                                                   *model.graph.output))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    nms = next(n for n in model.graph.node if n.name == NMS_PREFIX + "NonMaxSuppression")
    assert nms.op_type == "NonMaxSuppression"
    images = [ShapesDataset("val", 4, 192)[i].image for i in range(4)]
    with Predictor(small_fp32) as ref, Predictor(path) as half:
        assert half.metadata.precision == "fp16"
        a, b = ref(images), half(images)
    assert sum(len(d) for d in a) >= 15, "the fp32 model must detect objects for the comparison to mean anything"
    matched = total = 0
    for da, db in zip(a, b, strict=True):
        assert abs(len(da) - len(db)) <= 1  # a score may cross the threshold in fp16, no more
        total += max(len(da), len(db))
        if len(da) and len(db):
            ious = _iou(da.boxes, db.boxes) * (da.class_ids[:, None] == db.class_ids[None, :])
            while ious.max() >= 0.9:  # greedy one-to-one: same class, IoU >= 0.9
                i, j = np.unravel_index(np.argmax(ious), ious.shape)
                matched, ious[i, :], ious[:, j] = matched + 1, -1, -1
                assert abs(da.scores[i] - db.scores[j]) < 0.02
    assert matched >= 0.9 * total, f"{matched}/{total} fp16 detections match fp32 (same class, IoU >= 0.9)"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: (x[:, 2:] - x[:, :2]).clip(0).prod(1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def test_fp16_refuses_converted_graph(small_fp32, tmp_path):
    from edgecv.errors import QuantizationError

    once = export_fp16(small_fp32, tmp_path / "h.onnx")
    with pytest.raises(QuantizationError, match="float16 initializers"):
        export_fp16(once, tmp_path / "hh.onnx")


def test_fp16_records_its_fp32_parent(small_fp32, tmp_path):
    from edgecv.calibration.api import read_metadata
    from edgecv.runtimes.lineage import file_sha256

    out = export_fp16(small_fp32, tmp_path / "sub" / "half.onnx")
    meta = read_metadata(onnx.load(str(out)), str(out))
    # the parent is named relative to the fp16 graph's folder, so the pair can move together
    assert meta.parent == {"name": f"../../{small_fp32.parent.name}/{small_fp32.name}",
                           "sha256": file_sha256(small_fp32)}
    assert (out.parent / meta.parent["name"]).resolve() == small_fp32.resolve()
    assert not list(out.parent.glob(".*tmp*"))  # atomic write: no temporary file left behind


def test_fp16_outputs_skip_the_fp16_round_trip_and_graph_is_sorted(small_fp32, tmp_path):
    """Boxes come from float NMS: an fp32 -> fp16 -> fp32 Cast pair before the output would round a
    640 px box to 0.25 px; the converter's input Casts must not stay appended at the end of the graph."""
    model = onnx.load(str(export_fp16(small_fp32, tmp_path / "h.onnx")))
    onnx.checker.check_model(model, full_check=True)  # raises on unsorted nodes
    producer = {o: n for n in model.graph.node for o in n.output}
    for name in ("boxes", "scores"):
        node = producer[name]
        while node.op_type in ("Identity", "Cast"):
            to = [a.i for a in node.attribute if a.name == "to"]
            assert to != [onnx.TensorProto.FLOAT16], f"{name} passes through an fp16 Cast"
            node = producer[node.input[0]]


def test_fp16_two_stage_graph_opens_and_keeps_the_detections(tmp_path):
    """A Mask R-CNN fp16 graph opens in the Predictor (its own [B, 1, N] NMS score inputs, which
    the fp16 pass's shape inference declares, were once read as the class count and refused) and
    finds the fp32 graph's detections on a busy scene, ONNX Runtime and OpenVINO."""
    from edgecv.export.api import export_variants
    from edgecv.export.onnx_export import ExportOptions
    from edgecv.export.twostage_fidelity import check_images
    from edgecv.runtimes import Predictor
    from edgecv.runtimes.onnx_graph import nms_class_count

    result = export_variants("maskrcnn_tiny", out=tmp_path / "m.onnx", opts=ExportOptions(imgsz=128, check=False),
                             fp16=True)
    assert nms_class_count(result.fp16) is None and nms_class_count(result.fp32.path) is None
    image = check_images(128)[0]
    for backend in ("onnxruntime", "openvino"):
        with Predictor(result.fp32.path, backend=backend) as fp32, Predictor(result.fp16, backend=backend) as fp16:
            want, got = fp32(image), fp16(image)
        assert len(want) > 0 and sorted(got.class_ids.tolist()) == sorted(want.class_ids.tolist())
        assert len(got.masks) == len(got)
