"""Browser view cost: inference throughput with 3 MJPEG viewers vs none (issue 9: within 10 %).

    python benchmarks/bench_view.py [--model model.onnx] [--seconds 8] [--rounds 3] [--size 640x480]

A predictor loop (main thread) hands each result to a sink thread that writes it to a
:class:`~edgecv.runtimes.streams.sinks.browser.BrowserView` (as the stream pipeline does), through
a 2-slot queue so inference is never throttled by more than the sink's own cost. Viewers are
``curl`` processes reading ``/stream.mjpg`` at full speed. Rounds alternate none / 3 viewers on
the same frames (skimage's astronaut, resized) so a loaded machine's drift hits both; the median
frames/s of each is reported with the encode counters (exactly one encode per served frame).
Default model: the demo YOLO exported into a temporary folder (needs the ``export`` extra).
"""

from __future__ import annotations

import argparse
import queue
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edgecv.runtimes import Predictor
from edgecv.runtimes.streams.result import StreamResult
from edgecv.runtimes.streams.sinks.browser import BrowserView


def _frames(size: tuple[int, int], count: int = 8) -> list[np.ndarray]:
    from skimage import data

    base = cv2.resize(np.ascontiguousarray(data.astronaut()[:, :, ::-1]), size)
    return [np.roll(base, 8 * i, axis=1) for i in range(count)]  # a moving scene: each JPEG differs


def _round(predictor: Predictor, view: BrowserView, frames: list[np.ndarray], seconds: float) -> tuple[float, int, float]:
    """Frames/s of predictor + sink thread for ``seconds``: (fps, frames, sink ms per frame)."""
    handoff: queue.Queue[StreamResult | None] = queue.Queue(maxsize=2)
    sink_seconds = [0.0]

    def sink() -> None:
        while (result := handoff.get()) is not None:
            t0 = time.perf_counter()
            view.write(result)
            sink_seconds[0] += time.perf_counter() - t0

    thread = threading.Thread(target=sink)
    thread.start()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        frame = frames[count % len(frames)]
        t0 = time.perf_counter()
        dets = predictor(frame)
        handoff.put(StreamResult(frame, dets, count, f"bench#{count}", time.time(),
                                 timing={"infer": (time.perf_counter() - t0) * 1000}))
        count += 1
    handoff.put(None)
    thread.join()
    return count / (time.perf_counter() - start), count, 1000 * sink_seconds[0] / max(count, 1)


def _viewers(url: str, n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(["curl", "-s", "-N", "--max-time", "600", "-o", "/dev/null", url]) for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a detection artifact (default: export the demo)")
    parser.add_argument("--seconds", type=float, default=8.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each setting, alternated")
    parser.add_argument("--size", default="640x480", help="frame size WxH")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from edgecv.export.api import export_model

            model = export_model("yolo", out=Path(tmp) / "model.onnx").path
        frames = _frames((width, height))
        fps: dict[int, list[float]] = {0: [], 3: []}
        with Predictor(model, threads=args.threads) as predictor, BrowserView("127.0.0.1", 0) as view:
            for frame in frames[:3]:
                predictor(frame)  # warm-up
            for _ in range(args.rounds):
                for n in (0, 3):
                    procs = _viewers(view.url + "stream.mjpg", n)
                    deadline = time.monotonic() + 20
                    while view.viewers < n and time.monotonic() < deadline:
                        time.sleep(0.05)
                    written, encoded = view.frames_written, view.frames_encoded
                    rate, count, sink_ms = _round(predictor, view, frames, args.seconds)
                    fps[n].append(rate)
                    print(f"viewers {n}: {rate:6.1f} frames/s ({count} frames, sink {sink_ms:.1f} ms/frame, "
                          f"{view.frames_encoded - encoded} encodes for {view.frames_written - written} written)")
                    for proc in procs:
                        proc.terminate()
                        proc.wait(10)
                    deadline = time.monotonic() + 10
                    while view.viewers and time.monotonic() < deadline:
                        time.sleep(0.05)
        none, three = statistics.median(fps[0]), statistics.median(fps[3])
        print(f"\nmedian frames/s: no viewer {none:.1f}, 3 viewers {three:.1f} "
              f"({100 * (three / none - 1):+.1f} %; target within -10 %), {width}x{height}, model {model.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
