"""Shutdown that loses nothing, in real subprocesses: SIGTERM mid-run, a script that never
closes its stream. Outputs are checked with real decoders (OpenCV) and json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def write_clip(path: Path, frames: int, size: tuple[int, int] = (320, 240)) -> Path:
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[: height // 2, (i * 5) % (width // 2):(i * 5) % (width // 2) + width // 2] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    return path


def start(script: str, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def count_frames(path: Path) -> int:
    """Frames a decoder actually reads (not the header's claim)."""
    capture, count = cv2.VideoCapture(str(path)), 0
    assert capture.isOpened(), f"{path} does not open"
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def wait_for_lines(path: Path, lines: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().count("\n") >= lines:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{path} did not reach {lines} lines in {timeout} s")


SLOW_PREDICT = """
    import sys, time
    from edgecv.runtimes import Predictor, predict_source
    from edgecv.runtimes.streams.sinks import CallbackSink
    with Predictor(sys.argv[1]) as predictor:  # the sink sleeps so that SIGTERM lands mid-run
        summary = predict_source(predictor, sys.argv[2], sys.argv[3], show_progress=False,
                                 sinks=[CallbackSink(lambda result: time.sleep(0.02))])
    print("interrupted" if summary.interrupted else "completed", summary.frames)
"""


def test_sigterm_mid_recording_finalises_video_and_jsonl(tmp_path: Path, toy_artifact: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", 400)
    out = tmp_path / "out"
    proc = start(SLOW_PREDICT, toy_artifact, clip, out)
    wait_for_lines(out / "predictions.jsonl", 10, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr  # SIGTERM ends the run like Ctrl-C: a normal, finalised end
    assert stdout.startswith("interrupted"), stdout
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert 10 <= len(lines) < 400
    assert count_frames(out / "clip.mp4") == len(lines)  # every recorded result is in the playable file
    assert stdout.split() == ["interrupted", str(len(lines))]  # the summary counts what the files hold


NEVER_CLOSED = """
    import sys
    from edgecv.runtimes import Predictor
    from edgecv.runtimes.streams.sinks import JsonlSink, VideoSink
    predictor = Predictor(sys.argv[1])
    results = predictor.stream(sys.argv[2], sinks=[VideoSink(sys.argv[4], fps=10.0), JsonlSink(sys.argv[3])])
    for count, result in enumerate(results, 1):
        if count == 5:
            break
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx"))
    print("leaving with the stream running, heavy:", heavy)  # no close(): threads mid-stream, in ONNX Runtime
"""


def test_script_that_never_closes_exits_zero(tmp_path: Path, toy_artifact: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", 400)
    proc = start(NEVER_CLOSED, toy_artifact, clip, tmp_path / "s.jsonl", tmp_path / "s.mp4")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "leaving with the stream running, heavy: []" in stdout and "Traceback" not in stderr  # torch-free
    lines = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert 5 <= len(lines) < 400  # flushed and closed at exit, every line whole
    assert count_frames(tmp_path / "s.mp4") == len(lines)  # the recording finalised at exit too
