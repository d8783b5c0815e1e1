"""The ``triton`` backend end to end: edgecv repositories served by nvidia-pytriton's bundled Triton server.

The server is a separate process on 127.0.0.1 (``triton_server.py``) running edgecv's Python-backend
model (ONNX Runtime inside, raw network tensors in, contract tensors out) from repositories written
by ``write_triton_repository``; ``Predictor(url, backend="triton")`` must give the same detections
as a local ``Predictor`` on the same artifact, on real photos (skimage.data).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from google.protobuf import text_format

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ is not a package (pytest importlib mode)

from triton_server import TritonServerProcess, bundled_server  # noqa: E402

from edgecv.errors import ArtifactError, BackendError  # noqa: E402
from edgecv.runtimes import Predictor  # noqa: E402
from edgecv.serve.triton_repo import METADATA_PARAMETER, load_config, write_triton_repository  # noqa: E402

pytestmark = pytest.mark.skipif(bundled_server() is None, reason="nvidia-pytriton (bundled tritonserver) not installed")

DYNAMIC, FIXED, PLAIN = "yolo_dyn", "yolo_b1", "no_metadata"
MODELS = [DYNAMIC, FIXED, PLAIN]


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Real photos (BGR uint8) on which the demo detector finds something at conf 0.1."""
    from skimage import data

    return [cv2.cvtColor(image, cv2.COLOR_RGB2BGR) for image in (data.astronaut(), data.coffee(),
                                                                  data.hubble_deep_field()[:480, :640])]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_onnx_dynamic: Path, demo_onnx: Path):
    """One server, three models: dynamic batch (Triton batches up to 2), fixed batch 1, and one without metadata."""
    repo = tmp_path_factory.mktemp("triton_repo")
    # 20 ms queue delay: concurrent requests of the batching test meet in one batch
    write_triton_repository(demo_onnx_dynamic, repo, name=DYNAMIC, platform="python", max_batch=2,
                            queue_delay_us=20_000, threads=1)
    write_triton_repository(demo_onnx, repo, name=FIXED, platform="python", threads=1)
    plain = write_triton_repository(demo_onnx, repo, name=PLAIN, platform="python", threads=1)
    del plain.config.parameters[METADATA_PARAMETER]  # a Triton model some other tool wrote
    plain.config_path.write_text(text_format.MessageToString(plain.config))
    process = TritonServerProcess(repo, tmp_path_factory.mktemp("triton_run"))
    process.start(MODELS)
    yield process
    process.stop()


def assert_same(remote, local) -> None:
    assert len(remote) == len(local)
    np.testing.assert_array_equal(remote.class_ids, local.class_ids)
    np.testing.assert_allclose(remote.boxes, local.boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(remote.scores, local.scores, rtol=1e-5, atol=1e-6)


def test_grpc_predictor_gives_local_detections_on_photos(server, demo_onnx_dynamic, photos) -> None:
    with Predictor(f"{server.grpc_url}/{DYNAMIC}", backend="triton") as remote, Predictor(demo_onnx_dynamic) as local:
        assert remote.metadata == local.metadata  # read from the server's model config, nothing local
        assert remote.backend.max_batch_size == 2
        found = 0
        for photo in photos:
            theirs, ours = remote(photo), local(photo)
            assert_same(theirs, ours)
            found += len(ours)
    assert found > 0  # the comparison compared real detections


def test_list_larger_than_max_batch_is_sent_in_chunks(server, demo_onnx_dynamic, photos) -> None:
    with Predictor(f"{server.grpc_url}/{DYNAMIC}") as remote, Predictor(demo_onnx_dynamic) as local:  # auto: triton
        assert remote.backend.name == "triton"
        for theirs, ours in zip(remote(photos), local(photos), strict=True):  # 3 images, max_batch_size 2
            assert_same(theirs, ours)


def test_http_and_fixed_batch_model(server, demo_onnx, photos) -> None:
    with Predictor(f"{server.http_url}/{FIXED}/1", backend="triton") as remote, Predictor(demo_onnx) as local:
        assert remote.backend.max_batch_size == 0 and remote.batch_size == 1
        for photo in photos[:2]:
            assert_same(remote(photo), local(photo))


def test_concurrent_clients_are_batched_by_triton(server, demo_onnx_dynamic, photos) -> None:
    import tritonclient.grpc as grpcclient

    with Predictor(demo_onnx_dynamic) as local:
        expected = [local(photo) for photo in photos]
    stats = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    before = stats.get_inference_statistics(DYNAMIC).model_stats[0]
    results: dict[int, list] = {}

    def client(index: int) -> None:
        with Predictor(f"{server.grpc_url}/{DYNAMIC}", backend="triton") as remote:
            results[index] = [remote(photos[(index + k) % len(photos)]) for k in range(2)]

    threads = [threading.Thread(target=client, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads) and len(results) == 4
    for index, got in results.items():
        for k, dets in enumerate(got):
            assert_same(dets, expected[(index + k) % len(photos)])
    after = stats.get_inference_statistics(DYNAMIC).model_stats[0]
    images, executions = after.inference_count - before.inference_count, after.execution_count - before.execution_count
    assert images == 8  # 4 clients x 2 single-image requests
    assert executions < images  # Triton's dynamic batcher ran some of them together, through model.py's one-run path


def test_model_without_metadata_is_refused(server) -> None:
    with pytest.raises(ArtifactError, match=METADATA_PARAMETER):
        Predictor(f"{server.grpc_url}/{PLAIN}", backend="triton")


def test_unknown_model_is_one_line_backend_error(server) -> None:
    with pytest.raises(BackendError, match="cannot get model 'nope'") as info:
        Predictor(f"{server.grpc_url}/nope", backend="triton")
    assert "\n" not in str(info.value)


def test_served_config_is_the_written_one(server) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    served = client.get_model_config(DYNAMIC).config
    written = load_config(server.repo / DYNAMIC)
    assert (served.max_batch_size, served.backend) == (written.max_batch_size, "python")
    assert [(t.name, list(t.dims)) for t in served.output] == [(t.name, list(t.dims)) for t in written.output]
    assert served.dynamic_batching.max_queue_delay_microseconds == 20_000


def test_cli_predict_over_grpc_matches_local(server, demo_onnx_dynamic, photos, tmp_path) -> None:
    from typer.testing import CliRunner

    from edgecv.cli import app

    image = tmp_path / "coffee.png"
    cv2.imwrite(str(image), photos[1])
    lines = {}
    for label, model in (("remote", f"{server.grpc_url}/{DYNAMIC}"), ("local", str(demo_onnx_dynamic))):
        result = CliRunner().invoke(app, ["predict", model, "--source", str(image), "--save", str(tmp_path / label)])
        assert result.exit_code == 0, result.output
        lines[label] = [json.loads(line) for line in (tmp_path / label / "predictions.jsonl").read_text().splitlines()]
    (remote,), (local,) = lines["remote"], lines["local"]  # one line each, the versioned result schema
    assert remote["schema"] == local["schema"] and len(local["boxes"]) > 0
    assert remote["labels"] == local["labels"] and remote["class_ids"] == local["class_ids"]
    np.testing.assert_allclose(remote["boxes"], local["boxes"], atol=2e-3)  # rounded to 3 decimals in the file
    np.testing.assert_allclose(remote["scores"], local["scores"], atol=2e-5)
