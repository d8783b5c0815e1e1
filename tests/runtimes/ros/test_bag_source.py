"""ROS bags as a source: bags written by the tests (rosbags), read back through ``edgecv predict``
and the Python API with the toy detector (real ONNX Runtime, real OpenCV decoding)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.errors import OptionError, SourceError
from edgecv.runtimes import Predictor, predict_source
from edgecv.runtimes.streams.readers import open_source

from ros_bag_writer import FRAME_ID, OTHER_TOPIC, TOPIC, frame  # noqa: E402  (conftest puts it on sys.path)

runner = CliRunner()
KINDS = ("ros1", "sqlite3", "mcap")


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("kind,encoding", [("ros1", "bgr8"), ("sqlite3", "rgb8"), ("mcap", "mono8"),
                                           ("ros1", "jpeg"), ("sqlite3", "png"), ("mcap", "jpeg")])
def test_cli_reads_every_kind_of_bag_with_header_stamps(tmp_path: Path, toy_artifact: Path, bag_maker,
                                                        kind: str, encoding: str) -> None:
    bag = bag_maker(kind, encoding)
    result = run("predict", toy_artifact, "--source", bag.path, "--topic", TOPIC, "--save", tmp_path / "out")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == len(bag.frames)  # the other image topic and the String topic are not read
    assert [line["timestamp"] for line in lines] == pytest.approx([s / 1e9 for s in bag.stamps_ns], abs=1e-6)
    assert [line["log_time"] for line in lines] == pytest.approx([s / 1e9 for s in bag.log_ns], abs=1e-6)
    assert {line["frame_id"] for line in lines} == {FRAME_ID}
    # the toy detector finds each frame's coloured quadrant: red, green, blue in turn
    if not encoding.startswith("mono"):  # a grey frame has no colour to tell the classes apart
        assert [line["labels"] for line in lines] == [[("red", "green", "blue")[i % 3]] for i in range(len(lines))]
    assert (tmp_path / "out" / f"{bag.path.stem}.mp4").stat().st_size > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "mono8", "mono16", "jpeg"])
def test_frames_equal_what_was_written(bag_maker, kind: str, encoding: str) -> None:
    bag = bag_maker(kind, encoding)
    source = open_source(bag.path, None, topic=TOPIC)
    try:
        captured = list(source.read())
    finally:
        source.close()
    assert source.kind == "bag" and source.total == len(bag.frames)
    assert [c.header.stamp_ns for c in captured] == bag.stamps_ns  # integer nanoseconds, exact
    assert [c.header.log_time_ns for c in captured] == bag.log_ns
    for got, expected in zip(captured, bag.frames):
        assert got.image.dtype == np.uint8 and got.image.shape == expected.shape
        assert np.abs(got.image.astype(int) - expected).max() <= 1


def test_bayer_is_demosaiced_to_the_right_colours(bag_maker) -> None:
    bag = bag_maker("mcap", "bayer_rggb8", 6)
    source = open_source(bag.path, None, topic=TOPIC)
    try:
        captured = list(source.read())
    finally:
        source.close()
    assert len(captured) == 6
    for index, got in enumerate(captured):
        expected = frame(index).astype(int)
        assert np.abs(got.image.astype(int) - expected).mean() < 8  # demosaicing blurs the quadrant's edges only
        assert got.image.reshape(-1, 3).max(axis=0).argmax() == expected.reshape(-1, 3).max(axis=0).argmax()


def test_python_api_stream_and_predict_source(toy_artifact: Path, bag_maker) -> None:
    bag = bag_maker("ros1", "jpeg")
    with Predictor(toy_artifact) as predictor:
        with predictor.stream(bag.path, topic=TOPIC) as stream:
            results = list(stream)
        seen: list = []
        summary = predict_source(predictor, bag.path, topic=TOPIC, show_progress=False, on_result=seen.append)
    assert [r.header.stamp_ns for r in results] == bag.stamps_ns
    assert [r.timestamp for r in results] == pytest.approx([s / 1e9 for s in bag.stamps_ns], abs=1e-6)
    assert all(r.header.topic == TOPIC and r.header.frame_id == FRAME_ID for r in results)
    assert summary.kind == "bag" and summary.frames == len(bag.frames) == len(seen)
    assert summary.per_class == {"red": 8, "green": 8, "blue": 8}


def test_other_image_topic_can_be_chosen(toy_artifact: Path, bag_maker) -> None:
    bag = bag_maker("sqlite3", "bgr8")
    with Predictor(toy_artifact) as predictor, predictor.stream(bag.path, topic=OTHER_TOPIC) as stream:
        stamps = [r.header.stamp_ns for r in stream]
    assert stamps == bag.stamps_ns[::4]


@pytest.mark.parametrize("topic", [None, "/nope"])
def test_missing_or_wrong_topic_lists_image_topics(toy_artifact: Path, bag_maker, topic: str | None) -> None:
    bag = bag_maker("ros1", "bgr8")
    args = ["predict", toy_artifact, "--source", bag.path] + (["--topic", topic] if topic else [])
    result = run(*args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: topic: expected one of the image topics")
    assert f"{TOPIC} (Image, 24 messages)" in lines[0] and OTHER_TOPIC in lines[0]
    assert "/status" not in lines[0]  # a String topic is not offered
    assert (topic or "no topic given") in lines[0]
    with Predictor(toy_artifact) as predictor, pytest.raises(OptionError, match="image topics"):
        predictor.stream(bag.path, topic=topic)


def test_topic_for_a_non_bag_source_and_a_bag_without_images(tmp_path: Path, toy_artifact: Path) -> None:
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    with Predictor(toy_artifact) as predictor:
        with pytest.raises(OptionError, match="topic: expected a ROS bag source"):
            predictor.stream([np.zeros((8, 8, 3), np.uint8)], topic=TOPIC)
        store = get_typestore(Stores.ROS2_HUMBLE)
        String = store.types["std_msgs/msg/String"]
        with Writer(tmp_path / "textonly", version=9) as writer:
            conn = writer.add_connection("/status", String.__msgtype__, typestore=store)
            writer.write(conn, 1, store.serialize_cdr(String(data="x"), String.__msgtype__))
        with pytest.raises(SourceError, match=r"expected a bag with sensor_msgs/Image.*found /status"):
            predictor.stream(tmp_path / "textonly", topic=TOPIC)
    (tmp_path / "broken.bag").write_bytes(b"not a bag at all")
    result = run("predict", toy_artifact, "--source", tmp_path / "broken.bag", "--topic", TOPIC)
    assert result.exit_code == 2 and "expected a readable ROS bag" in result.output


def test_a_bag_folder_is_not_an_image_folder(tmp_path: Path, toy_artifact: Path, bag_maker) -> None:
    """A ROS 2 bag folder may hold stray images; it still reads as a bag."""
    import shutil

    import cv2

    bag = bag_maker("sqlite3", "jpeg", 6)
    folder = tmp_path / "drive"
    shutil.copytree(bag.path, folder)
    cv2.imwrite(str(folder / "thumbnail.png"), np.zeros((8, 8, 3), np.uint8))
    with Predictor(toy_artifact) as predictor, predictor.stream(folder, topic=TOPIC) as stream:
        assert stream.source.kind == "bag"
        assert len(list(stream)) == 6


def test_an_undecodable_message_is_skipped_and_reported(tmp_path: Path, toy_artifact: Path) -> None:
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from ros_bag_writer import frame

    store = get_typestore(Stores.ROS2_HUMBLE)
    t = store.types
    msgtype = "sensor_msgs/msg/CompressedImage"
    with Writer(tmp_path / "damaged", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(TOPIC, msgtype, typestore=store)
        for i in range(5):
            data = cv2.imencode(".jpg", frame(i))[1].ravel() if i != 2 else np.frombuffer(b"garbage!" * 4, np.uint8)
            head = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=10 + i, nanosec=0),
                                            frame_id="cam")
            writer.write(conn, (10 + i) * 10**9, store.serialize_cdr(t[msgtype](header=head, format="jpeg",
                                                                                data=data), msgtype))
    result = run("predict", toy_artifact, "--source", tmp_path / "damaged", "--topic", TOPIC, "--save",
                 tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "4 frames" in result.output
    assert "source problem: skipped damaged /camera/image_raw message 2: expected a compressed image" in result.output
    stamps = [json.loads(line)["timestamp"] for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert stamps == [10.0, 11.0, 13.0, 14.0]


def test_without_rosbags_the_error_names_the_extra(toy_artifact: Path, bag_maker) -> None:
    """rosbags made unimportable (as on an install without the extra): one line naming edgecv[ros], exit 2."""
    import subprocess
    import sys

    bag = bag_maker("ros1", "bgr8")
    script = ("import sys\n"
              "for name in ('rosbags', 'rosbags.highlevel', 'rosbags.typesys', 'rosbags.image'):\n"
              "    sys.modules[name] = None  # import of it raises ModuleNotFoundError\n"
              "from edgecv.cli import main\n"
              f"sys.argv = ['edgecv', 'predict', {str(toy_artifact)!r}, '--source', {str(bag.path)!r}, "
              f"'--topic', {TOPIC!r}]\n"
              "main()\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert "found it missing: pip install 'edgecv[ros]'" in done.stdout + done.stderr


def test_follow_largest_example_replays_a_bag(toy_artifact: Path, bag_maker) -> None:
    """The robot example (examples/follow_largest.py) polls a BackgroundPredictor over a ROS 2 MCAP
    bag: every message becomes a result, the loop prints well-formed commands and ends cleanly."""
    import os
    import re
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    bag = bag_maker("mcap", "jpeg")
    done = subprocess.run([sys.executable, str(repo / "examples" / "follow_largest.py"), str(toy_artifact),
                           "--source", str(bag.path), "--topic", TOPIC, "--rate", "50", "--duration", "20"],
                          capture_output=True, text=True, timeout=90, env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert re.match(r"done: \d+ results, \d+ frames skipped, .* last error: None$", lines[-1]), lines[-1]
    results, skipped = map(int, re.findall(r"\d+", lines[-1])[:2])
    assert results + skipped == len(bag.frames)  # every message of the topic reached the predictor or was skipped
    assert results > 0 and all(line.startswith("t=") for line in lines[:-1])
