"""Start the test stream servers as separate processes on 127.0.0.1, kill and restart them.

Decoders deadlock with servers living in the test's own process, so every server here is a child
process; ``ServerProcess.start`` returns once the child printed ``READY`` (bounded in time).
"""

from __future__ import annotations

import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-gi lives there, not in the venv


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rtsp_server_available() -> str | None:
    """``None`` if the GStreamer RTSP server can run here, else what is missing."""
    probe = ("import gi; gi.require_version('GstRtspServer', '1.0'); gi.require_version('Gst', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('x264enc'), 'x264enc'")
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON}: {exc}"
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"


class ServerProcess:
    """One test server: ``argv`` plus ``--port PORT``; ``start`` / ``kill`` / ``restart`` keep the port."""

    def __init__(self, argv: list[str], port: int | None = None, log: Path | None = None) -> None:
        self.argv = argv
        self.port = port or free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def mjpeg(cls, *options: str, **kwargs: object) -> ServerProcess:
        return cls([sys.executable, str(HERE / "mjpeg_server.py"), *options], **kwargs)

    @classmethod
    def rtsp(cls, *options: str, **kwargs: object) -> ServerProcess:
        return cls([SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), *options], **kwargs)

    @property
    def url(self) -> str:
        rtsp = self.argv[1].endswith("rtsp_server.py")
        return f"rtsp://127.0.0.1:{self.port}/stream" if rtsp else f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self, timeout: float = 15.0) -> float:
        """Start and wait for ``READY``; returns ``time.time()`` when the server listens. Retries a busy port."""
        deadline = time.monotonic() + timeout
        while True:
            stderr = open(self.log, "ab") if self.log else subprocess.DEVNULL
            self.process = subprocess.Popen([*self.argv, "--port", str(self.port)], stdout=subprocess.PIPE,
                                            stderr=stderr)
            if self.log:
                stderr.close()
            if self._wait_ready(deadline):
                return time.time()
            self.kill()
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {self.argv[1]} did not start on port {self.port} within {timeout} s")
            time.sleep(0.2)  # the port may still be held by the previous run

    def _wait_ready(self, deadline: float) -> bool:
        assert self.process is not None and self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    return False
                line = self.process.stdout.readline()
                if not line:
                    return False  # the child exited
                if line.startswith(b"READY"):
                    return True
        return False

    def kill(self) -> None:
        """SIGKILL (no goodbye to the clients: a dropped network) and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
        self.process = None

    def restart(self) -> float:
        self.kill()
        return self.start()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
