"""The TensorRT backend's own logic on a CPU machine: plugin lookup and verification, engine/json
pairing, the call sequence around TensorRT (a recording stand-in, tests/trt_standin.py: it checks
what edgecv calls and in what order, never what TensorRT does), and the stream handle with the
real cuda-bindings."""

from __future__ import annotations

import ctypes
import json
import shutil
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from edgecv.errors import ArtifactError
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.runtimes.backends import open_backend
from edgecv.runtimes.backends.tensorrt import TensorRtBackend, stream_handle
from edgecv.runtimes.backends.tensorrt_plugins import PLUGIN_PATH_ENV, resolve_plugins

REPO = Path(__file__).resolve().parents[2]


sys.path.insert(0, str(REPO / "tests"))  # tests/ is not a package (pytest importlib mode)
import trt_standin as standin  # noqa: E402


def tiny_onnx(path: Path) -> Path:
    import onnx

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["out"])], "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 64, 64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    meta = ArtifactMetadata(task="detect", class_names=["a"], input_shape=[-1, 3, 64, 64], letterbox_size=[64, 64],
                            dynamic=True)
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, path)
    return path


def deployed_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin_kind: str = "registry",
                    plugin_name: str = "libdeploy.so") -> tuple[Path, Path]:
    """Build (stand-in) an engine with one real plugin library, then move the engine + json to a
    'deploy' folder without the library, as a deployment container would have it.
    Returns ``(engine in deploy/, plugin library in build/)``."""
    build = tmp_path / "build"
    library = standin.compile_plugin(build / "plugins", plugin_name, plugin_kind)
    standin.install(monkeypatch)
    from edgecv.export.tensorrt_build import build_engine

    engine = build_engine(tiny_onnx(build / "m.onnx"), build / "m.engine", plugins=[library])
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for path in (engine, engine.with_name("m.engine.json")):
        shutil.move(path, deploy / path.name)
    return deploy / "m.engine", library


def test_plugin_found_on_env_path_is_loaded_before_deserialize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    engine, library = deployed_engine(tmp_path, monkeypatch, plugin_name="libenv.so")
    shared = tmp_path / "opt" / "plugins"
    shared.mkdir(parents=True)
    shutil.copy(library, shared / library.name)
    monkeypatch.setenv(PLUGIN_PATH_ENV, f"{tmp_path / 'empty'}:{shared}")
    rec = standin.install(monkeypatch)  # a fresh recording for the runtime side
    backend = TensorRtBackend.open(engine)
    names = rec.names()
    assert rec.args("load_library") == [(str((shared / library.name).resolve()),)]
    assert names.index("init_libnvinfer_plugins") < names.index("load_library") < names.index("deserialize_cuda_engine")
    backend.close()


def test_plugin_found_nowhere_names_every_place_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _ = deployed_engine(tmp_path, monkeypatch, plugin_name="libnowhere.so")
    monkeypatch.setenv(PLUGIN_PATH_ENV, str(tmp_path / "opt"))
    rec = standin.install(monkeypatch)
    with pytest.raises(ArtifactError) as info:
        TensorRtBackend.open(engine, plugin_paths=[tmp_path / "mine"])
    message = str(info.value)
    assert "expected plugin library libnowhere.so" in message and "\n" not in message
    for place in (tmp_path / "mine", engine.parent, tmp_path / "opt"):
        assert str(place) in message
    assert PLUGIN_PATH_ENV in message and "plugin_paths" in message
    assert rec.calls == []  # refused before TensorRT is touched


def test_plugin_with_another_hash_is_refused_and_a_matching_one_elsewhere_wins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, library = deployed_engine(tmp_path, monkeypatch, plugin_name="libhash.so")
    other = standin.compile_plugin(tmp_path / "other", "libhash.so", "registry", version=2)
    shutil.copy(other, engine.parent / "libhash.so")  # same name beside the engine, other build
    rec = standin.install(monkeypatch)
    with pytest.raises(ArtifactError, match=r"with SHA-256 [0-9a-f]{16}\.\.\., found only other builds: .*deploy"):
        TensorRtBackend.open(engine)
    assert rec.calls == []
    # The right build given by the user is taken, the wrong one beside the engine ignored.
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(library, mine / library.name)  # (the build already loaded build/plugins/ in this process)
    backend = open_backend(engine, "tensorrt", plugin_paths=[mine / library.name])
    assert rec.args("load_library") == [(str((mine / library.name).resolve()),)]
    backend.close()


