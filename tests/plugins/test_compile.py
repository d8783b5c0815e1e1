"""Every plugin kernel compiles to PTX + cubin for every claimed target (sm_87, sm_89, sm_90) on this CPU-only
machine, with the PTX ISA / minimum driver recorded; unclaimed targets and old drivers are refused clearly."""

from __future__ import annotations

import re

import onnx
import pytest

from edgecv.errors import ExportError
from edgecv.plugins import batched_nms
from edgecv.plugins.compile import PTX_ISA_MIN_DRIVER, TARGETS, check_driver, parse_capability
from edgecv.plugins.engine import graph_plugins, kernel_records
from edgecv.plugins.batched_nms.graph import plugin_node

ATTRS = {"max_det": 100, "iou_threshold": "0.45", "conf_threshold": "0.25", "max_candidates": 3840,
         "class_agnostic": 0}


@pytest.fixture(autouse=True)
def fresh_triton_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh Triton cache: every compile below really runs (LLVM + ptxas), none is read back."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "triton-cache"))


@pytest.mark.parametrize("cc", TARGETS)
def test_batched_nms_compiles_to_cubin(cc: int, tmp_path) -> None:
    (kernel,) = batched_nms.compile_node(ATTRS, cc)
    # Triton targets sm_90a on Hopper (arch-specific PTX: runs on compute capability 9.0 exactly, which is the claim).
    assert kernel.name == "batched_nms_kernel" and kernel.target == ("sm_90a" if cc == 90 else f"sm_{cc}")
    assert kernel.cubin[:4] == b"\x7fELF" and len(kernel.cubin) > 10_000  # a real CUDA ELF from ptxas
    assert f".target {kernel.target}" in kernel.ptx and ".entry batched_nms_kernel" in kernel.ptx
    assert kernel.ptx_isa in PTX_ISA_MIN_DRIVER and kernel.min_driver == PTX_ISA_MIN_DRIVER[kernel.ptx_isa][1]
    # TensorRT passes input pointers, N, C, output pointers: 8 declared parameters (+ Triton's 2 unused scratch).
    entry = kernel.ptx[kernel.ptx.index(".entry batched_nms_kernel"):]
    params = re.findall(r"\.param \.(\w+)", entry[: entry.index(")")])
    assert params[:8] == ["u64", "u64", "u32", "u32", "u64", "u64", "u64", "u64"] and len(params) == 10
    assert any((tmp_path / "triton-cache").rglob("*.cubin"))  # compiled now, into the fresh cache
    # IoU rounds as on the CPU: IEEE division, no approximate division, no fused multiply-add.
    float_ops = set(re.findall(r"\b(div\.\w+\.f32|div\.full\.f32|fma\.\w+\.f32|rcp\.approx\S*)", kernel.ptx))
    assert float_ops == {"div.rn.f32"}, float_ops


def test_older_ptx_isa_lowers_the_driver_floor() -> None:
    (kernel,) = batched_nms.compile_node(ATTRS, 87, ptx_version=84)
    assert kernel.ptx_isa == "8.4" and kernel.min_driver == "550.54.14" and kernel.cubin[:4] == b"\x7fELF"


def test_unclaimed_target_and_old_driver_are_refused() -> None:
    with pytest.raises(ExportError, match=r"claimed for sm_87, sm_89, sm_90, found sm_86"):
        batched_nms.compile_node(ATTRS, "8.6")
    record = {"kernel": "k", "target": "sm_87", "ptx_isa": "8.8", "cuda": "12.9", "min_driver": "575.51.03"}
    with pytest.raises(ExportError, match=r"expected a driver for CUDA >= 12.9 \(driver >= 575.51.03\), found one "
                                          r"for CUDA 12.4"):
        check_driver(record, "12.4")
    check_driver(record, "13.0")
    assert parse_capability("sm_90") == parse_capability("9.0") == parse_capability(90) == 90
    with pytest.raises(ExportError, match="expected a compute capability"):
        parse_capability("ampere")


def one_node_model() -> onnx.ModelProto:
    node = plugin_node(onnx, "raw_boxes", "raw_scores", {"max_det": 50, "iou_threshold": 0.5, "conf_threshold": 0.3,
                                                         "max_candidates": None})
    f, i = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("raw_boxes", f, [1, 100, 4]),
                                                 onnx.helper.make_tensor_value_info("raw_scores", f, [1, 100, 3])],
                                   [onnx.helper.make_tensor_value_info(n, t, None) for n, t in
                                    (("num_dets", i), ("boxes", f), ("scores", f), ("classes", i))])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                        onnx.helper.make_opsetid("ai.onnx.contrib", 1)])


def test_kernel_records_for_the_engine_json() -> None:
    model = one_node_model()
    assert graph_plugins(model) == ["BatchedNMS"]
    (record,) = kernel_records(model, "9.0", driver_cuda="13.0")
    assert record["plugin"] == "edgecv::BatchedNMS" and record["node"] == "edgecv_plugins/BatchedNMS"
    assert record["target"] == "sm_90a" and record["cubin_bytes"] > 10_000 and record["ptx_bytes"] > 10_000
    with pytest.raises(ExportError, match="found one for CUDA 12.2"):
        kernel_records(model, "9.0", driver_cuda="12.2")
    with pytest.raises(ExportError, match="found sm_75"):
        kernel_records(model, "7.5")
