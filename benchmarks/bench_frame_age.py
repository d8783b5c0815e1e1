"""Frame age on a live source faster than inference: does edgecv act on fresh frames?

A separate-process MJPEG server on 127.0.0.1 sends frames faster than the model runs, each frame
stamped in its pixels with its index and send time (``tests/runtimes/servers/frame_stamp.py``).
``edgecv`` streams it with the ``latest`` policy; for every result the age of the frame it belongs
to is measured from the server's send time to the moment the result is handed over, so the
decoder's own buffering is counted, not hidden. Target: p95 age < 2x the median inference time.

``--decoders`` compares FFmpeg decoder thread counts side by side (rounds interleaved):
``ffmpeg`` is FFmpeg's own default (one per core; edgecv's default), a number asks for that many
(1: no frame-threading delay; ``capture={"decoder_threads": n}``).

    python benchmarks/bench_frame_age.py --model exports/yolo/model.onnx --frames 1000 --fps 60
    python benchmarks/bench_frame_age.py --model m320.onnx --decoders ffmpeg,1 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "runtimes" / "servers"))
from frame_stamp import read_stamp  # noqa: E402
from server_process import ServerProcess  # noqa: E402

from edgecv.runtimes import Predictor  # noqa: E402


def measure(model: Path, frames: int, fps: float, size: str, threads: int, decoder: str = "ffmpeg") -> dict:
    """Stream ``frames`` results from a live MJPEG server; returns ages, inference times, drops (ms)."""
    server = ServerProcess.mjpeg("--fps", str(fps), "--size", size)
    server.start()
    ages, infer, dropped = [], [], 0
    try:
        with Predictor(model, threads=threads, backend_options={"spinning": False}) as predictor:
            threads_opt = None if decoder == "ffmpeg" else int(decoder)
            with predictor.stream(server.url, policy="latest", max_frames=frames,
                                  capture={"decoder_threads": threads_opt}) as results:
                for result in results:
                    ready = time.time()
                    _, sent = read_stamp(result.image)
                    ages.append((ready - sent) * 1e3)
                    infer.append(result.timing.get("infer", float("nan")))
                    dropped += result.dropped
    finally:
        server.kill()
    return {"ages": ages[10:], "infer": infer[10:], "dropped": dropped}  # first frames: warm-up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an edgecv .onnx artifact")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--fps", type=float, default=60.0, help="server frame rate (above the model's)")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decoders", default="ffmpeg", help="comma-separated: ffmpeg (its default) or a thread count")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    decoders = args.decoders.split(",")
    for round_ in range(args.rounds):
        for decoder in decoders[round_ % len(decoders):] + decoders[:round_ % len(decoders)]:
            load = os.getloadavg()[0]
            got = measure(args.model, args.frames, args.fps, args.size, args.threads, decoder)
            ages, infer = np.array(got["ages"]), statistics.median(got["infer"])
            p50, p95 = np.percentile(ages, [50, 95])
            verdict = "met" if p95 < 2 * infer else "NOT met"
            print(f"round {round_} decoder threads {decoder}: {len(ages)} results, server {args.fps:g} fps "
                  f"{args.size}, {got['dropped']} dropped by 'latest'; frame age p50 {p50:.1f} ms, p95 {p95:.1f} ms; "
                  f"median inference {infer:.1f} ms; p95 / inference = {p95 / infer:.2f} (target < 2: {verdict}) "
                  f"(load average {load:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
