"""Pipeline scheduling choices made for speed, checked as behaviour (speed itself is measured in
``benchmarks/``): FFmpeg decoder threads asked for and reported back, the sink thread's lower
priority on file streams and only there, and unchanged results whatever the scheduling."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
from server_process import ServerProcess  # noqa: E402

from edgecv.errors import OptionError  # noqa: E402
from edgecv.runtimes import Predictor  # noqa: E402
from edgecv.runtimes.streams import pipeline  # noqa: E402
from edgecv.runtimes.streams.capture import open_capture  # noqa: E402
from edgecv.runtimes.streams.priority import current_thread_nice, lower_current_thread  # noqa: E402

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


@pytest.mark.parametrize("asked, expected", [(1, 1.0), (2, 2.0)])
def test_decoder_threads_reach_ffmpeg_for_files(toy_video, asked, expected):
    with open_capture(toy_video, decoder_threads=asked) as capture:
        assert capture.decoder_threads == asked
        assert capture.decoder_threads_used == expected  # what FFmpeg's context reports back
        assert sum(1 for _ in capture) == 12  # every frame still decodes


def test_default_keeps_ffmpeg_threads_and_streams_take_the_option(toy_video, tmp_path):
    with open_capture(toy_video) as capture:
        assert capture.decoder_threads is None
    with ServerProcess.mjpeg("--fps", "25", log=tmp_path / "server.log") as server:
        with open_capture(server.url, give_up_after=5.0, decoder_threads=1) as capture:
            assert capture.decoder_threads == 1 and capture.decoder_threads_used == 1.0
            frame = next(iter(capture))  # the stream still opens and decodes with the option
            assert frame.image.ndim == 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "two", "auto"])
def test_bad_decoder_threads_name_expected_and_found(toy_video, bad):
    with pytest.raises(OptionError, match=r"decoder_threads: expected a positive int or None, found"):
        open_capture(toy_video, decoder_threads=bad)


class _NiceProbe:
    """A sink recording the nice value of the thread that calls it."""

    def __init__(self) -> None:
        self.nice: set[int | None] = set()

    def write(self, result) -> None:
        self.nice.add(current_thread_nice())

    def close(self) -> None:
        pass


@linux_only
def test_file_stream_sink_thread_runs_at_lower_priority(demo_onnx_160, toy_video):
    base = current_thread_nice()
    probe = _NiceProbe()
    with Predictor(demo_onnx_160) as predictor:
        with predictor.stream(toy_video, sinks=[probe]) as results:
            assert results.policy == "every"
            assert sum(1 for _ in results) == 12
    assert probe.nice == {min(19, base + pipeline.SINK_NICE)}
    assert current_thread_nice() == base  # the caller's thread is untouched


@linux_only
def test_latest_stream_keeps_sink_priority(demo_onnx_160, shapes_frames):
    base = current_thread_nice()
    probe = _NiceProbe()
    with Predictor(demo_onnx_160) as predictor:
        with predictor.stream(iter(shapes_frames), policy="latest", sinks=[probe]) as results:
            assert sum(1 for _ in results) >= 1
    assert probe.nice == {base}  # live sources: a lowered sink would only add age


def test_results_do_not_depend_on_sink_priority(demo_onnx_160, toy_video, monkeypatch):
    runs = []
    for nice in (0, pipeline.SINK_NICE):
        monkeypatch.setattr(pipeline, "SINK_NICE", nice)
        with Predictor(demo_onnx_160) as predictor:
            runs.append([(r.index, r.detections.boxes.copy()) for r in predictor.stream(toy_video)])
    assert [i for i, _ in runs[0]] == [i for i, _ in runs[1]] == list(range(12))
    for (_, a), (_, b) in zip(*runs):
        np.testing.assert_array_equal(a, b)


@linux_only
def test_lowering_is_refused_quietly_for_zero_steps():
    base = current_thread_nice()
    assert lower_current_thread(0) is False
    assert current_thread_nice() == base


# -- OpenVINO asynchronous requests in the stream (inflight) -------------------------------------

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino not installed")


@needs_openvino
def test_openvino_submit_overlaps_requests_and_matches_infer(demo_onnx_160, shapes_frames):
    with Predictor(demo_onnx_160, backend="openvino", backend_options={"requests": 2}) as predictor:
        tensors = [predictor.prepare_tensor([frame])[0] for frame in shapes_frames[:2]]
        waits = [predictor.backend.submit(t) for t in tensors]  # both in flight before either is read
        assert predictor.backend.requests.created == 2
        got = [wait() for wait in reversed(waits)][::-1]  # finished out of order: each its own buffers
        for tensor, outputs in zip(tensors, got):
            expected = predictor.backend.infer(tensor)
            for name, value in expected.items():
                np.testing.assert_array_equal(outputs[name], value)


@needs_openvino
@pytest.mark.parametrize("inflight", [2, 3])
def test_inflight_stream_keeps_order_and_results(demo_onnx_160, toy_video, inflight):
    options = {"requests": inflight}
    with Predictor(demo_onnx_160, backend="openvino", backend_options=options) as predictor:
        sync = [(r.index, r.detections.boxes.copy()) for r in predictor.stream(toy_video, inflight=1)]
        with predictor.stream(toy_video, inflight=inflight) as results:
            assert results._pipeline.inflight == inflight
            overlapped = [(r.index, r.detections.boxes.copy()) for r in results]
    assert [i for i, _ in overlapped] == [i for i, _ in sync] == list(range(12))
    for (_, a), (_, b) in zip(sync, overlapped):
        np.testing.assert_array_equal(a, b)


def test_inflight_with_a_synchronous_backend_still_delivers_every_frame(demo_onnx_160, toy_video):
    with Predictor(demo_onnx_160) as predictor:  # ONNX Runtime: no submit(), one at a time
        indices = [r.index for r in predictor.stream(toy_video, inflight=2, max_frames=7)]
    assert indices == list(range(7))


def test_latest_policy_ignores_inflight(demo_onnx_160, shapes_frames):
    with Predictor(demo_onnx_160) as predictor:
        with predictor.stream(iter(shapes_frames), policy="latest", inflight=3) as results:
            assert results._pipeline.inflight == 1
            results.run()


@pytest.mark.parametrize("bad", [0, -2, 1.0, True, "2"])
def test_bad_inflight_names_expected_and_found(demo_onnx_160, toy_video, bad):
    with Predictor(demo_onnx_160) as predictor:
        with pytest.raises(OptionError, match=r"inflight: expected a positive int or None, found"):
            predictor.stream(toy_video, inflight=bad)
