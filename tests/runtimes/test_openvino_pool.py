"""OpenVINO backend: a bounded pool of infer requests shared by calling threads.

Before the pool, every calling thread got its own infer request, kept forever: 1,000 short-lived
threads on the 160 px demo model grew RSS by ~320 MB (1.2 GB at 320 px; ``tools/rss_threads.py``).
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import BackendError
from edgecv.runtimes import Predictor
from edgecv.runtimes.backends.openvino import DEFAULT_REQUESTS, RequestPool

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def run_threads(count: int, concurrent: int, target, timeout: float) -> None:
    """Start ``count`` threads running ``target``, ``concurrent`` at a time; fail if one hangs or raises."""
    errors: list[BaseException] = []
    deadline = time.monotonic() + timeout

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    for first in range(0, count, concurrent):
        wave = [threading.Thread(target=guarded, daemon=True) for _ in range(min(concurrent, count - first))]
        for thread in wave:
            thread.start()
        for thread in wave:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            assert not thread.is_alive(), f"a thread was still running after {timeout} s"
    assert not errors, errors[0]


@needs_openvino
@pytest.mark.slow  # ~10 s: 1,000 inferences at 160 px
def test_thousand_short_lived_threads_keep_rss_bounded(demo_onnx_160: Path) -> None:
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    with Predictor(demo_onnx_160, backend="openvino", threads=1) as predictor:
        expected = predictor(frame)
        run_threads(8, 4, lambda: predictor(frame), timeout=60)  # warm-up: the pool is full from here on
        before = rss_mb()
        run_threads(1000, 4, lambda: predictor(frame), timeout=300)
        growth = rss_mb() - before
        pool = predictor.backend.requests
        assert pool.size == DEFAULT_REQUESTS and pool.created <= pool.size
        np.testing.assert_array_equal(predictor(frame).boxes, expected.boxes)
    assert growth < 50, f"RSS grew by {growth:.0f} MB over 1,000 one-call threads"


@needs_openvino
def test_threads_waiting_for_one_request_get_their_own_results(demo_onnx_160: Path,
                                                                 shapes_frames: list[np.ndarray]) -> None:
    with Predictor(demo_onnx_160, backend="openvino", threads=1, backend_options={"requests": 1}) as predictor:
        reference = [predictor(frame) for frame in shapes_frames]
        assert sum(len(d) for d in reference) > 0
        mismatches: list[int] = []

        def work() -> None:
            for _ in range(3):
                for i, frame in enumerate(shapes_frames):
                    got = predictor(frame)
                    if not (np.array_equal(got.boxes, reference[i].boxes)
                            and np.array_equal(got.class_ids, reference[i].class_ids)):
                        mismatches.append(i)

        run_threads(3, 3, work, timeout=120)
        assert predictor.backend.requests.created == 1
    assert not mismatches


@needs_openvino
@pytest.mark.parametrize("requests", [0, -1, 1.5, True, "2"])
def test_bad_pool_size_is_refused(demo_onnx_160: Path, requests: object) -> None:
    with pytest.raises(BackendError, match="requests: expected a positive integer"):
        Predictor(demo_onnx_160, backend="openvino", backend_options={"requests": requests})


def test_pool_lends_each_request_to_one_thread_at_a_time() -> None:
    made: list[object] = []
    lent: set[int] = set()
    peak = [0]
    lock = threading.Lock()

    def create() -> object:
        with lock:
            made.append(object())
            return made[-1]

    pool = RequestPool(create, 2, "test pool")

    def work() -> None:
        for _ in range(20):
            with pool.borrow() as request:
                with lock:
                    assert id(request) not in lent, "one request lent to two threads"
                    lent.add(id(request))
                    peak[0] = max(peak[0], len(lent))
                time.sleep(0.001)
                with lock:
                    lent.discard(id(request))

    run_threads(6, 6, work, timeout=60)
    assert len(made) == pool.created == 2 and peak[0] == 2


def test_closing_the_pool_wakes_waiting_threads() -> None:
    pool = RequestPool(object, 1, "the test backend")
    errors: list[BaseException] = []
    with pool.borrow():
        def wait_for_one() -> None:
            try:
                with pool.borrow():
                    pass
            except BackendError as exc:
                errors.append(exc)

        waiter = threading.Thread(target=wait_for_one, daemon=True)
        waiter.start()
        time.sleep(0.05)
        assert waiter.is_alive()  # blocked: the only request is lent
        pool.close()
        waiter.join(timeout=10)
    assert not waiter.is_alive() and len(errors) == 1 and "closed" in str(errors[0])
    with pytest.raises(BackendError, match="closed"):
        with pool.borrow():
            pass
