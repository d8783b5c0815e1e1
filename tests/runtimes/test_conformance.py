"""Every backend available here gives the same detections as ONNX Runtime fp32.

Tolerance (stated once, used everywhere): each reference detection must be matched by a
detection of the same class at IoU >= 0.9 with |score difference| <= SCORE_TOL, and the
number of detections may differ only by detections whose reference score is within SCORE_TOL
of the graph's threshold (a bf16 score can cross it). fp32 backends: SCORE_TOL 1e-3;
OpenVINO's device-default precision (bf16 on AVX512-BF16/AMX CPUs): 0.05.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edgecv.runtimes import Detections, Predictor

IOU = 0.9

#: (id, backend, backend_options, score tolerance)
BACKENDS = [
    pytest.param("onnxruntime", {}, 1e-4, id="onnxruntime"),
    pytest.param("onnxruntime", {"io_binding": True, "graph_optimization": "basic"}, 1e-3, id="onnxruntime-iobind"),
    # openvino is in the dev extra: a missing or broken install fails here instead of skipping
    pytest.param("openvino", {"precision": "f32"}, 1e-3, id="openvino-f32"),
    pytest.param("openvino", {}, 0.05, id="openvino-default(bf16)"),
]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: (x[:, 2:] - x[:, :2]).clip(0).prod(1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def assert_same_detections(ref: Detections, got: Detections, score_tol: float, threshold: float) -> None:
    ious = iou_matrix(ref.boxes, got.boxes) if len(ref) and len(got) else np.zeros((len(ref), len(got)))
    used: set[int] = set()
    for i in range(len(ref)):
        candidates = [j for j in np.argsort(-ious[i]) if j not in used and ious[i, j] >= IOU
                      and got.class_ids[j] == ref.class_ids[i] and abs(got.scores[j] - ref.scores[i]) <= score_tol]
        if candidates:
            used.add(int(candidates[0]))
        else:
            assert ref.scores[i] - threshold <= score_tol, (
                f"reference detection {i} (class {ref.class_ids[i]}, score {ref.scores[i]:.4f}, box {ref.boxes[i]}) "
                f"unmatched at IoU>={IOU}, |dscore|<={score_tol}; got {got.boxes}, {got.scores}")
    extra = [j for j in range(len(got)) if j not in used]
    for j in extra:
        assert got.scores[j] - threshold <= score_tol, f"extra detection {j} score {got.scores[j]:.4f} not near threshold"


@pytest.fixture(scope="module")
def reference(demo_onnx_192_dynamic: Path, shapes_frames: list[np.ndarray]) -> list[Detections]:
    with Predictor(demo_onnx_192_dynamic, backend="onnxruntime", threads=1) as predictor:
        dets = predictor(shapes_frames)
    assert sum(len(d) for d in dets) >= 4, "the conformance frames must contain detections"
    return dets


@pytest.mark.parametrize(("backend", "options", "tol"), BACKENDS)
def test_batch1_and_batched_match_reference(backend: str, options: dict, tol: float, demo_onnx_192_dynamic: Path,
                                            shapes_frames: list[np.ndarray], reference: list[Detections]) -> None:
    with Predictor(demo_onnx_192_dynamic, backend=backend, threads=1, backend_options=options) as predictor:
        assert predictor.backend.name == backend
        threshold = predictor.metadata.conf_threshold
        singles = [predictor(frame) for frame in shapes_frames]
        batched = predictor(shapes_frames)
        again = predictor(shapes_frames)  # repeated calls: same answer
    for ref, single, one_of_batch, repeat in zip(reference, singles, batched, again):
        assert_same_detections(ref, single, tol, threshold)
        assert_same_detections(ref, one_of_batch, tol, threshold)
        np.testing.assert_array_equal(one_of_batch.boxes, repeat.boxes)


@pytest.mark.parametrize(("backend", "options", "tol"), BACKENDS)
def test_blank_images_give_no_detections(backend: str, options: dict, tol: float, demo_onnx_160: Path) -> None:
    # uniform frames (a black frame letterboxed into grey padding would show the model a "square" border)
    blank = [np.zeros((160, 160, 3), np.uint8), np.full((120, 200, 3), 114, np.uint8),
             np.full((160, 160, 3), 255, np.uint8)]
    with Predictor(demo_onnx_160, backend=backend, threads=1, backend_options=options) as predictor:
        assert predictor.batch_size == 1
        for dets in predictor(blank):
            assert len(dets) == 0 and dets.boxes.shape == (0, 4)


@pytest.mark.parametrize(("backend", "options", "tol"), BACKENDS)
def test_two_threads_share_one_predictor(backend: str, options: dict, tol: float, demo_onnx_192_dynamic: Path,
                                         shapes_frames: list[np.ndarray], reference: list[Detections]) -> None:
    errors: list[BaseException] = []
    with Predictor(demo_onnx_192_dynamic, backend=backend, threads=1, backend_options=options) as predictor:
        threshold = predictor.metadata.conf_threshold

        def work(order: list[int]) -> None:
            try:
                for _ in range(3):
                    for i in order:
                        assert_same_detections(reference[i], predictor(shapes_frames[i]), tol, threshold)
            except BaseException as exc:  # re-raised in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(order,)) for order in ([0, 1, 2, 3], [3, 2, 1, 0])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        hung = [thread.name for thread in threads if thread.is_alive()]
    assert not errors, errors[0]
    assert not hung, f"threads {hung} still running after 60 s (deadlock or a hang in the backend)"
