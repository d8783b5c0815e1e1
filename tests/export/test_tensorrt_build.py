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
TRT_MODULES = [REPO / "edgecv" / "export" / "tensorrt_build.py", REPO / "edgecv" / "runtimes" / "backends" / "tensorrt.py",
               REPO / "edgecv" / "runtimes" / "backends" / "tensorrt_plugins.py"]
CUDA_API_DIR = REPO / "tests" / "data" / "cuda_api"
#: cuda-bindings versions the pins allow (12.x for tensorrt-cu12, 13.x for tensorrt-cu13), one fixture each.
CUDA_SUPPORTED = ("12.9", "13.5")


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


def test_plan_names_still_import_from_the_build_module() -> None:
    from edgecv.export import tensorrt_build, tensorrt_plan

    for name in ("BuildPlan", "Profile", "check_plugins", "compute_profile", "engine_json_path", "parse_shape",
                 "plan_build", "read_onnx_input"):
        assert getattr(tensorrt_build, name) is getattr(tensorrt_plan, name), name


def test_build_module_imports_no_tensorrt() -> None:
    import os
    import subprocess

    code = ("import sys, edgecv.export.tensorrt_build; "
            "bad = sorted(m for m in sys.modules if m == 'tensorrt' or m.split('.')[0] == 'cuda'); assert not bad, bad")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --- every TensorRT API name used exists in every supported version ---------------------------------------------


