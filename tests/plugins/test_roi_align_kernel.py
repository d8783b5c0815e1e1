"""edgecv::MultiLevelRoIAlign: the Triton kernel run by Triton's interpreter on the CPU
(TRITON_INTERPRET=1, in one subprocess so the setting does not leak into this process, where the
same kernel is compiled for the GPU targets), the CPU twin (numpy, and as an ONNX Runtime custom op),
torchvision's ``MultiScaleRoIAlign`` / ``roi_align``, and the ONNX operator test cases for RoiAlign
shipped in the installed ``onnx`` package."""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from onnx import TensorProto, helper, numpy_helper

from edgecv.export.rcnn_ops import level_of
from edgecv.plugins.roi_align import DOMAIN, OP_TYPE, level_table, reachable_levels, twin

TOL = 1e-5
SIDE = 256  # network input side of the synthetic pyramids
#: ONNX's RoiAlign cases outside this op's contract, and why.
ONNX_OUTSIDE = {
    "test_roialign_mode_max": "mode='max' (max of the bilinear samples per bin): the op averages, as "
                              "torchvision's roi_align and the R-CNN heads do",
}

# Runs in the subprocess: every case through the interpreted kernel, outputs saved by case name.
CHILD = """
import sys, numpy as np, torch
from edgecv.plugins.roi_align import kernel
data = dict(np.load(sys.argv[1], allow_pickle=True))
out = {}
for name in sorted({k.split(":")[0] for k in data}):
    get = lambda key: data[f"{name}:{key}"]
    p = get("params").item()
    if p["kind"] == "multi":
        feats = [torch.from_numpy(get(f"f{i}")) for i in range(p["levels"])]
        out[name] = kernel.multilevel_roi_align(feats, p["scales"], torch.from_numpy(get("boxes")), p["size"],
                                                p["sampling"], p["aligned"]).numpy()
    else:
        out[name] = kernel.roi_align(torch.from_numpy(get("x")), torch.from_numpy(get("rois")),
                                     torch.from_numpy(get("index")), p["scale"], p["size"], p["sampling"],
                                     p["aligned"]).numpy()
np.savez(sys.argv[2], **out)
"""


def pyramid(rng: np.random.Generator, batch: int, channels: int, levels: int = 4) -> list[np.ndarray]:
    """FPN-like maps of a ``SIDE`` input, strides 4, 8, 16, ... (levels 2, 3, ...)."""
    return [rng.standard_normal((batch, channels, SIDE >> (2 + i), SIDE >> (2 + i))).astype(np.float32)
            for i in range(levels)]


def random_boxes(rng: np.random.Generator, batch: int, count: int, low: float = 2, high: float = 300) -> np.ndarray:
    xy = rng.uniform(-20, SIDE, (batch, count, 2))
    wh = np.exp(rng.uniform(np.log(low), np.log(high), (batch, count, 2)))
    return np.concatenate([xy, xy + wh], -1).astype(np.float32)


def adversarial_boxes() -> np.ndarray:
    """``[2, 12, 4]``: degenerate, flipped, out-of-image, level-boundary and huge boxes."""
    boxes = [[10, 10, 10, 10], [30, 40, 30, 90], [50, 50, 20, 20], [-80, -80, -10, -10],
             [SIDE + 5, 10, SIDE + 60, 70], [-30, -30, SIDE + 30, SIDE + 30], [0, 0, 112, 112], [5, 5, 229, 229],
             [0, 0, 448, 448], [100.5, 60.25, 100.75, 60.5], [0, 0, 1e4, 1e4], [SIDE - 1, SIDE - 1, SIDE, SIDE]]
    second = [[b[0] + 3, b[1] + 1, b[2] + 3, b[3] + 1] for b in boxes]
    return np.asarray([boxes, second], np.float32)


