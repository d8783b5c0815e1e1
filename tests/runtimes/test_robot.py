"""The control-loop API (``edgecv/runtimes/robot.py``): a 100 Hz loop polls a slower background predictor.

Real ONNX Runtime sessions (the demo YOLO at 160, or the toy detector where speed does not
matter), real video files written here, Python iterables as sources.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import OptionError
from edgecv.runtimes import BackgroundPredictor, Predictor

REPO = Path(__file__).resolve().parents[2]


def write_video(path: Path, frames: int, fps: float, size: tuple[int, int] = (320, 240)) -> Path:
    """An mp4 (mp4v) of ``frames`` frames: a red band moving over black."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), "this OpenCV build cannot write mp4v"
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, (i * 9) % (size[0] // 2):][:, : size[0] // 2] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    return path


def _endless(count: int = 5000, size: tuple[int, int] = (240, 320)):
    """A live-like iterable: fresh frames as fast as they are asked for (bounded in count)."""
    for i in range(count):
        frame = np.zeros((*size, 3), np.uint8)
        frame[:, (i * 7) % size[1]:] = (0, 0, 200)
        yield frame


def _poll(bg: BackgroundPredictor, seconds: float, hz: float = 100.0, max_age: float | None = None):
    """A fixed-rate control loop: every poll's duration (s) and what it returned."""
    polls: list[tuple[float, object]] = []
    period, start = 1.0 / hz, time.monotonic()
    tick = start
    while time.monotonic() - start < seconds:
        t0 = time.perf_counter()
        seen = bg.latest(max_age=max_age)
        polls.append((time.perf_counter() - t0, seen))
        tick += period
        time.sleep(max(0.0, tick - time.monotonic()))
    return polls


def test_poll_at_100hz_never_blocks_and_never_acts_on_stale(tmp_path: Path, demo_onnx_160: Path) -> None:
    video = write_video(tmp_path / "drive.mp4", frames=30, fps=15.0)  # 2 s replayed at its recorded pace
    max_age = 0.25
    with BackgroundPredictor(demo_onnx_160, video, rate=8) as bg:
        polls = _poll(bg, 2.5, max_age=max_age)
        health = bg.health()
    durations = np.array([d for d, _ in polls])
    seen = [s for _, s in polls if s is not None]
    assert len(polls) > 150  # the loop kept its rate: latest() never waited on inference
    assert np.median(durations) < 0.001 and np.percentile(durations, 99) < 0.02, durations.max()
    assert seen and all(s.age <= max_age for s in seen)
    seqs = [s.seq for s in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) >= 5
    assert len(seen) > 2 * len(set(seqs))  # inference slower than the loop: the same result read again
    by_seq = {}
    for s in seen:  # the same result read twice keeps its number
        assert by_seq.setdefault(s.seq, s.result) is s.result
    assert health.frames_out >= max(seqs) and health.requested_rate == 8.0


def test_max_age_hides_a_result_once_it_is_stale(toy_artifact: Path) -> None:
    frames = [np.zeros((120, 160, 3), np.uint8) for _ in range(3)]
    with BackgroundPredictor(toy_artifact, frames, rate=None, policy="every") as bg:
        assert bg.wait(10.0)
        newest = bg.latest()
        assert newest is not None and newest.seq == 3 and newest.age >= 0
        assert bg.latest(max_age=10.0).seq == 3
        time.sleep(0.05)
        assert bg.latest(max_age=0.04) is None  # older than asked for: nothing to act on
        assert bg.latest().age > newest.age  # age grows while nothing new arrives
        with pytest.raises(OptionError, match="max_age"):
            bg.latest(max_age=-1)


def test_rate_cap_bounds_the_inference_rate(demo_onnx_160: Path) -> None:
    with BackgroundPredictor(demo_onnx_160, _endless(), rate=5) as bg:
        time.sleep(0.5)
        first = bg.latest()
        time.sleep(2.0)
        last = bg.latest()
        health = bg.health()
    assert first is not None and last is not None
    done = last.seq - first.seq
    assert 4 <= done <= 12, done  # 5 Hz x 2 s = 10, loosely (a loaded machine)
    assert health.dropped > 0  # the source ran ahead; the cap skipped frames rather than queueing them
    assert health.rate <= 6.0


def test_health_counts_add_up_after_a_replay(tmp_path: Path, toy_artifact: Path) -> None:
    video = write_video(tmp_path / "drive.mp4", frames=20, fps=20.0)
    seen: list[int] = []
    started = time.monotonic()
    with BackgroundPredictor(toy_artifact, video, rate=10, on_result=lambda r: seen.append(r.seq)) as bg:
        assert bg.wait(20.0)
        elapsed = time.monotonic() - started
        health = bg.health()
        newest = bg.latest()
    assert elapsed >= 0.8  # 20 frames at 20 fps replayed at their pace (~1 s), not decoded at once
    assert not health.running and health.last_error is None
    assert health.frames_in == 20
    assert health.frames_out + health.dropped == health.frames_in  # every frame inferred or skipped
    assert health.dropped > 0  # 10 Hz cap < 20 fps source
    assert seen == list(range(1, health.frames_out + 1))  # the callback saw every result, in order
    assert newest is not None and newest.seq == health.frames_out
    assert health.reconnects == 0 and health.gaps == 0


def test_a_source_error_shows_in_health(toy_artifact: Path) -> None:
    def unplugged():
        for _ in range(4):
            yield np.zeros((120, 160, 3), np.uint8)
        raise RuntimeError("camera unplugged")

    with BackgroundPredictor(toy_artifact, unplugged(), rate=None, policy="every") as bg:
        assert bg.wait(10.0)
        health = bg.health()
        assert bg.latest() is not None and bg.latest().seq == health.frames_out  # the last result stays readable
    assert not health.running
    assert health.last_error is not None and "camera unplugged" in health.last_error
    assert health.frames_in == 4


def test_falling_behind_the_rate_is_reported(demo_onnx_160: Path, caplog: pytest.LogCaptureFixture) -> None:
    # 1000 Hz cannot be met by a real model: period_met is False and a warning is logged (once: rate-limited)
    with caplog.at_level("WARNING", logger="edgecv.runtimes.robot"):
        with BackgroundPredictor(demo_onnx_160, _endless(), rate=1000, warn_every=60) as bg:
            time.sleep(2.6)
            health = bg.health()
    assert health.period_met is False and 0 < health.rate < 1000
    warnings = [r for r in caplog.records if "of the 1000.0 Hz requested" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "inference is slower than the period" in warnings[0].getMessage()


def test_bad_knobs_are_refused(toy_artifact: Path) -> None:
    with pytest.raises(OptionError, match="rate: expected"):
        BackgroundPredictor(toy_artifact, [], rate=0)
    with pytest.raises(OptionError, match="policy: expected"):
        BackgroundPredictor(toy_artifact, [], policy="newest")
    with Predictor(toy_artifact) as predictor:
        with pytest.raises(OptionError, match="threads / spinning"):
            BackgroundPredictor(predictor, [], spinning=True)
        with BackgroundPredictor(predictor, [np.zeros((64, 64, 3), np.uint8)], rate=None) as bg:
            assert bg.wait(10.0) and bg.latest().seq == 1
        assert predictor.backend.session is not None  # a predictor passed in is not closed with it


def test_a_script_that_never_closes_exits_0(tmp_path: Path, demo_onnx_160: Path) -> None:
    script = tmp_path / "robot.py"
    script.write_text(textwrap.dedent(f"""
        import time
        import numpy as np
        from edgecv.runtimes import BackgroundPredictor

        def camera():
            while True:
                yield np.zeros((240, 320, 3), np.uint8)

        perception = BackgroundPredictor({str(demo_onnx_160)!r}, camera(), rate=20)
        deadline = time.monotonic() + 10
        while perception.latest() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        print("seq", perception.latest().seq, flush=True)
        # no close(): the interpreter's exit must stop the threads and return 0
    """))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("seq ")
    assert time.monotonic() - started < 40


def test_live_stream_outage_max_age_and_reconnects(tmp_path: Path, toy_artifact: Path) -> None:
    """A real MJPEG server (a separate process on 127.0.0.1) killed and restarted mid-run: while it is
    down nothing fresh is returned; afterwards results flow again and health() counts the reconnect."""
    sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
    from server_process import ServerProcess

    with ServerProcess.mjpeg("--fps", "25", log=tmp_path / "server.log") as server:
        with BackgroundPredictor(toy_artifact, server.url, rate=10, capture={"stall_timeout": 1.0}) as bg:
            assert bg.source.live
            deadline = time.monotonic() + 15
            while bg.latest(max_age=0.5) is None and time.monotonic() < deadline:
                time.sleep(0.01)
            before = bg.latest(max_age=0.5)
            assert before is not None
            server.kill()
            time.sleep(1.0)
            assert bg.latest(max_age=0.5) is None  # down for 1 s: the last result is too old to act on
            assert bg.latest() is not None  # ... though still readable without max_age
            server.start()
            deadline = time.monotonic() + 20
            after = None
            while time.monotonic() < deadline:
                after = bg.latest(max_age=0.5)
                if after is not None and after.seq > before.seq and bg.health().gaps:
                    break
                time.sleep(0.01)
            health = bg.health()
    assert after is not None and after.seq > before.seq
    assert health.reconnects >= 1 and health.gaps >= 1
    assert health.last_error is not None and health.last_error.startswith("source: ")


def test_sigterm_stops_the_control_loop_gracefully(tmp_path: Path, toy_artifact: Path) -> None:
    """``docker stop`` / systemd: SIGTERM reaches the loop as KeyboardInterrupt, ``with`` closes everything."""
    script = tmp_path / "robot.py"
    script.write_text(textwrap.dedent(f"""
        import time
        import numpy as np
        from edgecv.runtimes import BackgroundPredictor

        def camera():
            while True:
                yield np.zeros((120, 160, 3), np.uint8)

        try:
            with BackgroundPredictor({str(toy_artifact)!r}, camera(), rate=50) as perception:
                print("running", flush=True)
                while True:
                    perception.latest(max_age=0.5)
                    time.sleep(0.01)
        except KeyboardInterrupt:
            print("stopped", perception.health().running, flush=True)
    """))
    process = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                               env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    try:
        assert process.stdout.readline().strip() == "running"
        time.sleep(0.3)
        process.terminate()  # SIGTERM
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0
    assert out.strip() == "stopped False"
