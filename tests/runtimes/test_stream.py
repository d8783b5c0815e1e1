"""The stream pipeline with real parts: the toy ONNX artifact in ONNX Runtime, videos written and
decoded by OpenCV, frames from Python iterables; every wait bounded."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from edgecv.errors import OptionError, SourceError
from edgecv.runtimes import Predictor, StreamResult, predict_source, stream
from edgecv.runtimes.sources import VideoFrames
from edgecv.runtimes.streams.sinks import CallbackSink, JsonlSink, VideoSink


def stream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("edgecv-stream-")]


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (320, 240), fps: float = 10.0) -> Path:
    """An mp4v clip of the moving red square, written by OpenCV."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for frame in moving_square(frames, size):
        writer.write(frame)
    writer.release()
    return path


def moving_square(count: int, size: tuple[int, int] = (320, 240)) -> Iterator[np.ndarray]:
    width, height = size
    for i in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[: height // 2, (i * 7) % (width // 2):(i * 7) % (width // 2) + width // 2] = (0, 0, 255)
        yield frame


def test_video_every_frame_in_order_with_timing(toy_artifact: Path, toy_video: Path, read_frames) -> None:
    seen: list[int] = []
    with Predictor(toy_artifact) as predictor:
        with predictor.stream(toy_video, sinks=[CallbackSink(lambda r: seen.append(r.index))]) as results:
            assert results.policy == "every" and results.source.kind == "video" and not results.source.live
            got = list(results)
        direct = [predictor(frame) for frame in read_frames(toy_video)]
    assert [r.index for r in got] == list(range(12)) == seen  # the sink saw every result, in order
    assert [r.name for r in got][:2] == ["clip.mp4#000000", "clip.mp4#000001"]
    assert all(r.dropped == 0 for r in got)
    assert got[5].media_time == pytest.approx(0.5)  # 10 fps container
    for result, dets in zip(got, direct):
        assert isinstance(result, StreamResult) and result.age > 0
        assert set(result.timing) >= {"read", "pre", "infer", "post", "sinks"}
        np.testing.assert_allclose(result.detections.boxes, dets.boxes, atol=1e-4)
    assert sum(len(r.detections) for r in got) > 0
    assert stream_threads() == []


def test_latest_policy_drops_and_counts_for_a_slow_consumer(toy_artifact: Path) -> None:
    with Predictor(toy_artifact) as predictor, stream(predictor, moving_square(150), policy="latest") as results:
        got = []
        for result in results:
            got.append(result)
            time.sleep(0.02)  # the consumer is slower than capture: old frames must not queue up
    indices = [r.index for r in got]
    assert indices == sorted(set(indices)) and indices[-1] == 149  # newest frames, the last one included
    assert got[0].dropped == got[0].index
    assert all(b.dropped == b.index - a.index - 1 for a, b in zip(got, got[1:]))  # every skip counted
    assert sum(r.dropped for r in got) > 0 and len(got) + sum(r.dropped for r in got) == 150


def test_iterable_with_timestamps_and_max_frames(toy_artifact: Path) -> None:
    stamps = [1000.0 + i / 10 for i in range(20)]
    pairs = zip(moving_square(20), stamps)
    with Predictor(toy_artifact) as predictor:
        with predictor.stream(pairs, max_frames=7) as results:
            got = list(results)
    assert [r.timestamp for r in got] == stamps[:7] and [r.name for r in got][0] == "frame#000000"
    assert stream_threads() == []


def test_source_error_arrives_after_the_frames_before_it(tmp_path: Path, toy_artifact: Path,
                                                         toy_video: Path) -> None:
    camera = VideoFrames(str(toy_video), "camera", "camera3")  # a camera that vanishes after 12 frames
    with Predictor(toy_artifact) as predictor:
        with pytest.raises(SourceError, match="stopped delivering") as info:
            predict_source(predictor, camera, tmp_path / "out", show_progress=False, policy="every")
    assert info.value.summary.frames == 12  # the CLI prints this summary before the error
    assert info.value.summary.outputs == [tmp_path / "out" / "camera3.mp4"]
    assert stream_threads() == []


def test_failing_sink_stops_the_stream(toy_artifact: Path, toy_video: Path) -> None:
    def explode(result: StreamResult) -> None:
        if result.index == 3:
            raise RuntimeError("sink failed on frame 3")

    closed = []
    with Predictor(toy_artifact) as predictor:
        results = predictor.stream(toy_video, sinks=[CallbackSink(explode, lambda: closed.append(True))])
        with pytest.raises(RuntimeError, match="frame 3"):
            for _ in results:
                pass
    assert closed == [True] and stream_threads() == []


def test_close_mid_stream_stops_threads_and_finalises_sinks(tmp_path: Path, toy_artifact: Path) -> None:
    video = write_video(tmp_path / "long.mp4", frames=200)
    jsonl, mp4 = JsonlSink(tmp_path / "s.jsonl"), VideoSink(tmp_path / "s.mp4", fps=10.0)
    with Predictor(toy_artifact) as predictor:
        results = predictor.stream(video, sinks=[mp4, jsonl])
        for count, _ in enumerate(results, 1):
            if count == 5:
                break
        assert len(stream_threads()) == 3
        results.close()
        results.close()  # idempotent
    assert stream_threads() == []
    lines = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert 5 <= len(lines) < 200 and [doc["frame_index"] for doc in lines] == list(range(len(lines)))
    capture = cv2.VideoCapture(str(tmp_path / "s.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(lines)
    capture.release()


def test_live_recording_is_tagged_with_the_measured_rate(tmp_path: Path, toy_artifact: Path) -> None:
    pairs = zip(moving_square(30), [50.0 + i / 10 for i in range(30)])  # a 10 fps live source
    with Predictor(toy_artifact) as predictor:
        summary = predict_source(predictor, pairs, tmp_path / "out", show_progress=False)
    capture = cv2.VideoCapture(str(tmp_path / "out" / "frames.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0, abs=0.05)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 30 == summary.frames
    capture.release()


def test_file_recording_keeps_the_container_rate(tmp_path: Path, toy_artifact: Path) -> None:
    video = write_video(tmp_path / "c.mp4", frames=6, fps=7.0)
    with Predictor(toy_artifact) as predictor:
        predict_source(predictor, video, tmp_path / "out", show_progress=False)
    capture = cv2.VideoCapture(str(tmp_path / "out" / "c.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(7.0, abs=0.05)
    capture.release()


def test_bad_options_name_expected_and_found(toy_artifact: Path, toy_video: Path) -> None:
    with Predictor(toy_artifact) as predictor:
        with pytest.raises(OptionError, match="policy: expected one of latest, every, found 'newest'"):
            predictor.stream(toy_video, policy="newest")
        with pytest.raises(OptionError, match="max_frames"):
            predictor.stream(toy_video, max_frames=0)
        with pytest.raises(SourceError, match=r"expected a BGR uint8 array \[H, W, 3\], \(array, timestamp\)"):
            list(predictor.stream(["not a frame"]))
    assert stream_threads() == []


def test_fixed_batch_artifact_streams_every_frame_in_order(toy_artifact_b2: Path, toy_video: Path,
                                                          read_frames) -> None:
    with Predictor(toy_artifact_b2) as predictor:
        assert predictor.batch_size == 2
        got = list(predictor.stream(toy_video))
        direct = [predictor(frame) for frame in read_frames(toy_video)]
    assert [r.index for r in got] == list(range(12))
    for result, dets in zip(got, direct):
        np.testing.assert_allclose(result.detections.boxes, dets.boxes, atol=1e-4)


def test_latest_policy_with_max_frames_stops_exactly(toy_artifact: Path) -> None:
    with Predictor(toy_artifact) as predictor:
        got = list(predictor.stream(moving_square(500), policy="latest", max_frames=4))
    assert len(got) == 4 and stream_threads() == []


def test_live_reader_seam_carries_gaps_and_names(toy_artifact: Path) -> None:
    """What a resilient capture hands the pipeline: (frame, timestamp[, gap]) items plus a closer."""
    from edgecv.runtimes.streams.readers import StreamSource
    from edgecv.runtimes.streams.result import Gap

    gap = Gap(start=10.0, end=11.5, reason="read failed", reconnects=2)
    frames = list(moving_square(3))
    items = [(frames[0], 10.0), (frames[1], 11.5, gap), (frames[2], 11.6)]
    closed: list[bool] = []
    live = StreamSource("camera", "camera0", items, closer=lambda: closed.append(True))
    assert live.live and live.default_policy() == "latest"
    with Predictor(toy_artifact) as predictor:
        got = list(predictor.stream(live, policy="every"))
    assert [r.name for r in got] == ["camera0#000000", "camera0#000001", "camera0#000002"]
    assert [r.gap for r in got] == [None, gap, None] and got[1].gap.seconds == 1.5
    assert closed == [True]


def test_summary_reports_the_gaps_of_a_live_source(toy_artifact: Path) -> None:
    from edgecv.runtimes.streams.readers import StreamSource
    from edgecv.runtimes.streams.result import Gap

    frames = list(moving_square(2))
    gap = Gap(start=1.0, end=3.0, reason="stalled 2.0 s", reconnects=1)
    live = StreamSource("stream", "rtsp://127.0.0.1/x", [(frames[0], 1.0), (frames[1], 3.0, gap)])
    with Predictor(toy_artifact) as predictor:
        summary = predict_source(predictor, live, show_progress=False, policy="every")
    assert summary.gaps == [gap] and summary.to_dict()["gaps"][0]["reconnects"] == 1
    assert "gap of 2.0 s (stalled 2.0 s, 1 reconnects)" in str(summary)


class _StopAfter:
    """A sink that asks the stream to stop after ``n`` results (as a window does on q / Esc)."""

    def __init__(self, n: int) -> None:
        self.n, self.seen, self.stop_requested, self.closed = n, 0, False, False

    def write(self, result) -> None:
        self.seen += 1
        self.stop_requested = self.seen >= self.n

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("threaded", [True, False])
def test_a_sink_that_asks_to_stop_ends_the_stream_normally(toy_artifact, threaded) -> None:
    frames = [np.full((120, 160, 3), i, np.uint8) for i in range(20)]
    sink = _StopAfter(3)
    with Predictor(toy_artifact) as predictor:
        with predictor.stream(frames, sinks=[sink], threaded=threaded) as results:
            got = [r.index for r in results]
    assert got == [0, 1, 2] and sink.closed