def cases() -> dict[str, dict]:
    """name -> {params, arrays}: the multi-level and single-level (ONNX) inputs the kernel gets."""
    rng = np.random.default_rng(0)
    found: dict[str, dict] = {}
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]

    def multi(name: str, feats: list, boxes: np.ndarray, size: int, sampling: int, aligned: bool, sc=scales):
        found[name] = {"params": {"kind": "multi", "levels": len(feats), "scales": sc, "size": size,
                                  "sampling": sampling, "aligned": aligned},
                       "boxes": boxes, **{f"f{i}": f for i, f in enumerate(feats)}}

    multi("random", pyramid(rng, 2, 16), random_boxes(rng, 2, 48), 7, 2, False)
    multi("random_mask14", pyramid(rng, 1, 8), random_boxes(rng, 1, 24), 14, 2, False)
    multi("random_aligned_s3", pyramid(rng, 2, 8), random_boxes(rng, 2, 16), 5, 3, True)
    multi("adaptive", pyramid(rng, 1, 4), random_boxes(rng, 1, 6, 2, 60), 3, 0, False)
    multi("adaptive_aligned", pyramid(rng, 1, 4), random_boxes(rng, 1, 6, 2, 60), 3, 0, True)
    multi("adversarial", pyramid(rng, 2, 8), adversarial_boxes(), 7, 2, False)
    multi("adversarial_aligned", pyramid(rng, 2, 8), adversarial_boxes(), 7, 2, True)
    small = random_boxes(rng, 2, 16, 2, 40)  # all at level 2 (finest): levels 3-5 empty
    multi("levels_empty", pyramid(rng, 2, 8), small, 7, 2, False)
    multi("no_rois", pyramid(rng, 2, 8), np.zeros((2, 0, 4), np.float32), 7, 2, False)
    same = [rng.standard_normal((1, 8, 8, 8)).astype(np.float32) for _ in range(2)]  # MobileNetV3 FPN: 2 x 1/32
    multi("two_maps_one_level", same, random_boxes(rng, 1, 10), 7, 2, False, [1 / 32, 1 / 32])
    for name, case in onnx_cases().items():
        if name not in ONNX_OUTSIDE:
            found[name] = case
    return found


@functools.lru_cache(maxsize=1)
def onnx_cases() -> dict[str, dict]:
    """The RoiAlign cases of ``onnx/backend/test/case/node/roialign.py`` (node, inputs, expected output)."""
    from onnx.backend.test.case import node as registry

    registry._TargetOpType = "RoiAlign"  # importing the definitions registers their cases, RoiAlign's only
    try:
        importlib.import_module("onnx.backend.test.case.node.roialign")
    finally:
        registry._TargetOpType = None
    found = {}
    for case in registry._NodeTestCases:
        if case.name.startswith("test_roialign"):
            node = case.model.graph.node[0]
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            (x, rois, index), (expected,) = case.data_sets[0]
            mode = attrs.get("coordinate_transformation_mode", b"half_pixel")
            found[case.name] = {"params": {"kind": "single", "scale": attrs.get("spatial_scale", 1.0),
                                           "size": attrs["output_height"], "sampling": attrs["sampling_ratio"],
                                           "aligned": mode == b"half_pixel", "mode": attrs.get("mode", b"avg"),
                                           "width": attrs["output_width"], "rtol": case.rtol, "atol": case.atol},
                                "x": x, "rois": rois, "index": index, "expected": expected}
    return found


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory) -> tuple[dict, dict]:
    """``(cases, outputs)``: every case through the kernel under TRITON_INTERPRET=1 (one subprocess)."""
    folder = tmp_path_factory.mktemp("roi_align")
    found = cases()
    flat = {f"{name}:{key}": (np.asarray(value, dtype=object) if key == "params" else value)
            for name, case in found.items() for key, value in case.items()}
    np.savez(folder / "in.npz", **flat)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder / "in.npz"), str(folder / "out.npz")],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return found, dict(np.load(folder / "out.npz"))


