"""Resilient capture of video files written by the tests (real OpenCV/FFmpeg decoding) and its options.

Each frame carries its index in its pixels (``servers/frame_stamp.py``), so a test knows which frame it
got back after the reader skipped a damaged stretch.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
from frame_stamp import read_stamp, stamped_frame  # noqa: E402

from edgecv.errors import ImageError, OptionError, SourceError  # noqa: E402
from edgecv.runtimes.streams.capture import CapturedFrame, capture_kind, open_capture  # noqa: E402

FRAMES = 90


def _write_video(path: Path, frames: int = FRAMES) -> Path:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30, (320, 240))
    assert writer.isOpened()
    for index in range(frames):
        writer.write(np.frombuffer(stamped_frame(index, 320, 240, send_time=0.0), np.uint8).reshape(240, 320, 3))
    writer.release()
    return path


def _corrupt(path: Path, start: float, stop: float) -> None:
    """Overwrite bytes [start, stop) (fractions of the file size) with seeded garbage."""
    data = bytearray(path.read_bytes())
    a, b = int(len(data) * start), int(len(data) * stop)
    data[a:b] = np.random.default_rng(9).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _read_all(path: Path) -> tuple[list[CapturedFrame], object]:
    with open_capture(path) as capture:
        frames = []
        for frame in capture:
            frames.append(frame)
            assert len(frames) <= FRAMES
    return frames, capture


def test_clean_file_reads_every_frame_and_ends_without_error(tmp_path):
    frames, capture = _read_all(_write_video(tmp_path / "clip.mp4"))
    assert capture.kind == "video" and capture.total == FRAMES and capture.fps == 30
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [read_stamp(f.image)[0] for f in frames] == list(range(FRAMES))
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (240, 320, 3)
    assert frames[30].media_time == pytest.approx(1.0, abs=0.04)
    assert capture.damage == [] and capture.gaps == [] and all(f.gap is None for f in frames)
    assert capture.stats() == {"frames": FRAMES, "reconnects": 0, "gaps": 0, "gap_seconds": 0.0}


def test_damage_in_the_middle_is_reported_and_reading_resumes_after_it(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="edgecv.runtimes.streams.capture")
    path = _write_video(tmp_path / "clip.mp4")
    _corrupt(path, 0.40, 0.55)
    frames, capture = _read_all(path)
    indices = [f.index for f in frames]
    assert [read_stamp(f.image)[0] for f in frames] == indices  # each frame is the one its index says
    first_bad = next(i for i, index in enumerate(indices) if index != i)
    resumed = indices[first_bad]
    assert 0 < first_bad < resumed < FRAMES - 1 and indices[-1] == FRAMES - 1  # read past the damage to the end
    assert capture.damage == [f"frames {first_bad}-{resumed - 1} of {FRAMES} undecodable, resumed at frame {resumed}"]
    gap = frames[first_bad].gap
    assert gap is not None and gap.reason == f"decoder error at frame {first_bad}" and capture.gaps == [gap]
    assert f"video clip.mp4: frames {first_bad}-" in caplog.text


def test_damaged_avi_is_reported_short_and_no_frame_comes_twice(tmp_path):
    """AVI's demuxer skips damaged chunks itself and fails only at the end: no seek, no duplicates."""
    path = _write_video(tmp_path / "clip.avi")
    _corrupt(path, 0.40, 0.55)
    frames, capture = _read_all(path)
    stamps = [read_stamp(f.image)[0] for f in frames]
    assert capture.total == FRAMES and len(frames) < FRAMES and stamps[-1] == FRAMES - 1
    # one damaged JPEG may decode into the previous picture; a seek past the "damage" would repeat 13
    assert [f.index for f in frames] == list(range(len(frames))) and len(set(stamps)) >= len(frames) - 1
    assert capture.damage == [f"ended at frame {len(frames)} of {FRAMES}"]