def api_names(version: str) -> set[str]:
    lines = (API_DIR / f"{version}.txt").read_text().splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def trt_attribute_names(source: str) -> set[str]:
    """Attributes reached through ``trt`` or through variables holding what a ``trt`` expression returned.

    A small per-function dataflow: ``builder = trt.Builder(logger)`` taints ``builder``, so
    ``builder.create_network`` counts; ``network = builder.create_network(...)`` taints ``network``.
    ``self.engine`` / ``self.context`` and parameters named ``engine`` / ``config`` (TensorRT objects
    handed to helpers) are tainted too.
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
        tainted = {"trt", "engine", "config"}
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


# --- edgecv's call sequence, against a recording stand-in for tensorrt / cuda.bindings (no GPU here) ------------
# These check what edgecv does around TensorRT (order, arguments, None / False handled, files written);
# they claim nothing about TensorRT itself (tests/trt_standin.py).


sys.path.insert(0, str(REPO / "tests"))  # tests/ is not a package (pytest importlib mode)
import trt_standin as standin  # noqa: E402


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_sequence_plugins_before_parse_and_files_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    rec = standin.install(monkeypatch)
    selfreg = standin.compile_plugin(tmp_path / "plugins", "libselfreg_build.so", "self")
    registry_lib = standin.compile_plugin(tmp_path / "plugins", "libcreators_build.so", "registry")
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"earlier cache")
    source = tiny_onnx(tmp_path / "m.onnx", side="s")
    engine = build_engine(source, tmp_path / "out" / "m.engine", min_shape=(1, 3, 64, 64), opt_shape=(2, 3, 96, 96),
                          max_shape=(4, 3, 128, 128), workspace_mb=256, timing_cache=cache,
                          plugins=[selfreg, registry_lib])
    names = rec.names()
    # Plugins: both loaded (the self-registering one by dlopen alone: its load-time constructor ran once),
    # the registry one also through IPluginRegistry.load_library; all before the parser.
    assert standin.is_mapped(selfreg) and ctypes.CDLL(str(selfreg)).edgecv_test_loads() == 1
    assert rec.args("load_library") == [(str(registry_lib.resolve()),)]
    assert names.index("init_libnvinfer_plugins") < names.index("load_library") < names.index("parse_from_file")
    assert rec.args("create_network") == [(1 << 5,)]  # STRONGLY_TYPED
    assert rec.args("set_memory_pool_limit") == [("WORKSPACE", 256 << 20)]
    assert rec.args("set_shape") == [("images", (1, 3, 64, 64), (2, 3, 96, 96), (4, 3, 128, 128))]
    assert rec.args("create_timing_cache") == [(b"earlier cache",)] and rec.args("set_timing_cache") == [(False, True)]
    assert names.index("set_timing_cache") < names.index("build_serialized_network") < names.index("serialize")
    # Files: the plan as built, its json (plugins by name + SHA-256, the engine's own hash), the refreshed cache.
    assert engine.read_bytes() == standin.PLAN and cache.read_bytes() == b"timing-cache-bytes"
    facts = json.loads(engine_json_path(engine).read_text())["tensorrt"]
    assert facts["plugins"] == [{"name": "libselfreg_build.so", "sha256": sha256(selfreg)},
                                {"name": "libcreators_build.so", "sha256": sha256(registry_lib)}]
    assert facts["engine_sha256"] == sha256(engine) and facts["engine_bytes"] == len(standin.PLAN)
    assert facts["compute_capability"] == "8.6" and facts["version"] == "10.13.3.9"
    assert sorted(p.name for p in engine.parent.iterdir()) == ["m.engine", "m.engine.json"]  # no temp files left


def test_second_build_in_one_process_and_registry_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tiny_onnx(tmp_path / "m.onnx")
    lib = standin.compile_plugin(tmp_path, "libcreators_twice.so", "registry")
    rec = standin.install(monkeypatch, standin.Options(load_library_result=None))
    with pytest.warns(UserWarning, match="did not register .*libcreators_twice.so"):  # None: already registered?
        build_engine(source, tmp_path / "a.engine", plugins=[lib])
    build_engine(source, tmp_path / "b.engine", plugins=[lib])  # the same library again: loaded once per process
    assert len(rec.args("load_library")) == 1 and len(rec.args("build_serialized_network")) == 2
    assert (tmp_path / "b.engine.json").is_file()


def test_timing_cache_from_another_gpu_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = standin.install(monkeypatch, standin.Options(timing_cache_accepted=False))
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"cache of another GPU")
    with pytest.warns(UserWarning, match="was not accepted by TensorRT"):
        engine = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", timing_cache=cache)
    assert rec.args("create_timing_cache") == [(b"cache of another GPU",), (b"",)]
    assert [a[-1] for a in rec.args("set_timing_cache")] == [False, True]
    assert cache.read_bytes() == b"timing-cache-bytes" and engine_json_path(engine).is_file()


def test_no_timing_cache_after_build_still_writes_engine_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    standin.install(monkeypatch, standin.Options(timing_cache_returned=False))
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"old")
    with pytest.warns(UserWarning, match="returned no timing cache"):
        engine = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", timing_cache=cache)
    assert engine.read_bytes() == standin.PLAN and engine_json_path(engine).is_file() and cache.read_bytes() == b"old"


def test_failed_json_write_keeps_the_previous_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecv.fileio import WriteError

    standin.install(monkeypatch)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"previous engine")
    engine_json_path(engine).mkdir()  # the json cannot be renamed into place
    with pytest.raises(WriteError, match="m.engine.json"):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), engine)
    assert engine.read_bytes() == b"previous engine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json", "m.onnx"]


@pytest.mark.parametrize(("options", "message"), [
    ({"parse_ok": False}, r"parser rejected .*m\.onnx: parser error 0 \| parser error 1"),
    ({"build_ok": False}, r"TensorRT failed to build an engine from .*m\.onnx"),
])
def test_parser_and_builder_failures_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict,
                                                   message: str) -> None:
    standin.install(monkeypatch, standin.Options(**options))
    with pytest.raises(ExportError, match=message):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine")
    assert not (tmp_path / "m.engine").exists() and not (tmp_path / "m.engine.json").exists()


def test_failed_build_of_a_data_dependent_two_stage_graph_names_the_way_out(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser (stand-in) rejects a graph whose metadata records ``static_shapes: false``: the one
    line names ``--static-shapes``; a graph exported with it, or no two-stage graph, gets no hint."""
    path = tiny_onnx(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    meta = ArtifactMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    standin.install(monkeypatch, standin.Options(parse_ok=False))
    for static, hinted in ((False, True), (True, False), (None, False)):
        meta.fidelity = {} if static is None else {"graph": {"builder": "maskrcnn_tiny", "static_shapes": static}}
        helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
        onnx.save(model, path)
        with pytest.raises(ExportError) as caught:
            build_engine(path, tmp_path / "m.engine")
        assert ("export it again with --static-shapes" in str(caught.value)) == hinted
        assert "\n" not in str(caught.value)


def test_plugins_with_one_file_name_are_refused(tmp_path: Path) -> None:
    a = tmp_path / "a" / "libp.so"
    b = tmp_path / "b" / "libp.so"
    for path in (a, b):
        path.parent.mkdir()
        path.write_bytes(b"\x7fELF" + path.parent.name.encode())
    with pytest.raises(ExportError, match=r"expected distinct file names, found \['libp.so', 'libp.so'\]"):
        plan_build(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", plugins=[a, b])


def test_engine_export_checks_tensorrt_before_exporting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecv.export.api import export_variants

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"pip install edgecv\[tensorrt\]"):
        export_variants("yolo", out=tmp_path / "model.onnx", engine=True, int8={"samples": 8})
    assert not (tmp_path / "model.onnx").exists()  # failed before the export and calibration, not after


# --- `edgecv build`: the plan up to the first TensorRT call, and its errors ---------------------------------------


def cli(*args: object):  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from edgecv.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_build_runs_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = standin.install(monkeypatch)
    lib = standin.compile_plugin(tmp_path, "libselfreg_cli.so", "self")
    source = tiny_onnx(tmp_path / "m.onnx")  # dynamic batch, 64x64
    result = cli("build", source, "--min-shape", "1x3x64x64", "--opt-shape", "2x3x64x64", "--max-shape", "8,3,64,64",
                 "--workspace", 64, "--timing-cache", tmp_path / "t.cache", "--plugin", lib)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "m.engine" in result.output
    assert rec.args("set_shape") == [("images", (1, 3, 64, 64), (2, 3, 64, 64), (8, 3, 64, 64))]
    assert rec.args("set_memory_pool_limit") == [("WORKSPACE", 64 << 20)]
    assert rec.args("create_timing_cache") == [(b"",)]  # no cache yet: an empty one, written after
    assert (tmp_path / "t.cache").read_bytes() == b"timing-cache-bytes"
    doc = json.loads((tmp_path / "m.engine.json").read_text())
    assert doc["tensorrt"]["plugins"] == [{"name": lib.name, "sha256": sha256(lib)}]
    assert doc["tensorrt"]["profiles"] == [{"min": [1, 3, 64, 64], "opt": [2, 3, 64, 64], "max": [8, 3, 64, 64]}]


@pytest.mark.parametrize(("args", "message"), [
    (["--max-shape", "4x3x32x32"], "axis 2 is static in the ONNX graph"),
    (["--opt-shape", "big"], "expected a shape like 1x3x640x640, found 'big'"),
    (["--min-shape", "4x3x64x64", "--max-shape", "2x3x64x64"], "expected min <= opt <= max"),
    (["--workspace", "0"], "workspace_mb: expected a positive number"),
    (["--out", "m.trt"], r"expected a .engine or .plan file"),
    (["--plugin", "nope.so"], "nope.so: no such file"),
])
def test_cli_build_bad_input_is_one_line_before_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         args: list[str], message: str) -> None:
    rec = standin.install(monkeypatch)
    monkeypatch.chdir(tmp_path)
    result = cli("build", tiny_onnx(tmp_path / "m.onnx"), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert rec.calls == []  # refused in the plan, before the first TensorRT call


def test_cli_build_non_edgecv_onnx_and_missing_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli("build", tiny_onnx(tmp_path / "plain.onnx", metadata=False))
    assert result.exit_code == 2 and "is not an edgecv export" in result.output
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    result = cli("build", tiny_onnx(tmp_path / "m.onnx"))
    assert result.exit_code == 2 and "MissingDependency" not in result.output
    assert "needs TensorRT" in result.output and "pip install edgecv[tensorrt]" in result.output
    assert "Traceback" not in result.output  # one message (rich wraps it at the terminal width)
    with pytest.raises(MissingDependencyError) as info:
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine")
    assert "\n" not in str(info.value) and "edgecv[tensorrt-cu13]" in str(info.value)


def cuda_names(version: str) -> set[str]:
    lines = (CUDA_API_DIR / f"{version}.txt").read_text().splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def cudart_attribute_names(source: str) -> set[str]:
    """Names edgecv reaches through cuda-python: ``cudart.X(.Y)`` / ``self._cudart.X`` chains and
    ``from cuda.bindings.<module> import name``."""
    names: set[str] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cuda.bindings"):
            names |= {alias.name for alias in node.names if alias.name != "runtime"}
        if not isinstance(node, ast.Attribute):
            continue
        chain, root = [], node
        while isinstance(root, ast.Attribute):
            chain.append(root.attr)
            root = root.value
        is_cudart = isinstance(root, ast.Name) and root.id == "cudart"
        if isinstance(root, ast.Name) and root.id == "self" and chain[-1] == "_cudart":
            chain.pop()
            is_cudart = True
        if is_cudart:
            names |= set(chain)
    return names


def test_cuda_api_fixtures_are_real_and_small() -> None:
    for version in CUDA_SUPPORTED:
        path = CUDA_API_DIR / f"{version}.txt"
        assert path.stat().st_size < 200_000, f"{path} should stay small"
        assert {"cudaStreamCreate", "cudaMemcpyAsync", "cudaMemcpyHostToDevice", "get_cuda_native_handle"} <= \
            cuda_names(version)
    # CUDA 13 removed the _v2 duplicates of CUDA 12 (cudaMemPrefetchAsync_v2, ...): the lists are real.
    assert "cudaMemPrefetchAsync_v2" in cuda_names("12.9")
    assert "cudaMemPrefetchAsync_v2" not in cuda_names("13.5")


def test_every_cuda_name_edgecv_uses_exists_in_every_supported_version() -> None:
    used: set[str] = set()
    for module in TRT_MODULES:
        used |= cudart_attribute_names(module.read_text())
    assert {"cudaSetDevice", "cudaStreamCreate", "cudaMemcpyAsync", "cudaMemcpyKind", "cudaMemcpyHostToDevice",
            "cudaDevAttrComputeCapabilityMajor", "get_cuda_native_handle"} <= used, sorted(used)
    for version in CUDA_SUPPORTED:
        missing = sorted(used - cuda_names(version))
        assert not missing, f"cuda-bindings {version} lacks {missing} (used by edgecv's TensorRT modules)"
