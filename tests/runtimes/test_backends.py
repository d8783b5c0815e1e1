import os
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgecv.errors import ArtifactError, BackendError, MissingDependencyError
from edgecv.runtimes.backends import LOADERS, Backend, open_backend, resolve_backend
from edgecv.runtimes.backends.onnxruntime import OnnxRuntimeBackend, providers_for
from edgecv.runtimes.predictor import Predictor


def test_opens_and_infers(toy_artifact: Path) -> None:
    with open_backend(toy_artifact, "auto", threads=1) as backend:
        assert isinstance(backend, Backend) and isinstance(backend, OnnxRuntimeBackend)
        assert backend.input_names == ["images"]
        assert backend.output_names == ["num_dets", "boxes", "scores", "classes"]
        assert backend.metadata.class_names == ["red", "green", "blue"]
        assert backend.providers == ["CPUExecutionProvider"]
        outputs = backend.infer(np.zeros((3, 3, 320, 320), np.float32))
        assert outputs["num_dets"].shape == (3, 1) and outputs["boxes"].shape == (3, 5, 4)
    with pytest.raises(BackendError, match="closed"):
        backend.infer(np.zeros((1, 3, 320, 320), np.float32))


def test_infer_failure_names_expected_and_found_shape(toy_artifact: Path) -> None:
    with open_backend(toy_artifact) as backend, \
            pytest.raises(BackendError, match=r"expected shape.*found \[1, 3, 64, 64\]"):
        backend.infer(np.zeros((1, 3, 64, 64), np.float32))


def test_corrupt_file_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ArtifactError, match=r"expected an ONNX model at .*model\.onnx, found 4096 bytes"):
        Predictor(path)


@pytest.mark.parametrize(
    ("content", "found"),
    [(b"", "an empty file"), (b"version https://git-lfs.github.com/spec/v1\n", "Git LFS pointer")],
)
def test_describes_what_was_found(tmp_path: Path, content: bytes, found: str) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=found):
        open_backend(path)


def test_pytorch_checkpoint_hint(tmp_path: Path) -> None:
    path = tmp_path / "weights.onnx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(ArtifactError, match="zip archive.*edgecv export"):
        Predictor(path)


def test_onnx_without_metadata_is_not_an_edgecv_export(plain_onnx: Path) -> None:
    with pytest.raises(ArtifactError, match=r"not an edgecv export.*'edgecv'.*`edgecv export`"):
        Predictor(plain_onnx)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such file"):
        Predictor(tmp_path / "absent.onnx")
    with pytest.raises(ArtifactError, match="directory"):
        Predictor(tmp_path)


def test_backend_and_device_choices(toy_artifact: Path) -> None:
    assert resolve_backend(Path("m.onnx")) == "onnxruntime"
    assert resolve_backend(Path("m.onnx"), "ONNXRuntime") == "onnxruntime"
    assert set(LOADERS) == {"onnxruntime", "openvino", "tensorrt", "triton"}
    with pytest.raises(BackendError, match=r"expected backend 'auto' or one of \['onnxruntime', 'openvino', "
                                           r"'tensorrt', 'triton'\], found 'tflite'"):
        Predictor(toy_artifact, backend="tflite")
    with pytest.raises(BackendError, match=r"expected device 'cpu', 'cuda' or 'cuda:N', found 'gpu0'"):
        Predictor(toy_artifact, device="gpu0")
    with pytest.raises(BackendError, match="threads"):
        Predictor(toy_artifact, threads=0)


def test_cuda_provider_selection() -> None:
    assert providers_for("cpu", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    cuda = providers_for("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert cuda == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    trt = providers_for("cuda", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert [p[0] if isinstance(p, tuple) else p for p in trt] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(MissingDependencyError, match="onnxruntime-gpu"):
        providers_for("cuda", ["CPUExecutionProvider"])


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU build is installed")
def test_cuda_without_gpu_build_says_what_to_install(toy_artifact: Path) -> None:
    with pytest.raises(MissingDependencyError, match=r"device 'cuda'.*found only \[.*CPUExecutionProvider"):
        Predictor(toy_artifact, device="cuda")


def test_threads_reach_the_session(toy_artifact: Path) -> None:
    with OnnxRuntimeBackend.open(os.fspath(toy_artifact), threads=2) as backend:
        assert backend.session is not None
        assert backend.session.get_session_options().intra_op_num_threads == 2
        level = backend.session.get_session_options().graph_optimization_level
        assert level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_spinning_option_reaches_the_session(toy_artifact: Path) -> None:
    from edgecv.runtimes import Predictor

    key = "session.intra_op.allow_spinning"
    with Predictor(toy_artifact, backend_options={"spinning": False}) as quiet, Predictor(toy_artifact) as default:
        assert quiet.backend.session.get_session_options().get_session_config_entry(key) == "0"
        with pytest.raises(Exception, match=key):  # ORT's default (spinning): no entry at all
            default.backend.session.get_session_options().get_session_config_entry(key)
