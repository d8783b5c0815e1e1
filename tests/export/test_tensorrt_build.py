"""TensorRT engine build: the pure-Python plan on a CPU, and the TensorRT API names the code uses.

The API-name test reads ``tests/data/tensorrt_api/<version>.txt`` (made by ``tools/trt_api_names.py``
from the ``tensorrt-cu12-bindings`` wheels) and checks every attribute edgecv's TensorRT modules
reach through ``trt`` -- or through an object a ``trt`` call returned -- exists in every
supported version.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from edgecv.errors import ArtifactError, ExportError, MissingDependencyError
from edgecv.export.tensorrt_build import (
    BuildPlan, Profile, build_engine, check_plugins, compute_profile, engine_json_path, parse_shape, plan_build,
)
from edgecv.metadata import METADATA_KEY, ArtifactMetadata

REPO = Path(__file__).resolve().parents[2]
API_DIR = REPO / "tests" / "data" / "tensorrt_api"
#: TensorRT versions edgecv claims to support, one fixture each.
SUPPORTED = ("10.13", "11.4")
#: Modules that call TensorRT.
TRT_MODULES = [REPO / "edgecv" / "export" / "tensorrt_build.py", REPO / "edgecv" / "runtimes" / "backends" / "tensorrt.py"]


def tiny_onnx(path: Path, batch: int | str = "batch", side: int | str = 64, metadata: bool = True) -> Path:
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["out"], axes=[2, 3], keepdims=0)], "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, side, side])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if metadata:
        dyn = not isinstance(batch, int)
        meta = ArtifactMetadata(task="detect", class_names=["a"], input_shape=[-1 if dyn else batch, 3, -1 if
                                isinstance(side, str) else side, -1 if isinstance(side, str) else side],
                                letterbox_size=[96, 96], dynamic=dyn)
        helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, path)
    return path


def test_profile_defaults_for_dynamic_and_static() -> None:
    assert compute_profile([-1, 3, -1, -1], [96, 128]) == Profile((1, 3, 96, 128), (1, 3, 96, 128), (1, 3, 96, 128))
    assert compute_profile([-1, 3, 64, 64], [64, 64], max_shape=(8, 3, 64, 64)) == \
        Profile((1, 3, 64, 64), (8, 3, 64, 64), (8, 3, 64, 64))
    assert compute_profile([-1, 3, 64, 64], [64, 64], opt_shape=(4, 3, 64, 64), max_shape=(8, 3, 64, 64)) == \
        Profile((1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64))
    assert compute_profile([2, 3, 64, 64], [64, 64]) == Profile(*[(2, 3, 64, 64)] * 3)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_shape": (8, 3, 32, 32)}, r"axis 2 is static in the ONNX graph \(\[-1, 3, 64, 64\]\), expected 64, found 32"),
    ({"opt_shape": (1, 3, 64)}, r"opt_shape: expected 4 dimensions like the ONNX input .*found \[1, 3, 64\]"),
    ({"min_shape": (4, 3, 64, 64), "opt_shape": (2, 3, 64, 64)}, r"expected min <= opt <= max, found min \[4"),
    ({"max_shape": (0, 3, 64, 64)}, r"max_shape: expected positive dimensions, found \[0, 3, 64, 64\]"),
    ({"min_shape": "1x3"}, r"min_shape: expected a shape like"),
])
def test_profile_errors_say_expected_and_found(kwargs: dict, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        compute_profile([-1, 3, 64, 64], [64, 64], **kwargs)


def test_parse_shape() -> None:
    assert parse_shape("1x3x640x640") == (1, 3, 640, 640) == parse_shape("1,3,640,640")
    assert parse_shape(None) is None
    with pytest.raises(ExportError, match="expected a shape like 1x3x640x640, found 'big'"):
        parse_shape("big")


def test_plan_reads_onnx_and_writes_engine_json_document(tmp_path: Path) -> None:
    source = tiny_onnx(tmp_path / "m.onnx", side="s")
    plugin = tmp_path / "libplug.so"
    plugin.write_bytes(b"\x7fELF")
    plan = plan_build(source, tmp_path / "m.engine", max_shape=(4, 3, 96, 96), workspace_mb=256,
                      timing_cache=tmp_path / "t.cache", plugins=[plugin])
    assert isinstance(plan, BuildPlan)
    assert plan.input_name == "images" and plan.onnx_input_shape == [-1, 3, -1, -1]
    assert plan.profiles == [Profile((1, 3, 96, 96), (4, 3, 96, 96), (4, 3, 96, 96))]
    assert plan.workspace_bytes == 256 << 20 and plan.plugins == [plugin]
    assert plan.json_path == tmp_path / "m.engine.json" == engine_json_path(tmp_path / "m.engine")
    doc = plan.engine_json("10.13.3.9", "8.6")
    assert ArtifactMetadata.from_json(json.dumps(doc)).class_names == ["a"]
    assert doc["tensorrt"]["compute_capability"] == "8.6" and doc["tensorrt"]["strongly_typed"] is True
    assert doc["tensorrt"]["profiles"][0]["max"] == [4, 3, 96, 96]
    several = plan_build(source, tmp_path / "m.plan", profiles=[((1, 3, 64, 64),) * 3, ((1, 3, 96, 96),) * 3])
    assert len(several.profiles) == 2


def test_plan_errors(tmp_path: Path) -> None:
    source = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(ExportError, match=r"expected a \.engine or \.plan file, found 'm\.trt'"):
        plan_build(source, tmp_path / "m.trt")
    with pytest.raises(ExportError, match="workspace_mb: expected a positive"):
        plan_build(source, tmp_path / "m.engine", workspace_mb=0)
    with pytest.raises(ExportError, match="either profiles"):
        plan_build(source, tmp_path / "m.engine", profiles=[((1, 3, 64, 64),) * 3], max_shape=(1, 3, 64, 64))
    with pytest.raises(ArtifactError, match="not an edgecv export"):
        plan_build(tiny_onnx(tmp_path / "plain.onnx", metadata=False), tmp_path / "m.engine")
    with pytest.raises(ArtifactError, match="no such file"):
        plan_build(tmp_path / "absent.onnx", tmp_path / "m.engine")
    (tmp_path / "lib.txt").write_text("x")
    with pytest.raises(ExportError, match=r"plugin libraries: .*nope.so: no such file; .*lib.txt: expected a shared"):
        check_plugins([tmp_path / "nope.so", tmp_path / "lib.txt"])


def test_build_without_tensorrt_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"pip install edgecv\[tensorrt\]"):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine")


def test_build_module_imports_no_tensorrt() -> None:
    source = (REPO / "edgecv" / "export" / "tensorrt_build.py").read_text()
    top = [n for n in ast.parse(source).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("tensorrt" in ast.dump(n) or "cuda" in ast.dump(n) for n in top)


# --- every TensorRT API name used exists in every supported version ---------------------------------------------


def api_names(version: str) -> set[str]:
    lines = (API_DIR / f"{version}.txt").read_text().splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def trt_attribute_names(source: str) -> set[str]:
    """Attributes reached through ``trt`` or through variables holding what a ``trt`` expression returned.

    A small per-function dataflow: ``builder = trt.Builder(logger)`` taints ``builder``, so
    ``builder.create_network`` counts; ``network = builder.create_network(...)`` taints ``network``.
    ``self.engine`` / ``self.context`` and a parameter named ``engine`` (the backend's TensorRT
    objects) are tainted too.
    """
    names: set[str] = set()

    def root_tainted(node: ast.AST, tainted: set[str]) -> bool:
        while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                return node.attr in ("engine", "context", "_trt")
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and node.id in tainted

    def collect(node: ast.AST, tainted: set[str]) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and root_tainted(sub.value, tainted):
                names.add(sub.attr)

    for func in [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        tainted = {"trt", "engine"}
        for stmt in ast.walk(func):
            if isinstance(stmt, ast.Assign) and root_tainted(stmt.value, tainted):
                tainted |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
        collect(func, tainted)
    return names


def test_api_fixtures_are_real_and_small() -> None:
    for version in SUPPORTED:
        path = API_DIR / f"{version}.txt"
        assert path.stat().st_size < 200_000, f"{path} should stay small"
        assert {"Builder", "OnnxParser", "STRONGLY_TYPED", "execute_async_v3"} <= api_names(version)
    # The implicit-calibration API TensorRT 11 removed: present in 10.x, absent in 11.x -- the lists are real.
    assert "IInt8EntropyCalibrator2" in api_names("10.13")
    assert "IInt8EntropyCalibrator2" not in api_names("11.4")


def test_every_tensorrt_name_edgecv_uses_exists_in_every_supported_version() -> None:
    used: set[str] = set()
    for module in TRT_MODULES:
        used |= trt_attribute_names(module.read_text())
    assert {"Builder", "NetworkDefinitionCreationFlag", "set_memory_pool_limit", "execute_async_v3",
            "set_tensor_address", "create_network", "parse_from_file", "num_io_tensors", "get_tensor_mode",
            "create_execution_context"} <= used, sorted(used)
    for version in SUPPORTED:
        missing = sorted(used - api_names(version))
        assert not missing, f"TensorRT {version} lacks {missing} (used by edgecv's TensorRT modules)"
