"""edgecv::BatchedNMS: the Triton kernel (interpreted on the CPU) vs torchvision and vs the CPU twin.

The kernel runs once, in a subprocess with TRITON_INTERPRET=1 (conftest.py), on every case of
nms_cases.py: random, exact ties at the pre-selection cut, duplicated boxes and tied scores,
zero-area / out-of-image boxes, class-agnostic, nothing above the threshold, empty inputs and
6,000 boxes (over TensorRT's 5,000-box NMS cap). References: per-class ``torchvision.ops.nms``
(:func:`edgecv.export.nms_reference.nms_reference`), ``torchvision.ops.batched_nms`` and, for the
class-agnostic mode, ``torchvision.ops.nms`` over every (box, class) pair.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from nms_cases import cases

from edgecv.export.nms_reference import nms_reference
from edgecv.plugins.batched_nms.twin import batched_nms_numpy

CASES = cases()


def preselected(scores: np.ndarray, max_candidates: int) -> np.ndarray:
    """``[N] bool``: top boxes by best score, ties to the lower index (ONNX TopK's order)."""
    keep = np.ones(scores.shape[0], bool)
    if max_candidates and scores.shape[0] > max_candidates:
        keep[:] = False
        keep[np.argsort(-scores.max(axis=1), kind="stable")[:max_candidates]] = True
    return keep


def torchvision_reference(boxes: np.ndarray, scores: np.ndarray, attrs: dict) -> tuple:
    """The plugin's semantics from torchvision: pre-selection as a mask, then per-class (or agnostic) nms."""
    k = attrs["max_det"]
    if not attrs["class_agnostic"]:
        masked = scores.copy()
        for b in range(scores.shape[0]):
            masked[b][~preselected(scores[b], attrs["max_candidates"])] = -1.0  # below any threshold
        return nms_reference(boxes, masked, max_det=k, iou_threshold=attrs["iou_threshold"],
                             conf_threshold=attrs["conf_threshold"], max_candidates=None)
    batch = boxes.shape[0]
    out = (np.zeros((batch, 1), np.int32), np.zeros((batch, k, 4), np.float32), np.zeros((batch, k), np.float32),
           np.zeros((batch, k), np.int32))
    for b in range(batch):
        keep = preselected(scores[b], attrs["max_candidates"])
        cls, idx = np.nonzero((scores[b].T > np.float32(attrs["conf_threshold"])) & keep[None, :])  # (class, box) order
        s = scores[b][idx, cls]
        kept = torchvision.ops.nms(torch.from_numpy(boxes[b][idx]), torch.from_numpy(s),
                                   float(np.float32(attrs["iou_threshold"]))).numpy()[:k]
        out[0][b, 0] = kept.size
        out[1][b, : kept.size], out[2][b, : kept.size], out[3][b, : kept.size] = boxes[b][idx[kept]], s[kept], cls[kept]
    return out


def assert_same(found: tuple, expected: tuple, what: str) -> None:
    names = ("num_dets", "boxes", "scores", "classes")
    for name, a, b in zip(names, found, expected):
        assert a.shape == b.shape, f"{what} {name}: shape {a.shape} vs {b.shape}"
        if name == "scores":
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=f"{what} {name}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{what} {name}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_matches_torchvision_and_twin(name: str, nms_kernel_outputs: dict) -> None:
    case = CASES[name]
    result = nms_kernel_outputs[name]
    kernel = tuple(result[f"arr_{i}"] for i in range(4))
    assert [a.dtype for a in kernel] == [np.int32, np.float32, np.float32, np.int32]
    twin = batched_nms_numpy(case["boxes"], case["scores"], **case["attrs"])
    assert_same(kernel, twin, f"{name}: kernel vs twin")
    if case["boxes"].shape[0] and case["boxes"].shape[1]:
        assert_same(kernel, torchvision_reference(case["boxes"], case["scores"], case["attrs"]),
                    f"{name}: kernel vs torchvision")
    num = kernel[0][:, 0]
    for b, n in enumerate(num):  # zero padding after num_dets rows, scores sorted descending
        assert not kernel[1][b, n:].any() and not kernel[2][b, n:].any() and not kernel[3][b, n:].any()
        assert np.all(np.diff(kernel[2][b, :n]) <= 0)


def test_cases_exercise_what_they_claim(nms_kernel_outputs: dict) -> None:
    """Guard against a case generator that no longer produces its adversarial condition."""
    num = {name: nms_kernel_outputs[name]["arr_0"][:, 0] for name in CASES}
    assert num["none_above_conf"].tolist() == [0, 0] and num["empty_n"].tolist() == [0, 0]
    assert num["random"].min() == CASES["random"]["attrs"]["max_det"]  # top-K cut reached
    big = nms_kernel_outputs["over_5000"]
    assert num["over_5000"][0] == 12 and CASES["over_5000"]["scores"][0, :5000].max() < 0.5
    assert big["arr_2"][0, 0] == np.float32(0.99)  # the best box sits past index 5,000 and is found
    ps = CASES["preselect_ties"]
    best = ps["scores"][0].max(axis=1)
    cut = np.sort(best)[::-1][ps["attrs"]["max_candidates"] - 1]
    assert (best == cut).sum() > 1 and (best > cut).sum() < ps["attrs"]["max_candidates"]  # a tie straddles the cut
    deg = CASES["degenerate"]["boxes"][0]
    assert ((deg[:, 2] - deg[:, 0]) * (deg[:, 3] - deg[:, 1]) == 0).sum() >= 14


def test_class_aware_matches_torchvision_batched_nms(nms_kernel_outputs: dict) -> None:
    """torchvision.ops.batched_nms (idxs = class) on every candidate pair keeps what the kernel keeps."""
    case, kernel = CASES["random"], nms_kernel_outputs["random"]
    attrs = case["attrs"]
    for b in range(case["boxes"].shape[0]):
        cls, idx = np.nonzero(case["scores"][b].T > np.float32(attrs["conf_threshold"]))
        s = case["scores"][b][idx, cls]
        kept = torchvision.ops.batched_nms(torch.from_numpy(case["boxes"][b][idx]), torch.from_numpy(s),
                                           torch.from_numpy(cls), attrs["iou_threshold"]).numpy()[: attrs["max_det"]]
        np.testing.assert_array_equal(kernel["arr_3"][b], cls[kept])
        np.testing.assert_array_equal(kernel["arr_1"][b], case["boxes"][b][idx[kept]])
        np.testing.assert_array_equal(kernel["arr_2"][b], s[kept])