def reference(case: dict) -> np.ndarray:
    """torchvision: ``roi_align`` of each RoI on the level LevelMapper gives it (area <= 0: finest)."""
    p = case["params"]
    feats = [torch.from_numpy(case[f"f{i}"]) for i in range(p["levels"])]
    boxes = torch.from_numpy(case["boxes"])
    batch, count = boxes.shape[:2]
    flat = boxes.reshape(-1, 4)
    k_min = round(-np.log2(p["scales"][0]))
    level = level_of(flat, k_min, k_min + reachable_levels(p["scales"]) - 1)
    area = (flat[:, 2] - flat[:, 0]) * (flat[:, 3] - flat[:, 1])
    level = torch.where(area > 0, level, torch.zeros_like(level))
    image = torch.arange(batch).repeat_interleave(count).float().unsqueeze(1)
    rois = torch.cat([image, flat], 1)
    channels, size = feats[0].shape[1], p["size"]
    out = torch.zeros(batch * count, channels, size, size)
    for i in range(len(flat)):
        lv = int(level[i])
        out[i] = torchvision.ops.roi_align(feats[lv], rois[i:i + 1], size, p["scales"][lv], p["sampling"],
                                           p["aligned"])[0]
    return out.numpy()


def twin_of(case: dict) -> np.ndarray:
    p = case["params"]
    if p["kind"] == "single":
        x = case["x"]
        table = np.asarray([[p["scale"], x.shape[2], x.shape[3], 0]], np.float32)
        return twin.multilevel_roi_align(x.reshape(x.shape[0], x.shape[1], -1), case["rois"], table, p["size"],
                                         p["sampling"], p["aligned"], image=case["index"])
    feats = [case[f"f{i}"] for i in range(p["levels"])]
    table = level_table([f.shape[-2:] for f in feats], p["scales"])
    flat = np.concatenate([f.reshape(f.shape[0], f.shape[1], -1) for f in feats[:len(table)]], 2)
    return twin.multilevel_roi_align(flat, case["boxes"], table, p["size"], p["sampling"], p["aligned"])


def test_kernel_and_twin_match_torchvision_roi_align(interpreted) -> None:
    """Random, adaptive-grid, adversarial (degenerate, flipped, out-of-image, level-boundary, huge),
    levels left empty, no RoIs, two maps of one level: kernel, twin and torchvision within 1e-5."""
    found, outputs = interpreted
    names = [n for n, c in found.items() if c["params"]["kind"] == "multi"]
    assert len(names) == 10
    for name in names:
        case = found[name]
        want, kernel_out, twin_out = reference(case), outputs[name], twin_of(case)
        count = case["boxes"].shape[0] * case["boxes"].shape[1]
        assert kernel_out.shape == twin_out.shape == (count, case["f0"].shape[1], case["params"]["size"],
                                                      case["params"]["size"]), name
        np.testing.assert_allclose(kernel_out, want, atol=TOL, rtol=0, err_msg=name)
        np.testing.assert_allclose(twin_out, want, atol=TOL, rtol=0, err_msg=name)
        np.testing.assert_allclose(kernel_out, twin_out, atol=TOL, rtol=0, err_msg=name)
        if count:
            assert np.abs(want).max() > 0.05, name  # the comparison is about values, not zeros
    levels = level_of(torch.from_numpy(found["levels_empty"]["boxes"]).reshape(-1, 4), 2, 5)
    assert set(levels.tolist()) == {0}  # three of the four levels get no RoI
    assert outputs["no_rois"].shape == (0, 8, 7, 7)


def test_kernel_matches_torchvision_multiscale_roi_align(interpreted) -> None:
    """torchvision's own MultiScaleRoIAlign (level mapping and scales inferred from the maps)."""
    from torchvision.ops import MultiScaleRoIAlign

    found, outputs = interpreted
    for name in ("random", "random_mask14", "levels_empty", "two_maps_one_level"):
        case = found[name]
        p = case["params"]
        keys = [str(i) for i in range(p["levels"])]
        feats = {k: torch.from_numpy(case[f"f{i}"]) for i, k in enumerate(keys)}
        side = round(case["f0"].shape[-1] / p["scales"][0])
        pool = MultiScaleRoIAlign(keys, p["size"], p["sampling"])
        boxes = [torch.from_numpy(b) for b in case["boxes"]]
        want = pool(feats, boxes, [(side, side)] * len(boxes)).numpy()
        np.testing.assert_allclose(outputs[name], want, atol=TOL, rtol=0, err_msg=name)


