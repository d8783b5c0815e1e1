"""The ONNX operator test cases for NonMaxSuppression, read from the installed ``onnx`` package.

``onnx/backend/test/case/node/nonmaxsuppression.py`` defines each case as a static ``export_*``
method that builds the node and arrays and hands them to ``expect(node, inputs, outputs, name)``.
:func:`load_cases` runs those methods with ``expect`` swapped for a collector, so inputs and
expected outputs come from ONNX's definitions, not from a copy.

Cases outside edgecv's NMS contract (:data:`OUTSIDE`, with why) are recognised by rule, and the
rule's result is compared with that documented list by the tests, so a new ONNX release with new
cases is noticed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ONNX case name -> why it is outside the contract of edgecv's NMS (kernel core and twin).
OUTSIDE = {
    "test_nonmaxsuppression_center_point_box_format":
        "center_point_box=1 (boxes as cx, cy, w, h): edgecv's NMS takes corner boxes (x1, y1, x2, y2), which every "
        "detector decode in edgecv emits; a centre-format head is converted by its decode, not by NMS",
    "test_nonmaxsuppression_flipped_coordinates":
        "corners given in either order (x1 > x2): ONNX normalises each box with min/max, edgecv's contract requires "
        "x1 <= x2 and y1 <= y2 (as torchvision's nms does), which the detector decode guarantees",
}


def load_cases() -> dict[str, dict[str, Any]]:
    """name -> {"attrs": node attributes, "inputs": [boxes, scores, max_output, iou, score_threshold], "expected"}."""
    import onnx
    import onnx.backend.test.case.node.nonmaxsuppression as definitions

    captured: dict[str, dict[str, Any]] = {}

    def collect(node: Any, inputs: list, outputs: list, name: str, **_: Any) -> None:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        captured[name] = {"attrs": attrs, "inputs": [np.asarray(i) for i in inputs], "expected": np.asarray(outputs[0])}

    original = definitions.expect
    definitions.expect = collect
    try:
        for attr in sorted(vars(definitions.NonMaxSuppression)):
            if attr.startswith("export"):
                getattr(definitions.NonMaxSuppression, attr)()
    finally:
        definitions.expect = original
    return captured


def outside_reason(case: dict[str, Any]) -> str | None:
    """Why a case is outside the contract (by rule), or None when it fits."""
    if case["attrs"].get("center_point_box", 0) != 0:
        return "center_point_box"
    boxes = case["inputs"][0]
    if np.any(boxes[..., 2] < boxes[..., 0]) or np.any(boxes[..., 3] < boxes[..., 1]):
        return "flipped"
    return None


def fitting_cases() -> dict[str, dict[str, Any]]:
    return {name: case for name, case in load_cases().items() if outside_reason(case) is None}


def parameters(case: dict[str, Any]) -> tuple[int, float, float]:
    """``(max_output_boxes_per_class, iou_threshold, score_threshold)``; absent inputs take ONNX's defaults."""
    inputs = case["inputs"]
    max_out = int(inputs[2].reshape(-1)[0]) if len(inputs) > 2 else 0
    iou = float(inputs[3].reshape(-1)[0]) if len(inputs) > 3 else 0.0
    score = float(inputs[4].reshape(-1)[0]) if len(inputs) > 4 else float(np.finfo(np.float32).min)
    return max_out, iou, score


def kernel_core_indices(case: dict[str, Any]) -> np.ndarray:
    """``selected_indices [M,3]`` (batch, class, box) from the kernel's NMS core, one call per (batch, class)."""
    import torch

    from edgecv.plugins.batched_nms.kernel import nms_indices

    boxes, scores = case["inputs"][0], case["inputs"][1]
    max_out, iou, score = parameters(case)
    rows = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            idx = nms_indices(torch.from_numpy(boxes[b]), torch.from_numpy(scores[b, c]), max_output=max_out,
                              iou_threshold=iou, score_threshold=score).numpy()
            rows += [[b, c, int(i)] for i in idx]
    return np.asarray(rows, np.int64).reshape(-1, 3)
