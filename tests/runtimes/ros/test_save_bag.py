"""``--save-bag out.mcap``: the written file read back with the ``mcap`` reader and its ROS 2
decoder (``mcap-ros2-support``, independent of the rosbags typestore that wrote it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.runtimes import Predictor
from edgecv.runtimes.streams.sinks import McapSink

from ros_bag_writer import FRAME_ID, TOPIC  # noqa: E402  (conftest puts it on sys.path)

pytest.importorskip("mcap_ros2")
runner = CliRunner()


def read_mcap(path: Path) -> dict[str, list]:
    """``{topic: [(log_time, decoded message), ...]}`` through mcap's indexed reader + ROS 2 decoder."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    topics: dict[str, list] = {}
    with path.open("rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
            topics.setdefault(channel.topic, []).append((message.log_time, decoded))
    return topics


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def boxes_of(array) -> np.ndarray:
    """x1, y1, x2, y2 from the Detection2D centre/size."""
    return np.array([[d.bbox.center.position.x - d.bbox.size_x / 2, d.bbox.center.position.y - d.bbox.size_y / 2,
                      d.bbox.center.position.x + d.bbox.size_x / 2, d.bbox.center.position.y + d.bbox.size_y / 2]
                     for d in array.detections]).reshape(-1, 4)


@pytest.mark.parametrize("kind,encoding", [("ros1", "bgr8"), ("sqlite3", "jpeg"), ("mcap", "rgb8")])
def test_cli_writes_one_detection_array_per_image(tmp_path: Path, toy_artifact: Path, bag_maker,
                                                  kind: str, encoding: str) -> None:
    bag = bag_maker(kind, encoding)
    out = tmp_path / "out.mcap"
    result = runner.invoke(app, ["predict", str(toy_artifact), "--source", str(bag.path), "--topic", TOPIC,
                                 "--save", str(tmp_path / "save"), "--save-bag", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} ({len(bag.frames)} Detection2DArray messages)" in result.output
    lines = [json.loads(line) for line in (tmp_path / "save" / "predictions.jsonl").read_text().splitlines()]
    topics = read_mcap(out)
    arrays = topics["/edgecv/detections"]
    assert len(arrays) == len(bag.frames)  # exactly one per input image
    assert [stamp_ns(a.header) for _, a in arrays] == bag.stamps_ns
    assert [log for log, _ in arrays] == bag.log_ns  # MCAP log time = the input bag's log time
    for (_, array), line in zip(arrays, lines):
        assert array.header.frame_id == FRAME_ID
        assert all(stamp_ns(d.header) == stamp_ns(array.header) for d in array.detections)
        np.testing.assert_allclose(boxes_of(array), np.array(line["boxes"]).reshape(-1, 4), atol=1e-3)
        assert [d.results[0].hypothesis.class_id for d in array.detections] == line["labels"]
        np.testing.assert_allclose([d.results[0].hypothesis.score for d in array.detections], line["scores"],
                                   atol=1e-4)
    annotations = topics["/edgecv/annotations"]
    assert len(annotations) == len(bag.frames)
    assert all(len(a.points) == len(a.texts) == len(d.detections) for (_, a), (_, d) in zip(annotations, arrays))
    first = annotations[0][1].points[0]
    assert first.type == 2 and len(first.points) == 4  # LINE_LOOP around the box
    images = topics["/edgecv/image/compressed"]
    assert len(images) == len(bag.frames)
    decoded = cv2.imdecode(np.frombuffer(bytes(images[0][1].data), np.uint8), cv2.IMREAD_COLOR)
    assert images[0][1].format == "jpeg" and decoded.shape == bag.frames[0].shape
    assert stamp_ns(images[5][1].header) == bag.stamps_ns[5]


def test_python_sink_boxes_equal_the_predictors(tmp_path: Path, toy_artifact: Path, bag_maker) -> None:
    bag = bag_maker("mcap", "jpeg")
    out = tmp_path / "api.mcap"
    with Predictor(toy_artifact) as predictor:
        with predictor.stream(bag.path, topic=TOPIC, sinks=[McapSink(out, images=False)]) as stream:
            results = list(stream)
    topics = read_mcap(out)
    assert "/edgecv/image/compressed" not in topics  # images=False
    arrays = [a for _, a in topics["/edgecv/detections"]]
    assert len(arrays) == len(results) == len(bag.frames)
    for array, result in zip(arrays, results):
        assert stamp_ns(array.header) == result.header.stamp_ns
        np.testing.assert_allclose(boxes_of(array), result.detections.boxes, atol=1e-4)
        assert [d.results[0].hypothesis.class_id for d in array.detections] == result.detections.labels


def test_frames_from_other_sources_get_their_timestamp_and_frame_id(tmp_path: Path, toy_artifact: Path) -> None:
    frames = [(np.full((32, 32, 3), (0, 0, 200), np.uint8), 1_000.25 + i) for i in range(3)]
    out = tmp_path / "frames.mcap"
    with Predictor(toy_artifact) as predictor:
        predictor.stream(frames, sinks=[McapSink(out, frame_id="front")]).run()
    arrays = [a for _, a in read_mcap(out)["/edgecv/detections"]]
    assert [stamp_ns(a.header) for a in arrays] == [1_000_250_000_000 + i * 1_000_000_000 for i in range(3)]
    assert {a.header.frame_id for a in arrays} == {"front"}
    assert all(d.results[0].hypothesis.class_id == "red" for a in arrays for d in a.detections)


def test_save_bag_path_is_checked_before_the_model_opens(tmp_path: Path, toy_artifact: Path, bag_maker) -> None:
    bag = bag_maker("ros1", "bgr8")
    result = runner.invoke(app, ["predict", str(toy_artifact), "--source", str(bag.path), "--topic", TOPIC,
                                 "--save-bag", str(tmp_path / "nofolder" / "out.mcap")])
    assert result.exit_code == 2 and "--save-bag: expected a .mcap file in an existing folder" in result.output


def test_hard_kill_keeps_the_finished_chunks(tmp_path: Path, toy_artifact: Path) -> None:
    """SIGKILL mid-stream: the file has no summary, but a sequential reader gets the flushed chunks."""
    out, flag = tmp_path / "killed.mcap", tmp_path / "written"
    script = f"""
import numpy as np, itertools, pathlib
from edgecv.runtimes import Predictor
from edgecv.runtimes.streams.sinks import McapSink
import edgecv.runtimes.streams.sinks.mcap as m
m.CHUNK_SIZE = 16 * 1024  # small chunks: several finish within a few frames
rng = np.random.default_rng(0)
frames = (rng.integers(0, 255, (96, 128, 3), np.uint8) for _ in itertools.count())
with Predictor({str(toy_artifact)!r}) as p:
    for i, r in enumerate(p.stream(frames, sinks=[McapSink({str(out)!r})])):
        if i == 40:
            pathlib.Path({str(flag)!r}).write_text("x")
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        for _ in range(600):
            if flag.exists() or process.poll() is not None:
                break
            import time

            time.sleep(0.05)
        assert flag.exists(), "the writer never got to frame 40"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    from mcap.exceptions import McapError
    from mcap.stream_reader import StreamReader
    from mcap.records import Message

    count = 0
    with out.open("rb") as handle:
        try:
            for record in StreamReader(handle, skip_magic=False).records:
                count += isinstance(record, Message)
        except (McapError, EOFError, ValueError):
            pass  # the torn tail after the last flushed chunk
    assert count >= 3 * 20  # detections + annotations + image of at least 20 frames survived


def test_the_written_mcap_is_itself_a_bag_source(tmp_path: Path, toy_artifact: Path, bag_maker) -> None:
    """Round trip: the images written by --save-bag read back as a ROS 2 source with the same stamps."""
    bag = bag_maker("ros1", "bgr8")
    out = tmp_path / "round.mcap"
    with Predictor(toy_artifact) as predictor:
        first = [r.detections.labels for r in predictor.stream(bag.path, topic=TOPIC, sinks=[McapSink(out)])]
        with predictor.stream(out, topic="/edgecv/image/compressed") as stream:
            again = list(stream)
    assert [r.header.stamp_ns for r in again] == bag.stamps_ns
    assert {r.header.frame_id for r in again} == {FRAME_ID}
    assert [r.detections.labels for r in again] == first  # JPEG at quality 90 keeps the toy's classes


def test_cli_no_save_bag_images_writes_detections_only(tmp_path: Path, toy_artifact: Path, bag_maker) -> None:
    bag = bag_maker("mcap", "jpeg")
    out = tmp_path / "light.mcap"
    result = runner.invoke(app, ["predict", str(toy_artifact), "--source", str(bag.path), "--topic", TOPIC,
                                 "--quiet", "--save-bag", str(out), "--no-save-bag-images"])
    assert result.exit_code == 0, result.output
    topics = read_mcap(out)
    assert sorted(topics) == ["/edgecv/annotations", "/edgecv/detections"]
    assert len(topics["/edgecv/detections"]) == len(bag.frames)