def test_onnx_roialign_conformance_cases(interpreted) -> None:
    """ONNX's RoiAlign cases (onnx/backend/test/case/node/roialign.py) through the kernel's
    single-level path and the twin; the cases outside the contract are the listed ones."""
    found, outputs = interpreted
    shipped = onnx_cases()
    assert set(shipped) == {"test_roialign_aligned_false", "test_roialign_aligned_true", "test_roialign_mode_max"}
    assert shipped["test_roialign_mode_max"]["params"]["mode"] == b"max"  # why it is outside
    inside = sorted(set(shipped) - set(ONNX_OUTSIDE))
    assert inside == ["test_roialign_aligned_false", "test_roialign_aligned_true"]
    for name in inside:
        case = found[name]
        p = case["params"]
        assert p["mode"] == b"avg" and p["size"] == p["width"]
        for got in (outputs[name], twin_of(case)):
            np.testing.assert_allclose(got, case["expected"], rtol=p["rtol"], atol=p["atol"], err_msg=name)
        # ONNX rounds its expected values to 4 decimals; against torchvision the kernel is exact.
        want = torchvision.ops.roi_align(torch.from_numpy(case["x"]), torch.cat(
            [torch.from_numpy(case["index"]).float()[:, None], torch.from_numpy(case["rois"])], 1),
            p["size"], p["scale"], p["sampling"], p["aligned"]).numpy()
        np.testing.assert_allclose(outputs[name], want, atol=TOL, rtol=0, err_msg=name)


def test_twin_as_onnx_runtime_custom_op(interpreted) -> None:
    """The node form in a real ONNX Runtime session (onnxruntime-extensions' Python op) gives the
    kernel's values; an image with no RoIs gives ``[0, C, P, P]``."""
    found, outputs = interpreted
    for name in ("adversarial", "no_rois"):
        case = found[name]
        p = case["params"]
        feats = [case[f"f{i}"] for i in range(p["levels"])]
        table = level_table([f.shape[-2:] for f in feats], p["scales"])
        flat = np.concatenate([f.reshape(f.shape[0], f.shape[1], -1) for f in feats], 2)
        model = single_node_model(flat.shape, case["boxes"].shape, table, p["size"], p["sampling"], p["aligned"])
        session = ort.InferenceSession(model.SerializeToString(), twin.session_options(),
                                       providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"features": flat, "rois": case["boxes"]})
        assert got.shape == outputs[name].shape
        np.testing.assert_allclose(got, outputs[name], atol=TOL, rtol=0, err_msg=name)


def single_node_model(features: tuple, rois: tuple, table: np.ndarray, size: int, sampling: int,
                      aligned: bool) -> onnx.ModelProto:
    node = helper.make_node(OP_TYPE, ["features", "rois", "levels"], ["pooled"], domain=DOMAIN, plugin_version="1",
                            plugin_namespace="edgecv", output_size=size, sampling_ratio=sampling, aligned=int(aligned))
    graph = helper.make_graph([node], "roi_align", [helper.make_tensor_value_info("features", TensorProto.FLOAT, features),
                                                    helper.make_tensor_value_info("rois", TensorProto.FLOAT, rois)],
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(table, "levels")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])


def test_level_table_refuses_non_fpn_scales() -> None:
    assert reachable_levels([1 / 4, 1 / 8, 1 / 16]) == 3 and reachable_levels([1 / 32, 1 / 32]) == 1
    for bad in ([1 / 4, 1 / 16], [1 / 8, 1 / 4], [0.3], []):
        with pytest.raises(ValueError, match="levels: expected"):
            reachable_levels(bad)
