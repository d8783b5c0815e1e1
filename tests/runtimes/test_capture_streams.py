"""Resilient capture against real network streams served by separate processes on 127.0.0.1.

Each server (HTTP MJPEG: ``servers/mjpeg_server.py``; RTSP: ``servers/rtsp_server.py``, Debian's
GStreamer RTSP server under the system python) stamps each frame's index into its pixels, so the
tests check that what flows after a reconnect is real, fresh video. Every wait is bounded:
``give_up_after`` bounds the capture, the servers' start is bounded, helper threads are joined.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
from launch import ServerProcess, rtsp_server_available  # noqa: E402
from stamp import read_stamp  # noqa: E402

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
    assert gap is not None and gap.reason in ("read failed", "stalled 1.0 s"), gap
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
