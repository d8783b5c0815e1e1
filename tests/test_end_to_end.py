"""The spine end to end: demo weights → ONNX → Predictor finds the shapes in unseen scenes."""

import cv2
import numpy as np
import pytest

from edgecv.data import ShapesDataset
from edgecv.export.fidelity import match_detections
from edgecv.runtimes import Predictor


def test_predictor_finds_the_shapes(demo_onnx):
    scenes = ShapesDataset("test", 12, 320, seed=5)
    found = truth = predicted = 0
    with Predictor(demo_onnx) as predictor:
        results = predictor([scenes[i].image for i in range(len(scenes))])
    for i, dets in enumerate(results):
        gt = scenes[i]
        found += match_detections(gt.boxes, gt.class_ids, dets.boxes, dets.class_ids, iou=0.5)
        truth += len(gt.boxes)
        predicted += len(dets)
    assert found / truth >= 0.9, f"recall {found}/{truth}"
    assert found / predicted >= 0.85, f"precision {found}/{predicted}"


def test_boxes_come_back_in_original_pixels(demo_onnx):
    """A scene pasted off-centre into a larger, non-square canvas is found at the pasted place.

    The letterbox shrinks the 460x360 canvas by 0.7 and pads it vertically, so a wrong scale or
    padding offset moves every box by tens of pixels and fails the IoU 0.75 match.
    """
    scene = ShapesDataset("test", 1, 320, seed=10)[0]
    canvas = np.full((360, 460, 3), 127, np.uint8)
    canvas[30:350, 110:430] = scene.image
    with Predictor(demo_onnx) as predictor:
        dets = predictor(canvas)
    shifted = scene.boxes + np.array([110, 30, 110, 30], np.float32)
    assert len(shifted) >= 5
    assert match_detections(shifted, scene.class_ids, dets.boxes, dets.class_ids, iou=0.75) == len(shifted)


def test_grayscale_and_16bit_frames_are_converted_with_a_note(demo_onnx):
    scene = ShapesDataset("test", 1, 320, seed=3)[0].image
    gray = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)
    deep = scene.astype(np.uint16) * 257
    with Predictor(demo_onnx) as predictor:
        with pytest.warns(UserWarning, match="(?i)gray"):
            predictor(gray)
        with pytest.warns(UserWarning, match="16"):
            from_deep = predictor(deep)
        from_bgr = predictor(scene)
    assert len(from_deep) == len(from_bgr)
