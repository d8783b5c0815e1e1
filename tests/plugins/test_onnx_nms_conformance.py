"""The ONNX NonMaxSuppression operator test cases (from the installed onnx package) through the
kernel's per-class NMS core (interpreted, see conftest.py) and through the CPU twin in ONNX Runtime.

The core runs once per (batch, class), so ONNX's per-class output limit is the core's ``K``.
Cases outside the contract are listed with why in onnx_nms_cases.OUTSIDE.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx_nms_cases import OUTSIDE, load_cases, outside_reason, parameters

from edgecv.plugins.batched_nms import DOMAIN, NAMESPACE, OP_TYPE, VERSION, threshold_text
from edgecv.plugins.twins import session_options


def test_every_case_is_run_or_documented_outside() -> None:
    loaded = load_cases()
    assert len(loaded) >= 10, sorted(loaded)  # onnx 1.23 ships 11
    outside = sorted(name for name, case in loaded.items() if outside_reason(case) is not None)
    assert outside == sorted(OUTSIDE), "a case left the contract or a new one appeared: update OUTSIDE"


def test_kernel_core_gives_onnx_expected_indices(nms_kernel_outputs: dict) -> None:
    fitting = {name: case for name, case in load_cases().items() if outside_reason(case) is None}
    found = nms_kernel_outputs["onnx_cases"]
    assert sorted(found) == sorted(fitting)
    for name, case in fitting.items():
        np.testing.assert_array_equal(found[name], case["expected"], err_msg=name)


def twin_session(max_det: int, iou: float, conf: float) -> ort.InferenceSession:
    """A one-node model: BatchedNMS in its documented node form, K = ONNX's per-class limit."""
    node = onnx.helper.make_node(OP_TYPE, ["boxes", "scores"], ["num_dets", "det_boxes", "det_scores", "det_classes"],
                                 domain=DOMAIN, plugin_namespace=NAMESPACE, plugin_version=VERSION, max_det=max_det,
                                 iou_threshold=threshold_text(iou), conf_threshold=threshold_text(conf),
                                 max_candidates=0, class_agnostic=0)
    f, i = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32
    graph = onnx.helper.make_graph(
        [node], "twin", [onnx.helper.make_tensor_value_info("boxes", f, [1, "N", 4]),
                         onnx.helper.make_tensor_value_info("scores", f, [1, "N", 1])],
        [onnx.helper.make_tensor_value_info("num_dets", i, [1, 1]),
         onnx.helper.make_tensor_value_info("det_boxes", f, [1, max_det, 4]),
         onnx.helper.make_tensor_value_info("det_scores", f, [1, max_det]),
         onnx.helper.make_tensor_value_info("det_classes", i, [1, max_det])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                         onnx.helper.make_opsetid(DOMAIN, 1)])
    return ort.InferenceSession(model.SerializeToString(), session_options(["BatchedNMS"]),
                                providers=["CPUExecutionProvider"])


def test_twin_in_onnxruntime_gives_onnx_expected_selection() -> None:
    ran = 0
    for name, case in load_cases().items():
        if outside_reason(case) is not None:
            continue
        boxes, scores = case["inputs"][0], case["inputs"][1]
        max_out, iou, score = parameters(case)
        session = twin_session(max_out, iou, score)
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                num, det_boxes, det_scores, det_classes = session.run(
                    None, {"boxes": boxes[b][None], "scores": scores[b, c][None, :, None]})
                want = case["expected"][(case["expected"][:, 0] == b) & (case["expected"][:, 1] == c), 2]
                n = int(num[0, 0])
                assert n == want.size, f"{name} b{b} c{c}: {n} kept, ONNX expects {want.size}"
                np.testing.assert_array_equal(det_boxes[0, :n], boxes[b][want], err_msg=name)
                np.testing.assert_array_equal(det_scores[0, :n], scores[b, c][want], err_msg=name)
                assert not det_classes.any()
        ran += 1
    assert ran == len(load_cases()) - len(OUTSIDE), ran
