"""How an ``edgecv predict --save`` run over a network stream stops, run as a real process against
stream servers in separate processes (HTTP MJPEG, Debian's GStreamer RTSP server):

* SIGTERM: a normal end (summary, exit 0, every result in the video);
* SIGKILL: the fragmented MP4 still plays and holds all but at most its last second;
* an RTSP recording played to its end: exit 0; cut short by its server's death: exit 2 after the
  summary and the files written; a live RTSP stream whose server dies: ``--give-up-after`` ends
  the run the same way; a live stream's normal end (RTCP BYE) is reconnected like a drop.

Frames are counted by two decoders (OpenCV, PyAV)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
from server_process import ServerProcess, rtsp_server_available  # noqa: E402

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


def write_h264_clip(path: Path, frames: int, fps: int = FPS) -> Path:
    """A plain (not fragmented) H.264 MP4 written with PyAV: what a media server serves as a recording."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.gop_size = fps
        for index in range(frames):
            image = np.zeros((240, 320, 3), np.uint8)
            image[:120, (index * 3) % 160:(index * 3) % 160 + 160] = (0, 0, 255)  # a moving red box
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def rtsp_server(tmp_path: Path, *options: str) -> ServerProcess:
    missing = rtsp_server_available()
    if missing:
        pytest.skip(f"GStreamer RTSP server unavailable ({missing}); .ci/run installs it with apt-get")
    return ServerProcess.rtsp("--fps", str(FPS), *options, log=tmp_path / "server.log")


def test_rtsp_recording_played_to_its_end_exits_zero(tmp_path: Path, toy_artifact: Path) -> None:
    clip = write_h264_clip(tmp_path / "vod.mp4", 2 * FPS)
    out = tmp_path / "out"
    with rtsp_server(tmp_path, "--file", str(clip)) as server:
        proc = start_predict(toy_artifact, server.url, out)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr  # the end of the stream is the end of the run, not an error
    lines = parsed_lines(out / "predictions.jsonl")
    assert len(lines) >= 2 * FPS - 2 and opencv_frames(out / "stream.mp4")[0] == len(lines)
    assert f"{len(lines)} frames" in stdout and "error" not in stderr.lower()


def test_rtsp_recording_cut_short_prints_summary_then_the_error(tmp_path: Path, toy_artifact: Path) -> None:
    clip = write_h264_clip(tmp_path / "vod.mp4", 8 * FPS)
    out = tmp_path / "out"
    with rtsp_server(tmp_path, "--file", str(clip)) as server:
        proc = start_predict(toy_artifact, server.url, out)
        wait_for_lines(out / "predictions.jsonl", FPS, proc)
        server.kill()  # the media server dies mid-recording
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2, (stdout, stderr)
    lines = parsed_lines(out / "predictions.jsonl")
    assert f"{len(lines)} frames" in stdout and "wrote" in stdout, stdout  # summary and files, then the error
    assert f"ended at frame {len(lines)} of {8 * FPS}" in stderr.replace("\n", " "), stderr
    assert opencv_frames(out / "stream.mp4")[0] == len(lines)  # finalised: every result recorded


def test_live_rtsp_server_gone_gives_up_with_summary(tmp_path: Path, toy_artifact: Path) -> None:
    out = tmp_path / "out"
    with rtsp_server(tmp_path) as server:
        proc = start_predict(toy_artifact, server.url, out, "--give-up-after", "1.5")
        wait_for_lines(out / "predictions.jsonl", FPS, proc)
        server.kill()
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2, (stdout, stderr)
    lines = parsed_lines(out / "predictions.jsonl")
    assert f"{len(lines)} frames" in stdout and "wrote" in stdout, stdout  # summary and files, then the error
    assert "gave up on stream" in stderr and "without frames" in stderr, stderr  # the last gap is in the error
    assert opencv_frames(out / "stream.mp4")[0] == len(lines)


def test_live_rtsp_normal_end_is_reconnected_like_a_drop(tmp_path: Path, toy_artifact: Path) -> None:
    """OpenCV cannot tell an RTSP end-of-stream from a drop (capture.py): the server, still up, serves
    the stream again; the run goes on with the gap reported and ends at --max-frames, exit 0."""
    out = tmp_path / "out"
    with rtsp_server(tmp_path, "--end-after", str(FPS)) as server:
        proc = start_predict(toy_artifact, server.url, out, "--max-frames", str(FPS + 10))
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert f"{FPS + 10} frames" in stdout and "gap of" in stdout, stdout


NEVER_CLOSED_LIVE = """
import sys, time
from edgecv.runtimes import Predictor
stream = Predictor(sys.argv[1]).stream(sys.argv[2])  # a live stream (latest policy), never closed
for count, result in enumerate(stream, 1):
    if count == 5:
        break
print("leaving", time.monotonic(), flush=True)
"""


def test_script_leaving_a_live_stream_open_exits_zero_promptly(toy_artifact: Path,
                                                               mjpeg_server: ServerProcess) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", NEVER_CLOSED_LIVE, str(toy_artifact), mjpeg_server.url], env=env,
                          capture_output=True, text=True, timeout=60)
    ended = time.monotonic()
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    left = float(proc.stdout.split()[1])
    assert ended - left < 5.0  # the threads stopped at exit without waiting out a join timeout (10 s)
