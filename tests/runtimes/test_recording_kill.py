"""Recordings that survive the way services stop: ``edgecv predict --save`` run as a real process
over a live MJPEG stream (a separate server process), stopped with SIGTERM (a normal end:
summary, exit 0, every result in the video) and with SIGKILL (the fragmented MP4 still plays and
holds all but at most its last second). Frames are counted by two decoders (OpenCV, PyAV)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
from server_process import ServerProcess  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FPS = 25  # the server's rate: the recording is tagged with the measured one, so 1 s = ~25 frames


def start_predict(artifact: Path, source: str, out: Path, *options: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "edgecv.cli", "predict", str(artifact), "--source", source,
                             "--save", str(out), *options], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_lines(path: Path, lines: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Poll ``path`` until it has ``lines`` lines (bounded); fail with the process's output otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_bytes().count(b"\n") >= lines:
            return
        if proc.poll() is not None:
            pytest.fail(f"predict exited early ({proc.returncode}): {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{path} did not reach {lines} lines in {timeout} s: {proc.communicate()}")


def opencv_frames(path: Path) -> tuple[int, float]:
    """(frames OpenCV decodes, the rate the file is tagged with)."""
    capture, count = cv2.VideoCapture(str(path)), 0
    assert capture.isOpened(), f"{path} does not open"
    fps = capture.get(cv2.CAP_PROP_FPS)
    while capture.read()[0]:
        count += 1
    capture.release()
    return count, fps


def pyav_frames(path: Path) -> int:
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def parsed_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def mjpeg_server(tmp_path: Path):
    with ServerProcess.mjpeg("--fps", str(FPS), log=tmp_path / "server.log") as server:
        yield server


def test_sigterm_finalises_recording_and_prints_summary(tmp_path: Path, toy_artifact: Path,
                                                        mjpeg_server: ServerProcess) -> None:
    out = tmp_path / "out"
    proc = start_predict(toy_artifact, mjpeg_server.url, out)
    wait_for_lines(out / "predictions.jsonl", 30, proc)  # past the rate measurement (20 frames)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    # prompt: no stage waits out a join timeout (the capture thread of a live stream once ran on for 10 s)
    assert time.monotonic() - sent < 5.0
    lines = parsed_lines(out / "predictions.jsonl")
    frames, fps = opencv_frames(out / "stream.mp4")
    assert frames == pyav_frames(out / "stream.mp4") == len(lines) >= 30  # nothing lost at a SIGTERM
    assert f"{len(lines)} frames" in stdout and "interrupted" in stdout, stdout  # the summary, counting the files
    assert str(out / "stream.mp4") in stdout.replace("\n", "") and "predictions.jsonl" in stdout
    assert abs(fps - FPS) < 0.2 * FPS  # tagged with the measured rate


def test_sigkill_leaves_a_playable_recording_missing_at_most_a_second(tmp_path: Path, toy_artifact: Path,
                                                                     mjpeg_server: ServerProcess) -> None:
    out = tmp_path / "out"
    proc = start_predict(toy_artifact, mjpeg_server.url, out)
    wait_for_lines(out / "predictions.jsonl", 3 * FPS, proc)  # ~3 s of recording
    proc.kill()  # SIGKILL: no handler, no finaliser runs
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    lines = parsed_lines(out / "predictions.jsonl")  # every line whole: written and flushed per frame
    frames, fps = opencv_frames(out / "stream.mp4")  # a plain MP4 would not even open here (no moov)
    assert frames == pyav_frames(out / "stream.mp4")
    one_second = round(fps)  # the key frame (= fragment) interval: what a hard kill may lose
    assert len(lines) - one_second <= frames <= len(lines), (frames, len(lines), fps)
    assert abs(fps - FPS) < 0.2 * FPS
