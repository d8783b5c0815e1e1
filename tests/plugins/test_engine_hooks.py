"""The engine build and the TensorRT backend around edgecv's own plugins, against the recording stand-in
for tensorrt / cuda.bindings (tests/trt_standin.py: it checks edgecv's call order and files, not TensorRT).

The kernels are really compiled (Triton, no GPU) for the stand-in GPU's compute capability.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgecv.errors import ArtifactError, ExportError
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.plugins.batched_nms import trt as nms_trt
from edgecv.plugins.batched_nms.graph import plugin_node

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/ is not a package (pytest importlib mode)
import trt_standin as standin  # noqa: E402


def plugin_onnx(path: Path) -> Path:
    """One network input plus a BatchedNMS node (its inputs constants): what plan_build and the parser meet."""
    consts = [helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(value, name))
              for name, value in (("raw_boxes", np.zeros((1, 8, 4), np.float32)),
                                  ("raw_scores", np.zeros((1, 8, 2), np.float32)))]
    nms = plugin_node(onnx, "raw_boxes", "raw_scores", {"max_det": 5, "iou_threshold": 0.5, "conf_threshold": 0.25,
                                                        "max_candidates": 3840})
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["image_out"]), *consts, nms], "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info(n, t, None) for n, t in (("num_dets", TensorProto.INT32),
                                                                ("boxes", TensorProto.FLOAT))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.contrib", 1)], ir_version=8)
    meta = ArtifactMetadata(task="detect", class_names=["a", "b"], input_shape=[1, 3, 64, 64],
                            letterbox_size=[64, 64], dynamic=False)
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, path)
    return path


@pytest.fixture(autouse=True)
def unregistered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from a process where edgecv's tensorrt.plugin definitions are not yet registered."""
    monkeypatch.setattr(nms_trt._registration, "done", False)


def test_build_compiles_checks_registers_before_parse_and_records(tmp_path: Path, monkeypatch) -> None:
    from edgecv.export.tensorrt_build import build_engine

    rec = standin.install(monkeypatch, standin.Options(compute_capability=(8, 7), driver_cuda=12090))
    engine = build_engine(plugin_onnx(tmp_path / "m.trt.onnx"), tmp_path / "m.engine")
    names = rec.names()
    assert rec.args("trtp.register") == [("edgecv::BatchedNMS",)] == rec.args("trtp.aot_impl")
    assert names.index("cudaDriverGetVersion") < names.index("trtp.register") < names.index("parse_from_file")
    facts = json.loads(engine.with_name("m.engine.json").read_text())["tensorrt"]
    (record,) = facts["edgecv_plugins"]
    assert record["plugin"] == "edgecv::BatchedNMS" and record["target"] == "sm_87"
    assert record["ptx_isa"] == "8.8" and record["min_driver"] == "575.51.03" and record["cubin_bytes"] > 10_000
    assert facts["plugins"] == []  # no library file: the kernel is embedded in the engine


@pytest.mark.parametrize(("options", "message"), [
    (standin.Options(compute_capability=(8, 6)), r"claimed for sm_87, sm_89, sm_90, found sm_86"),
    (standin.Options(compute_capability=(8, 9), driver_cuda=12020), r"driver for CUDA >= 12.9 .* found one for CUDA 12.2"),
])
def test_build_refuses_unclaimed_gpu_or_old_driver_before_parsing(tmp_path: Path, monkeypatch, options,
                                                                   message: str) -> None:
    from edgecv.export.tensorrt_build import build_engine

    rec = standin.install(monkeypatch, options)
    with pytest.raises(ExportError, match=message):
        build_engine(plugin_onnx(tmp_path / "m.trt.onnx"), tmp_path / "m.engine")
    assert "parse_from_file" not in rec.names() and not (tmp_path / "m.engine").exists()


def test_backend_registers_before_deserializing(tmp_path: Path, monkeypatch) -> None:
    from edgecv.export.tensorrt_build import build_engine
    from edgecv.runtimes.backends.tensorrt import TensorRtBackend

    options = standin.Options(compute_capability=(8, 7), output_shape=(1, 1), input_shape=(1, 3, 64, 64),
                              profile=((1, 3, 64, 64),) * 3)
    standin.install(monkeypatch, options)
    engine = build_engine(plugin_onnx(tmp_path / "m.trt.onnx"), tmp_path / "m.engine")
    monkeypatch.setattr(nms_trt._registration, "done", False)  # a fresh deployment process
    rec = standin.install(monkeypatch, options)
    TensorRtBackend.open(engine).close()
    names = rec.names()
    assert names.index("trtp.register") < names.index("deserialize_cuda_engine")
    doc_path = engine.with_name("m.engine.json")
    doc = json.loads(doc_path.read_text())
    doc["tensorrt"]["edgecv_plugins"][0]["plugin"] = "edgecv::FromTheFuture"
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=r"uses plugin 'edgecv::FromTheFuture'; expected one this edgecv ships"):
        TensorRtBackend.open(engine)
