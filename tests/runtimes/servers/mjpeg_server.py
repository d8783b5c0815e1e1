"""HTTP MJPEG test server (``multipart/x-mixed-replace``) on 127.0.0.1, run as a separate process.

    python mjpeg_server.py --port 8554 [--fps 25] [--size 320x240] [--stall-after N]

Every client gets the stream at ``/`` (any path): JPEG frames stamped with a global frame index and
their send time (see ``frame_stamp.py``). ``--stall-after N``: after N frames a connection goes silent but
stays open (N = 0: the server accepts and sends nothing at all, not even the HTTP headers), the
stall a watchdog must notice. Prints ``READY <port>`` once listening. Stdlib + OpenCV (JPEG encode).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frame_stamp import stamped_frame  # noqa: E402

BOUNDARY = "edgecvframe"


class Clock:
    """The stream's frame index, shared by every client: frame ``i`` is due at ``start + i / fps``."""

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.start = time.monotonic()

    def wait_next(self, last: int) -> int:
        """Sleep until the frame after ``last`` is due; return its index (skips if the client is slow)."""
        index = max(last + 1, int((time.monotonic() - self.start) * self.fps))
        delay = self.start + index / self.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return index


def make_handler(clock: Clock, width: int, height: int, stall_after: int | None) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:  # quiet: the tests read stdout
            pass

        def _stall(self) -> None:
            while True:  # hold the connection open, send nothing, until the process is killed
                time.sleep(3600)

        def do_GET(self) -> None:
            if stall_after == 0:
                self._stall()
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            sent, index = 0, -1
            try:
                while stall_after is None or sent < stall_after:
                    index = clock.wait_next(index)
                    raw = np.frombuffer(stamped_frame(index, width, height), np.uint8).reshape(height, width, 3)
                    ok, jpeg = cv2.imencode(".jpg", raw, [cv2.IMWRITE_JPEG_QUALITY, 85])
                    head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n").encode()
                    self.wfile.write(head + jpeg.tobytes() + b"\r\n")
                    self.wfile.flush()
                    sent += 1
            except (BrokenPipeError, ConnectionResetError):
                return  # the client went away
            self._stall()

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--stall-after", type=int, default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(Clock(args.fps), width, height,
                                                                         args.stall_after))
    server.daemon_threads = True
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    print(f"READY {server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
