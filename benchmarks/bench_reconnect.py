"""Reconnect: how soon frames flow again after a network stream's server comes back.

    python benchmarks/bench_reconnect.py [--trials 5] [--down 1.5] [--servers mjpeg,rtsp]

For each server (the tests' HTTP MJPEG server and Debian's GStreamer RTSP server, H.264, each a
separate process on 127.0.0.1, 320x240 at 25 fps), per trial: read 15 frames through
``edgecv.runtimes.streams.capture.open_capture`` (default timeouts), SIGKILL the server, keep it
down ``--down`` seconds, restart it on the same port, and time from the moment it listens again
to the first frame the reader yields (the frame that carries the Gap). Frames are checked fresh:
their stamped send time is after the restart. Target (issue 9): under 3 s.

Also prints the capture latency of each server: the age of each frame when the reader yields it
(capture time - the send time stamped in its pixels) over ``--latency-frames`` frames, with a
consumer that takes frames as fast as they come: the floor under any pipeline's frame age.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "runtimes" / "servers"))
from server_process import ServerProcess, rtsp_server_available  # noqa: E402
from frame_stamp import read_stamp  # noqa: E402

from edgecv.runtimes.streams.capture import open_capture  # noqa: E402


def one_trial(server: ServerProcess, down: float) -> tuple[float, int, str]:
    """Seconds from server back to first frame, reopen attempts, gap reason."""
    back: list[float] = []

    def kill_restart() -> None:
        server.kill()
        time.sleep(down)
        back.append(server.start())

    helper = threading.Thread(target=kill_restart)
    with open_capture(server.url, give_up_after=30.0) as capture:
        for count, frame in enumerate(capture):
            if count == 15:
                helper.start()
            if frame.gap is not None:
                helper.join(timeout=30)
                _, sent = read_stamp(frame.image)
                if sent < back[0] - 0.5:
                    raise RuntimeError("the first frame after the gap was sent before the restart")
                return frame.timestamp - back[0], frame.gap.reconnects, frame.gap.reason
    raise RuntimeError("the stream ended without a gap")


def latency(server: ServerProcess, frames: int) -> list[float]:
    """Milliseconds from send to capture of ``frames`` frames, after a 1 s warm-up."""
    ages = []
    with open_capture(server.url, give_up_after=10.0) as capture:
        started = time.time()
        for frame in capture:
            if frame.timestamp - started > 1.0:
                ages.append((frame.timestamp - read_stamp(frame.image)[1]) * 1000)
            if len(ages) >= frames:
                break
    return sorted(ages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--down", type=float, default=1.5)
    parser.add_argument("--servers", default="mjpeg,rtsp")
    parser.add_argument("--latency-frames", type=int, default=250)
    args = parser.parse_args()
    for name in args.servers.split(","):
        if name == "rtsp" and (missing := rtsp_server_available()):
            print(f"rtsp: skipped ({missing})")
            continue
        server = getattr(ServerProcess, name)("--fps", "25")
        server.start()
        try:
            ages = latency(server, args.latency_frames)
            results = [one_trial(server, args.down) for _ in range(args.trials)]
        finally:
            server.kill()
        seconds = [r[0] for r in results]
        print(f"{name}: frames flow again {statistics.median(seconds):.2f} s (median) after the server is back; "
              f"min {min(seconds):.2f}, max {max(seconds):.2f} s over {args.trials} trials, down {args.down} s; "
              f"reopen attempts {[r[1] for r in results]}; reasons {sorted({r[2] for r in results})}")
        print(f"{name}: capture latency (send -> yielded) p50 {ages[len(ages) // 2]:.1f} ms, "
              f"p95 {ages[int(len(ages) * 0.95)]:.1f} ms over {len(ages)} frames at 25 fps")


if __name__ == "__main__":
    main()