def test_self_registering_plugin_is_dlopened_without_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    engine, library = deployed_engine(tmp_path, monkeypatch, plugin_kind="self", plugin_name="libselfrt.so")
    shutil.copy(library, engine.parent / library.name)
    rec = standin.install(monkeypatch)
    TensorRtBackend.open(engine).close()
    assert standin.is_mapped(engine.parent / library.name)  # dlopened by edgecv ...
    assert ctypes.CDLL(str(engine.parent / library.name)).edgecv_test_loads() == 1  # ... its constructor ran once
    assert "load_library" not in rec.names() and "deserialize_cuda_engine" in rec.names()


def test_engine_that_is_not_the_one_its_json_describes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, library = deployed_engine(tmp_path, monkeypatch, plugin_name="libpair.so")
    shutil.copy(library, engine.parent / library.name)
    engine.write_bytes(engine.read_bytes()[:-1] + b"X")  # same size, other bytes
    rec = standin.install(monkeypatch)
    with pytest.raises(ArtifactError, match="do not belong together"):
        TensorRtBackend.open(engine)
    assert rec.calls == []


def test_data_dependent_output_shape_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, library = deployed_engine(tmp_path, monkeypatch, plugin_name="libshape.so")
    shutil.copy(library, engine.parent / library.name)
    rec = standin.install(monkeypatch, standin.Options(output_shape=(4, -1, 4)))
    with pytest.raises(ArtifactError, match=r"tensor 'out' has shape \[4, -1, 4\] .*data-dependent shape \(-1\)"):
        TensorRtBackend.open(engine)
    assert all(size > 0 for (size,) in rec.args("cudaMalloc"))  # no negative allocation attempted


def test_infer_from_another_thread_runs_on_the_backend_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    engine, library = deployed_engine(tmp_path, monkeypatch, plugin_name="libthread.so")
    shutil.copy(library, engine.parent / library.name)
    rec = standin.install(monkeypatch)
    backend = TensorRtBackend.open(engine, device="cuda:1")
    caught: list[warnings.WarningMessage] = []

    def call() -> None:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            backend.infer(np.zeros((2, 3, 64, 64), np.float32))
        caught.extend(seen)

    worker = threading.Thread(target=call)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    in_worker = [(name, args) for (name, args), (_, tid) in zip(rec.calls, rec.threads) if tid == worker.ident]
    worker_names = [name for name, _ in in_worker]
    assert in_worker[0] == ("cudaSetDevice", (1,)), worker_names[:5]  # device 1 made current before any copy
    assert worker_names.index("cudaSetDevice") < worker_names.index("cudaMemcpyAsync")
    assert ("execute_async_v3", (0xC0FFEE,)) in in_worker  # the native handle, not int(stream)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]
    backend.close()


def test_deserialize_failure_names_the_loaded_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, library = deployed_engine(tmp_path, monkeypatch, plugin_name="libfail.so")
    shutil.copy(library, engine.parent / library.name)
    standin.install(monkeypatch, standin.Options(deserialize_ok=False))
    with pytest.raises(ArtifactError, match=r"could not deserialize .*plugins loaded: \[.*libfail\.so'\]"):
        TensorRtBackend.open(engine)


def test_name_only_plugin_entries_of_older_jsons_load_unverified(tmp_path: Path) -> None:
    library = standin.compile_plugin(tmp_path, "libold.so", "self")
    with pytest.warns(UserWarning, match="no recorded SHA-256"):
        found = resolve_plugins([{"name": "libold.so", "sha256": None}], tmp_path / "m.engine", env={})
    assert found == [library]


def test_stream_handle_with_the_real_cuda_bindings() -> None:
    """cuda-bindings (installed here with torch) makes stream objects without a GPU: the handle
    edgecv passes to execute_async_v3 is the stream's value; getPtr() is the address *of* it."""
    runtime = pytest.importorskip("cuda.bindings.runtime")  # optional: only the GPU extra requires it
    stream = runtime.cudaStream_t(0x1234)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert stream_handle(stream) == 0x1234
    assert stream.getPtr() != 0x1234


def test_engine_json_with_plugins_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, library = deployed_engine(tmp_path, monkeypatch, plugin_name="libjson.so")
    doc = json.loads(engine.with_name("m.engine.json").read_text())
    assert doc["tensorrt"]["plugins"][0]["name"] == "libjson.so"
    assert resolve_plugins(doc["tensorrt"]["plugins"], engine, [library.parent], env={}) == [library]
