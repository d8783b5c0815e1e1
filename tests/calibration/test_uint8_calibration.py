"""Calibrating a uint8-input artifact: data fed as uint8 NHWC, the ``edgecv_pre/`` prefix left float,
and the int8 graph equal in behaviour to the int8 graph of the float-input artifact (same ranges)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgecv.data.synthetic import ShapesDataset
from edgecv.export.fidelity import box_iou
from edgecv.export.uint8_input import PRE_PREFIX, export_uint8_input
from edgecv.runtimes import Predictor


@pytest.mark.parametrize(("target", "backend"), [("onnxruntime", "onnxruntime"), ("tensorrt", "onnxruntime"),
                                               ("openvino", "openvino")])
def test_int8_of_uint8_artifact_keeps_prefix_float_and_matches_float_input_int8(small_onnx, quantized, tmp_path: Path,
                                                                                 target: str, backend: str) -> None:
    """On OpenVINO without VNNI the uint8 artifact's first layer overflowed int16 before its weights
    went to 7 bits (edgecv.calibration.openvino_form): fewer boxes than the float-input int8 graph."""
    from edgecv.calibration import quantize

    uint8 = export_uint8_input(small_onnx, tmp_path / "model_uint8.onnx")
    result = quantize(uint8, tmp_path / f"{target}.onnx", target=target, samples=8, cache=False)
    model = onnx.load(str(result.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    producers = {o: n for n in model.graph.node for o in n.output}
    qdq = ("QuantizeLinear", "DequantizeLinear")  # the quantizer names the pair on the prefix output after it
    prefix = [n for n in model.graph.node if n.name.startswith(PRE_PREFIX) and n.op_type not in qdq]
    assert [n.op_type for n in prefix] == ["Cast", "Transpose", "Gather", "Mul"]
    for node in prefix:  # nothing quantized in front of or inside the prefix
        assert all(producers.get(i) is None or producers[i].op_type not in qdq for i in node.input), node.name
    first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    assert first_q.input[0] == PRE_PREFIX + "network_input"  # the first Q/DQ sits on the normalised tensor
    scenes = [ShapesDataset("val", 12, 160, seed=5)[i].image for i in range(12)]
    pairs = matched = 0
    with Predictor(quantized[target].path, backend=backend) as floats, \
            Predictor(result.path, backend=backend) as uint8s:
        for a, b in zip(floats(scenes), uint8s(scenes)):
            pairs += max(len(a), len(b))
            if len(a) and len(b):
                ious = box_iou(a.boxes, b.boxes) * (a.class_ids[:, None] == b.class_ids[None, :])
                matched += int(np.sum(ious.max(axis=1) >= 0.99))
    assert pairs >= 10 and matched / pairs >= 0.99, f"{matched}/{pairs}"


def test_frame_artifact_calibrates_on_frames_of_its_size(small_onnx, tmp_path: Path) -> None:
    """A --frame graph takes camera frames of exactly one size: calibration draws its synthetic scenes
    at that size (and resizes other images to it), and evaluation scenes follow (before: 'expected
    200x120 frames, found 160x160')."""
    from edgecv.calibration import quantize
    from edgecv.calibration.sources import iter_batches, open_source
    from edgecv.evaluation import eval_size
    from edgecv.metadata import METADATA_KEY, ArtifactMetadata

    framed = export_uint8_input(small_onnx, tmp_path / "framed.onnx", frame_wh=(200, 120))
    props = {p.key: p.value for p in onnx.load(str(framed)).metadata_props}
    meta = ArtifactMetadata.from_json(props[METADATA_KEY])
    assert eval_size(meta) == (120, 200)
    batches = list(iter_batches(open_source("shapes", meta, samples=3), meta, batch=2))
    assert [b.shape for b in batches] == [(2, 120, 200, 3), (1, 120, 200, 3)]
    result = quantize(framed, tmp_path / "framed_int8.onnx", samples=4, cache=False, evaluate=True, eval_count=4)
    assert result.accuracy["int8"]["map50_95"] >= 0.0 and result.path.is_file()
