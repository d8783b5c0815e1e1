"""Reused input tensors (:mod:`edgecv.runtimes.buffers`): no per-frame allocation of the network
input, and no tensor handed to two callers at once (threads, frames in flight)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edgecv.export.uint8_input import export_uint8_input
from edgecv.runtimes import Predictor
from edgecv.runtimes.buffers import TensorPool


def patch_image(corner: str, colour: tuple[int, int, int]) -> np.ndarray:
    """A 240x320 black BGR frame with one saturated quadrant."""
    image = np.zeros((240, 320, 3), np.uint8)
    rows, cols = {"tl": (slice(0, 120), slice(0, 160)), "br": (slice(120, 240), slice(160, 320))}[corner]
    image[rows, cols] = colour
    return image


@pytest.fixture(scope="module", params=["float", "uint8"])
def toy(request, toy_artifact: Path, tmp_path_factory) -> Path:
    if request.param == "float":
        return toy_artifact
    return export_uint8_input(toy_artifact, tmp_path_factory.mktemp("toy_u8") / "toy_uint8.onnx")


def test_pool_lends_reuses_and_ignores_foreign_arrays() -> None:
    pool = TensorPool(keep=1)
    a = pool.acquire((2, 3), np.float32)
    b = pool.acquire((2, 3), np.float32)
    assert a is not b and pool.allocations == 2  # both lent at once: two arrays
    pool.release(a)
    pool.release(b)  # beyond keep=1: dropped
    pool.release(np.empty((2, 3), np.float32))  # not lent by this pool: ignored
    assert pool.acquire((2, 3), np.float32) is a and pool.allocations == 2
    assert pool.acquire((2, 3), np.uint8).dtype == np.uint8 and pool.allocations == 3
    pool.release(a)
    pool.release(a)  # twice: the second is ignored, a is lent once
    assert pool.acquire((2, 3), np.float32) is a and pool.acquire((2, 3), np.float32) is not a


def test_predictor_allocates_its_input_once(toy: Path) -> None:
    image = patch_image("tl", (0, 0, 255))
    with Predictor(toy) as predictor:
        first = predictor(image)
        for _ in range(5):
            again = predictor(image)
        assert predictor.buffers.allocations == 1
    assert first.labels == again.labels == ["red"]
    np.testing.assert_array_equal(first.boxes, again.boxes)


def test_a_prepared_tensor_is_not_reused_before_it_has_run(toy: Path) -> None:
    red, blue = patch_image("tl", (0, 0, 255)), patch_image("br", (255, 0, 0))
    with Predictor(toy) as predictor:
        tensor, infos = predictor.prepare_tensor([red])
        kept = tensor.copy()
        predictor(blue)  # its own buffer: the prepared one is still lent
        np.testing.assert_array_equal(tensor, kept)
        results, _ = predictor.run_tensor(tensor, infos)
        assert results[0].labels == ["red"] and predictor.buffers.allocations == 2


def test_threads_sharing_a_predictor_get_their_own_results(toy: Path) -> None:
    images = {"red": patch_image("tl", (0, 0, 255)), "blue": patch_image("br", (255, 0, 0))}
    failures: list[str] = []
    with Predictor(toy) as predictor:
        def work(name: str) -> None:
            for i in range(25):
                got = predictor(images[name]).labels
                if got != [name]:
                    failures.append(f"{name} call {i}: {got}")

        threads = [threading.Thread(target=work, args=(name,)) for name in images]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert predictor.buffers.allocations <= 2
    assert not failures, failures[:3]


def test_uint8_toy_matches_float_toy(toy_artifact: Path, tmp_path: Path, chelsea_bgr: np.ndarray) -> None:
    uint8 = export_uint8_input(toy_artifact, tmp_path / "toy_uint8.onnx")
    frames = [chelsea_bgr, patch_image("tl", (0, 0, 255)), patch_image("br", (0, 255, 0))]
    with Predictor(toy_artifact) as floats, Predictor(uint8) as uint8s:
        for a, b in zip(floats(frames), uint8s(frames)):
            assert a.labels == b.labels
            np.testing.assert_allclose(a.boxes, b.boxes)
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