def test_damage_to_the_end_is_reported_as_an_early_end(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="edgecv.runtimes.streams.capture")
    path = _write_video(tmp_path / "clip.mp4")
    _corrupt(path, 0.45, 0.96)
    frames, capture = _read_all(path)
    assert 0 < len(frames) < FRAMES and [f.index for f in frames] == list(range(len(frames)))
    assert capture.damage == [f"ended at frame {len(frames)} of {FRAMES}"]
    assert f"ended at frame {len(frames)} of {FRAMES}" in caplog.text


@pytest.mark.parametrize("source, found", [
    ("missing.mp4", "found missing.mp4 (no such file)"),
    ("notes.txt", "found notes.txt"),
    (True, "found True"),
    (3.5, "found float"),
])
def test_sources_that_are_not_capturable_say_what_was_expected(tmp_path, monkeypatch, source, found):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(SourceError, match="expected a camera index, a stream URL or a video file") as raised:
        open_capture(source)
    assert str(raised.value).endswith(found)


def test_undecodable_video_file_is_refused_at_open(tmp_path):
    path = tmp_path / "junk.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    started = time.monotonic()
    expected = r"expected a readable video at junk\.mp4, found one OpenCV cannot open \(failed after"
    with pytest.raises(SourceError, match=expected):
        open_capture(path)
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("option, value", [("open_timeout", 0), ("stall_timeout", -1.0), ("read_timeout", "2"),
                                           ("give_up_after", 0.0), ("backoff_cap", True)])
def test_bad_timeouts_are_refused(tmp_path, option, value):
    with pytest.raises(OptionError, match=f"expected {option} > 0 seconds.*, found {value!r}"):
        open_capture(_write_video(tmp_path / "clip.mp4", 3), **{option: value})


def test_frames_above_max_pixels_are_refused_before_decoding(tmp_path):
    with pytest.raises(ImageError, match="video clip.mp4"):
        open_capture(_write_video(tmp_path / "clip.mp4", 3), max_pixels=320 * 200)
    assert not [t for t in threading.enumerate() if t.name == "edgecv-capture"]


def test_a_capture_is_iterated_once_and_close_mid_file_stops_it(tmp_path):
    capture = open_capture(_write_video(tmp_path / "clip.mp4"))
    frames = []
    for frame in capture:
        frames.append(frame.index)
        if frame.index == 9:
            capture.close()
    assert frames == list(range(10))
    with pytest.raises(SourceError, match="expected one pass over video clip.mp4, found a second iteration"):
        iter(capture)
    assert not [t for t in threading.enumerate() if t.name == "edgecv-capture"]


def test_capture_kind_tells_capture_sources_from_the_others(tmp_path):
    clip = _write_video(tmp_path / "clip.mp4", 3)
    (tmp_path / "photo.jpg").write_bytes(b"")
    assert [capture_kind(s) for s in (0, "1", "rtsp://user:pw@cam/x", "http://127.0.0.1:8/a.mjpg", clip, str(clip))] \
        == ["camera", "camera", "stream", "stream", "video", "video"]
    assert [capture_kind(s) for s in (tmp_path, tmp_path / "photo.jpg", True, None, [clip])] == [None] * 5


def test_capture_imports_neither_torch_nor_onnx():
    root = Path(__file__).resolve().parents[2]
    script = ("import sys; sys.path.insert(0, %r)\n"
              "import edgecv.runtimes.streams.capture\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'torchvision')))\n"
              % str(root))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]


def test_edgecv_predict_reports_a_half_corrupt_mp4_and_reads_past_it(tmp_path, toy_artifact):
    """Through the stream pipeline and the CLI: damage is in the summary, frames after it are predicted."""
    from typer.testing import CliRunner

    from edgecv.cli import app

    path = _write_video(tmp_path / "clip.mp4")
    _corrupt(path, 0.40, 0.55)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(toy_artifact), "--source", str(path), "--save", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "source problem: frames" in text and f"of {FRAMES} undecodable, resumed at frame" in text
    names = [line.split('"name": "')[1].split('"')[0] for line in (out / "predictions.jsonl").read_text().splitlines()]
    # read on past the damage (~36 frames before it, ~15 after): stopping at it would leave 36
    assert 45 < len(names) < FRAMES
