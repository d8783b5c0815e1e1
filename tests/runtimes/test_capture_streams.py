"""Resilient capture against real network streams served by separate processes on 127.0.0.1.

Each server (HTTP MJPEG: ``servers/mjpeg_server.py``; RTSP: ``servers/rtsp_server.py``, Debian's
GStreamer RTSP server under the system python) stamps each frame's index into its pixels, so the
tests check that what flows after a reconnect is real, fresh video. Every wait is bounded:
``give_up_after`` bounds the capture, the servers' start is bounded, helper threads are joined.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
from server_process import ServerProcess, rtsp_server_available  # noqa: E402
from frame_stamp import read_stamp  # noqa: E402

from edgecv.errors import SourceError  # noqa: E402
from edgecv.runtimes.streams.capture import open_capture  # noqa: E402

DOWN = 1.5  # s the server stays dead before it is restarted
BACK_WITHIN = 3.0  # s: frames must flow again this soon after the server listens again


@pytest.fixture
def mjpeg(tmp_path):
    with ServerProcess.mjpeg("--fps", "25", log=tmp_path / "server.log") as server:
        yield server


@pytest.fixture
def rtsp(tmp_path):
    missing = rtsp_server_available()
    if missing:
        pytest.skip(f"GStreamer RTSP server unavailable ({missing}); .ci/run installs it with apt-get")
    with ServerProcess.rtsp("--fps", "25", log=tmp_path / "server.log") as server:
        yield server


def _kill_and_restart(server: ServerProcess, back: list[float]) -> threading.Thread:
    def run() -> None:
        server.kill()
        time.sleep(DOWN)
        back.append(server.start())

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _reconnect(server: ServerProcess, caplog: pytest.LogCaptureFixture) -> float:
    """Read, kill the server mid-stream, restart it on the same port; seconds until frames flowed again."""
    caplog.set_level(logging.WARNING, logger="edgecv.runtimes.streams.capture")
    back: list[float] = []
    helper, gap, resumed = None, None, 0.0
    before, after = [], []  # (index stamped by the server, its send time)
    with open_capture(server.url, stall_timeout=1.0, give_up_after=20.0) as capture:
        try:
            for frame in capture:
                assert frame.image.shape == (240, 320, 3)
                if frame.gap is not None:
                    gap, resumed = frame.gap, frame.timestamp
                (after if gap is not None else before).append(read_stamp(frame.image))
                if helper is None and len(before) == 15:
                    helper = _kill_and_restart(server, back)
                if len(after) >= 10:
                    break
        finally:
            if helper is not None:
                helper.join(timeout=30)
        stats = capture.stats()
    assert back, "the server did not come back"
    # the kill closes the connection (RTSP: the control connection; measured: "read failed" for both)
    assert gap is not None and gap.reason in ("read failed", "no data for 1.0 s (read timeout)",
                                              "stalled 1.0 s"), gap
    assert gap.reconnects >= 1 and stats["reconnects"] >= gap.reconnects and stats["gaps"] == 1
    assert gap.seconds >= DOWN and gap.end == resumed
    assert after[0][1] >= back[0] - 0.5  # sent by the restarted server, not stale buffered video
    assert [i for i, _ in after] == sorted(i for i, _ in after)  # in order
    assert any("reconnecting" in r.message for r in caplog.records)
    assert any("frames again" in r.message for r in caplog.records)
    return resumed - back[0]


def test_mjpeg_server_killed_and_restarted_reconnects(mjpeg, caplog):
    flowing = _reconnect(mjpeg, caplog)
    print(f"MJPEG: frames flow again {flowing:.2f} s after the server is back")
    assert flowing < BACK_WITHIN


def test_rtsp_server_killed_and_restarted_reconnects(rtsp, caplog):
    flowing = _reconnect(rtsp, caplog)
    print(f"RTSP: frames flow again {flowing:.2f} s after the server is back")
    assert flowing < BACK_WITHIN


@pytest.mark.parametrize("protocol", ["mjpeg", "rtsp"])
def test_stalled_stream_is_noticed_by_the_watchdog(tmp_path, caplog, protocol):
    """The server keeps the connection (RTSP: the session) open but goes silent after 10 frames.

    FFmpeg's read timeout is set beyond the watchdog (3 s) so the watchdog is what notices.
    """
    if protocol == "rtsp" and (missing := rtsp_server_available()):
        pytest.skip(f"GStreamer RTSP server unavailable ({missing}); .ci/run installs it with apt-get")
    caplog.set_level(logging.WARNING, logger="edgecv.runtimes.streams.capture")
    stall = 1.0
    make = getattr(ServerProcess, protocol)
    with make("--fps", "25", "--stall-after", "10", log=tmp_path / "server.log") as server:
        with open_capture(server.url, stall_timeout=stall, read_timeout=3.0, give_up_after=10.0) as capture:
            frames = []
            for frame in capture:
                frames.append(frame)
                if frame.gap is not None:
                    break
    gap = frames[-1].gap
    # RTSP: FFmpeg's probe at open takes some of the 10 frames
    assert len(frames) - 1 == 10 if protocol == "mjpeg" else 1 <= len(frames) - 1 <= 10
    assert [f.index for f in frames] == list(range(len(frames)))
    print(f"{protocol}: {len(frames) - 1} frames, then {gap.reason}; frames again after {gap.seconds:.2f} s")
    assert gap.reason == f"stalled {stall:.1f} s" and 1 <= gap.reconnects <= 3
    noticed = [r for r in caplog.records if "reconnecting" in r.getMessage()]
    assert len(noticed) == 1 and f"stalled {stall:.1f} s after {len(frames) - 1} frames" in noticed[0].getMessage()
    # the watchdog fires `stall` s after the last frame (polling every 0.1 s) ...
    assert stall <= noticed[0].created - gap.start < stall + 0.5, noticed[0].created - gap.start
    # ... then reopens (HTTP: milliseconds; RTSP: FFmpeg's probe, cut at open_timeout = 1 s)
    assert gap.seconds < stall + (1.0 if protocol == "mjpeg" else 3.0), gap


def test_server_that_accepts_and_sends_nothing_fails_the_open_in_time(tmp_path):
    with ServerProcess.mjpeg("--stall-after", "0", log=tmp_path / "server.log") as server:
        started = time.monotonic()
        expected = r"expected a readable stream at http://127\.0\.0\.1.*cannot open \(failed after 0\.\d s\)"
        with pytest.raises(SourceError, match=expected):
            open_capture(server.url, open_timeout=0.5)
        assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("reconnect", [True, False])
def test_gives_up_after_n_seconds_or_at_once_without_reconnect(mjpeg, reconnect):
    give_up = 2.0
    count = 0
    with open_capture(mjpeg.url, stall_timeout=1.0, give_up_after=give_up, reconnect=reconnect) as capture:
        with pytest.raises(SourceError) as raised:
            for frame in capture:
                count += 1
                if count == 5:
                    mjpeg.kill()
                last = frame.timestamp  # "after N s without frames" counts from here
                assert count < 200, "frames kept coming from a dead server"
        failed = time.time() - last
        stats = capture.stats()
    message = str(raised.value)
    if reconnect:
        assert message.startswith(f"gave up on stream {mjpeg.url} after 2.") and "reconnect attempts" in message
        assert give_up <= failed < give_up + 1.5 and stats["reconnects"] >= 2
    else:
        assert "stopped delivering frames" in message and "reconnect is off" in message
        assert failed < 1.5 and stats["reconnects"] == 0


def test_close_from_another_thread_stops_iteration_and_joins_the_reader(mjpeg):
    capture = open_capture(mjpeg.url.replace("http://", "http://user:secret@"))
    assert capture.label == mjpeg.url and "secret" not in repr(capture)  # no password in logs and errors
    timer = threading.Timer(0.5, capture.close)
    timer.start()
    started = time.monotonic()
    count = sum(1 for _ in capture)  # ends when closed, no error
    timer.join(timeout=5)
    assert 0 < count < 100 and time.monotonic() - started < 1.5
    assert not [t for t in threading.enumerate() if t.name == "edgecv-capture"]


def test_script_that_never_closes_a_live_capture_exits_zero(mjpeg):
    root = Path(__file__).resolve().parents[2]
    script = ("import sys; sys.path.insert(0, %r)\n"
              "from edgecv.runtimes.streams.capture import open_capture\n"
              "for frame in open_capture(%r):\n"
              "    if frame.index == 5:\n"
              "        break\n"
              "print('read', frame.index)\n") % (str(root), mjpeg.url)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "read 5", result.stderr[-2000:]
