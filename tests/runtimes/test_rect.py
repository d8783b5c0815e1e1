"""Rect letterbox: dynamic-size artifacts run non-square frames at the smallest stride-multiple size."""


import numpy as np
import pytest

from edgecv.data import ShapesDataset
from edgecv.errors import ArtifactError
from edgecv.export.fidelity import match_detections
from edgecv.runtimes import Predictor
from edgecv.runtimes.preprocess import preprocess_batch, rect_hw


def test_rect_size_keeps_the_full_letterbox_scale(demo_onnx_dynamic):
    meta = Predictor(demo_onnx_dynamic).metadata
    full, stride = meta.letterbox_size[0], meta.stride
    rect_h = -(-full * 3 // 4 // stride) * stride  # 3/4 of the square, rounded up to the stride
    assert rect_h < full and rect_hw([(480, 640)], meta) == (rect_h, full)  # 4:3 frame: less to compute
    assert rect_hw([(720, 1280)], meta)[1] == full and rect_hw([(720, 1280)], meta)[0] % 32 == 0
    assert rect_hw([(480, 640), (640, 480)], meta) == (full, full)  # a mixed batch holds both
    tensor, infos = preprocess_batch([np.zeros((480, 640, 3), np.uint8)], meta, rect=True)
    assert tensor.shape[2:] == (rect_h, full) and infos[0].pad_y == (rect_h - full * 3 // 4) / 2


BACKENDS = ["onnxruntime", "openvino"]  # openvino is in the dev extra: required, never skipped


@pytest.mark.parametrize("backend", BACKENDS)
def test_rect_finds_the_same_objects_as_the_square(demo_onnx_dynamic, backend):
    scene = ShapesDataset("test", 1, 320, seed=10)[0]
    frame = np.full((240, 320, 3), 127, np.uint8)
    frame[:, 40:280] = scene.image[40:280, 40:280]
    options = {"precision": "f32"} if backend == "openvino" else {}
    portrait = np.ascontiguousarray(frame.transpose(1, 0, 2))  # a second shape through the same predictor
    with (Predictor(demo_onnx_dynamic, backend=backend, backend_options=options) as square,
          Predictor(demo_onnx_dynamic, backend=backend, backend_options=options, rect=True) as rect):
        for image in (frame, portrait, frame):
            a, b = square(image), rect(image)
            assert len(a) > 0
            assert match_detections(a.boxes, a.class_ids, b.boxes, b.class_ids, iou=0.8) >= len(a) - 1


def test_rect_needs_a_dynamic_artifact(demo_onnx):
    with pytest.raises(ArtifactError, match="--dynamic"):
        Predictor(demo_onnx, rect=True)
