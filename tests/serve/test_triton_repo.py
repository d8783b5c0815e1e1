"""``edgecv export-triton`` / ``write_triton_repository``: the written config parsed with Triton's own
protobuf definitions (tritonclient's ``model_config_pb2``) and checked against the graph read by
the ``onnx`` package (names, dims, dtypes, batch), independently of the writer's own check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.errors import ArtifactError, OptionError
from edgecv.metadata import ArtifactMetadata
from edgecv.serve.triton_repo import METADATA_PARAMETER, check_model_dir, write_triton_repository

ONNX_TO_TRITON = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.FLOAT16: "TYPE_FP16", TensorProto.INT32: "TYPE_INT32",
                  TensorProto.INT64: "TYPE_INT64", TensorProto.UINT8: "TYPE_UINT8"}


def parse(model_dir: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def graph_tensors(values) -> list[tuple[str, str, list[int]]]:
    """(name, Triton dtype, dims with -1 for symbolic axes) of ONNX graph inputs / outputs."""
    return [(v.name, ONNX_TO_TRITON[v.type.tensor_type.elem_type],
             [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]) for v in values]


def config_tensors(entries) -> list[tuple[str, str, list[int]]]:
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in entries]


def test_dynamic_artifact_batches_in_triton(demo_onnx_dynamic: Path, tmp_path: Path) -> None:
    model = write_triton_repository(demo_onnx_dynamic, tmp_path, name="yolo", instances=2, queue_delay_us=250)
    folder = tmp_path / "yolo"
    config = parse(folder)
    graph = onnx.load(demo_onnx_dynamic).graph
    inputs, outputs = graph_tensors(graph.input), graph_tensors(graph.output)
    assert all(dims[0] == -1 for _, _, dims in inputs + outputs)  # a --dynamic artifact: batch axis symbolic
    assert config.name == "yolo" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 8
    # batched config: Triton's dims leave out the batch axis
    assert config_tensors(config.input) == [(n, t, d[1:]) for n, t, d in inputs]
    assert config_tensors(config.output) == [(n, t, d[1:]) for n, t, d in outputs]
    assert config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.kind, g.count) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 2)]
    metadata = ArtifactMetadata.from_json(config.parameters[METADATA_PARAMETER].string_value)
    props = {p.key: p.value for p in onnx.load(demo_onnx_dynamic).metadata_props}
    assert metadata == ArtifactMetadata.from_json(props["edgecv"])
    assert json.loads((folder / "edgecv.json").read_text()) == json.loads(metadata.to_json())
    assert (folder / "1" / "model.onnx").read_bytes() == demo_onnx_dynamic.read_bytes()
    assert model.config == config  # what the API returns is what the file says
    assert sorted(p.name for p in folder.rglob("*")) == ["1", "config.pbtxt", "edgecv.json", "model.onnx"]  # no temp files


def test_fixed_batch_artifact_keeps_full_dims(demo_onnx: Path, tmp_path: Path) -> None:
    write_triton_repository(demo_onnx, tmp_path, name="b1", platform="python", threads=2)
    config = parse(tmp_path / "b1")
    graph = onnx.load(demo_onnx).graph
    assert graph_tensors(graph.input)[0][2][0] == 1  # fixed batch 1
    assert config.max_batch_size == 0 and config.backend == "python" and not config.platform
    assert config_tensors(config.input) == graph_tensors(graph.input)  # batch axis kept: no Triton batching
    assert config_tensors(config.output) == graph_tensors(graph.output)
    assert config.WhichOneof("scheduling_choice") is None
    assert config.parameters["intra_op_thread_count"].string_value == "2"  # Triton's ONNX Runtime backend's key
    model_py = (tmp_path / "b1" / "1" / "model.py").read_text()
    assert "class TritonPythonModel" in model_py and "ARTIFACT = \"model.onnx\"" in model_py


def test_check_model_dir_catches_a_config_that_disagrees_with_its_graph(demo_onnx_dynamic: Path, tmp_path: Path) -> None:
    write_triton_repository(demo_onnx_dynamic, tmp_path, name="m", max_batch=4)
    config = parse(tmp_path / "m")
    config.output[1].dims[0] = 50  # boxes K: the graph says 100
    config.input[0].data_type = model_config_pb2.TYPE_FP16
    (tmp_path / "m" / "config.pbtxt").write_text(text_format.MessageToString(config))
    with pytest.raises(ArtifactError) as info:
        check_model_dir(tmp_path / "m")
    message = str(info.value)
    assert "output 'boxes' dims: expected [100, 4]" in message and "found [50, 4]" in message
    assert "input 'images' data_type: expected TYPE_FP32, found TYPE_FP16" in message


def standin_engine(demo_onnx_dynamic: Path, folder: Path, max_batch: int) -> Path:
    """An engine file and its json as `edgecv build` writes them (the plan bytes are opaque to the writer)."""
    plan = b"stand-in plan: the repository writer copies it, it never parses it" * 4
    props = {p.key: p.value for p in onnx.load(demo_onnx_dynamic).metadata_props}
    doc = json.loads(props["edgecv"])
    doc["tensorrt"] = {"version": "10.9.0", "compute_capability": "8.6", "input_name": "images",
                       "profiles": [{"min": [1, 3, 320, 320], "opt": [2, 3, 640, 640], "max": [max_batch, 3, 640, 640]}],
                       "engine_bytes": len(plan), "engine_sha256": hashlib.sha256(plan).hexdigest()}
    engine = folder / "model.engine"
    engine.write_bytes(plan)
    (folder / "model.engine.json").write_text(json.dumps(doc))
    return engine


def test_tensorrt_engine_becomes_a_plan_with_its_json(demo_onnx_dynamic: Path, tmp_path: Path) -> None:
    engine = standin_engine(demo_onnx_dynamic, tmp_path, max_batch=4)
    write_triton_repository(engine, tmp_path / "repo", name="trt", kind="gpu", max_batch=4)
    folder = tmp_path / "repo" / "trt"
    config = parse(folder)
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 4
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    graph = onnx.load(demo_onnx_dynamic).graph  # the engine's contract is its ONNX graph's
    assert config_tensors(config.output) == [(n, t, d[1:]) for n, t, d in graph_tensors(graph.output)]
    assert (folder / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert json.loads((folder / "1" / "model.plan.json").read_text())["tensorrt"]["profiles"][0]["max"][0] == 4
    with pytest.raises(OptionError, match="at most 4"):
        write_triton_repository(engine, tmp_path / "repo", name="trt2", kind="gpu", max_batch=8)
    with pytest.raises(OptionError, match="'gpu' for a TensorRT engine"):
        write_triton_repository(engine, tmp_path / "repo", name="trt3")
    engine.write_bytes(b"another plan")
    with pytest.raises(ArtifactError, match="do not belong together"):
        write_triton_repository(engine, tmp_path / "repo", name="trt4", kind="gpu")


BAD = [
    (["{fixed}", "{repo}", "--max-batch", "8"], "expected 0 for a fixed-batch artifact"),
    (["{dynamic}", "{repo}", "--max-batch", "-1"], "max_batch"),
    (["{dynamic}", "{repo}", "--kind", "tpu"], "kind"),
    (["{dynamic}", "{repo}", "--instances", "0"], "instances"),
    (["{dynamic}", "{repo}", "--name", "../escape"], "name"),
    (["{dynamic}", "{repo}", "--platform", "python", "--kind", "gpu"], "'cpu' for platform 'python'"),
    (["{dynamic}", "{repo}", "--platform", "tensorrt_plan"], "a .engine/.plan"),
    (["{repo}/none.onnx", "{repo}"], "none.onnx"),
]


@pytest.mark.parametrize("args, phrase", BAD, ids=[" ".join(a[2:4]) or a[0] for a, _ in BAD])
def test_cli_bad_request_is_one_line_exit_2_and_writes_nothing(args, phrase, demo_onnx, demo_onnx_dynamic,
                                                               tmp_path) -> None:
    repo = tmp_path / "repo"
    argv = ["export-triton", *(a.format(fixed=demo_onnx, dynamic=demo_onnx_dynamic, repo=repo) for a in args)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and phrase in " ".join(result.output.split()), result.output
    assert not repo.exists() or list(repo.iterdir()) == []


def test_cli_writes_the_repository(demo_onnx_dynamic: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export-triton", str(demo_onnx_dynamic), str(tmp_path), "--max-batch", "4",
                                      "--instances", "2", "--name", "det"])
    assert result.exit_code == 0, result.output
    assert "grpc://HOST:8001/det" in result.output
    config = check_model_dir(tmp_path / "det")  # parses with Triton's ModelConfig and checks against the graph
    assert (config.max_batch_size, config.instance_group[0].count) == (4, 2)
