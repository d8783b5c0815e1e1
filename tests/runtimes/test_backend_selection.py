"""Backend registry, OpenVINO and TensorRT backends: what can be checked on a CPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import ArtifactError, BackendError, MissingDependencyError
from edgecv.runtimes.backends import AUTO_BY_SUFFIX, LOADERS, open_backend, resolve_backend
from edgecv.runtimes.backends.openvino import compile_config
from edgecv.runtimes.backends.tensorrt import check_compatibility, read_engine_json
from edgecv.runtimes.predictor import Predictor

OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not OPENVINO, reason="openvino not installed")


def test_auto_picks_by_suffix() -> None:
    assert resolve_backend(Path("m.engine")) == resolve_backend(Path("m.PLAN")) == "tensorrt"
    assert resolve_backend(Path("m.onnx")) == "onnxruntime"
    assert set(AUTO_BY_SUFFIX.values()) <= set(LOADERS)


def test_unknown_backend_option_is_rejected(toy_artifact: Path) -> None:
    with pytest.raises(BackendError, match=r"backend 'onnxruntime': expected options among .*found \['precision'\]"):
        open_backend(toy_artifact, "onnxruntime", precision="f32")
    with pytest.raises(BackendError, match="graph_optimization: expected one of"):
        open_backend(toy_artifact, "onnxruntime", graph_optimization="max")


def test_onnxruntime_graph_level_and_io_binding(toy_artifact: Path, toy_reference) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    tensor = np.random.default_rng(0).random((2, 3, 320, 320), np.float32)
    with open_backend(toy_artifact, "onnxruntime", graph_optimization="basic", io_binding=True) as backend:
        assert backend.session.get_session_options().graph_optimization_level == \
            ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        out = backend.infer(tensor)
    for name, value in toy_reference(tensor).items():
        np.testing.assert_allclose(out[name], value, atol=1e-5)


def test_openvino_config_is_pure() -> None:
    assert compile_config(None, None) == {"PERFORMANCE_HINT": "LATENCY"}
    assert compile_config("FP32", 2) == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                         "INFERENCE_NUM_THREADS": "2"}
    with pytest.raises(BackendError, match="openvino precision: expected None or one of"):
        compile_config("int4", None)


def test_missing_openvino_names_the_extra(toy_artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install edgecv\[openvino\]"):
        Predictor(toy_artifact, backend="openvino")


def test_missing_tensorrt_names_the_extra(fake_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"pip install edgecv\[tensorrt\]"):
        Predictor(fake_engine)  # auto -> tensorrt, device defaults to cuda


@needs_openvino
def test_openvino_reads_metadata_and_matches_reference(toy_artifact: Path, toy_reference) -> None:  # type: ignore[no-untyped-def]
    tensor = np.random.default_rng(1).random((3, 3, 320, 320), np.float32)
    with open_backend(toy_artifact, "openvino", threads=1, precision="f32") as backend:
        assert backend.name == "openvino" and backend.metadata.class_names == ["red", "green", "blue"]
        assert backend.input_names == ["images"]
        assert backend.output_names == ["num_dets", "boxes", "scores", "classes"]
        assert backend.config["INFERENCE_PRECISION_HINT"] == "f32"
        out = backend.infer(tensor)
    for name, value in toy_reference(tensor).items():
        np.testing.assert_allclose(out[name], value, atol=1e-4)
    with pytest.raises(BackendError, match="closed"):
        backend.infer(tensor)


@needs_openvino
def test_openvino_errors(toy_artifact: Path, plain_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not an edgecv export"):
        open_backend(plain_onnx, "openvino")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ArtifactError, match="expected an ONNX model"):
        open_backend(bad, "openvino")
    with pytest.raises(BackendError, match="runs on device 'cpu'"):
        open_backend(toy_artifact, "openvino", device="cuda")
    with open_backend(toy_artifact, "openvino") as backend, \
            pytest.raises(BackendError, match=r"expected shape.*found \[1, 3, 64, 64\]"):
        backend.infer(np.zeros((1, 3, 64, 64), np.float32))


def test_engine_json_and_compatibility(tmp_path: Path, fake_engine: Path) -> None:
    meta, facts = read_engine_json(fake_engine)
    assert meta.class_names == ["a", "b"] and facts["compute_capability"] == "8.6"
    check_compatibility(facts, "10.13.3.9", "8.6", "m.engine")
    with pytest.raises(ArtifactError, match=r"built with TensorRT 10.13.3.9, this machine has TensorRT 11.4.0.106; "
                                            r"built for compute capability 8.6, this GPU is 8.9.*edgecv build"):
        check_compatibility(facts, "11.4.0.106", "8.9", "m.engine")
    (tmp_path / "model.engine.json").unlink()
    with pytest.raises(ArtifactError, match=r"model.engine.json.*edgecv build"):
        read_engine_json(fake_engine)


def test_tensorrt_on_cpu_device_says_what_to_do(fake_engine: Path) -> None:
    with pytest.raises(BackendError, match="backend 'tensorrt' runs on 'cuda'"):
        Predictor(fake_engine, device="cpu")


@pytest.mark.gpu
def test_tensorrt_engine_matches_onnxruntime(demo_onnx_160: Path, tmp_path: Path, shapes_frames) -> None:  # type: ignore[no-untyped-def]
    from edgecv.export.tensorrt_build import build_engine

    engine = build_engine(demo_onnx_160, tmp_path / "model.engine", workspace_mb=512)
    with Predictor(engine) as trt_predictor, Predictor(demo_onnx_160) as ort_predictor:
        for frame in shapes_frames:
            a, b = trt_predictor(frame), ort_predictor(frame)
            assert len(a) == len(b)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None,
                    reason="cuda-python not installed")
def test_every_cudart_name_used_exists_in_cuda_python() -> None:
    import ast

    from cuda.bindings import runtime as cudart

    used: set[tuple[str, ...]] = set()
    for module in ("edgecv/runtimes/backends/tensorrt.py", "edgecv/export/tensorrt_build.py"):
        tree = ast.parse((Path(__file__).resolve().parents[2] / module).read_text())
        for node in ast.walk(tree):
            chain: list[str] = []
            while isinstance(node, ast.Attribute):
                chain.insert(0, node.attr)
                node = node.value
            if chain and isinstance(node, ast.Name) and node.id == "cudart":
                used.add(tuple(chain))
    assert ("cudaMemcpyAsync",) in used
    for chain in used:
        obj = cudart
        for part in chain:
            assert hasattr(obj, part), f"cuda.bindings.runtime lacks {'.'.join(chain)}"
            obj = getattr(obj, part)


@needs_openvino
def test_openvino_runs_int8_qdq_graphs_like_onnxruntime(toy_artifact: Path, tmp_path: Path) -> None:
    """An explicit Quantize/DequantizeLinear graph (uint8 input quantisation) gives the same outputs."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(toy_artifact))
    for node in model.graph.node:
        node.input[:] = ["images_dq" if name == "images" else name for name in node.input]
    model.graph.initializer.extend([numpy_helper.from_array(np.array(1 / 255, np.float32), "q_scale"),
                                    numpy_helper.from_array(np.array(0, np.uint8), "q_zero")])
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["images_q", "q_scale", "q_zero"], ["images_dq"]))
    model.graph.node.insert(0, helper.make_node("QuantizeLinear", ["images", "q_scale", "q_zero"], ["images_q"]))
    path = tmp_path / "toy_qdq.onnx"
    onnx.save(model, path)
    tensor = (np.random.default_rng(2).integers(0, 256, (2, 3, 320, 320)) / 255).astype(np.float32)
    with open_backend(path, "onnxruntime") as ort_backend, open_backend(path, "openvino", precision="f32") as ov:
        expected, got = ort_backend.infer(tensor), ov.infer(tensor)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-3)
