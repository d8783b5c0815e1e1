"""A robot's 100 Hz control loop beside a background predictor in the same process.

Two questions, answered side by side in one run:

1. **Loop lateness**: a loop that sleeps to a 10 ms schedule and polls ``latest()`` each tick;
   lateness = wake-up time - scheduled time (p50 / p99, ms). Without a predictor, then with one
   capped at ``--rate`` Hz with ONNX Runtime's spinning off and on. Target: p99 < 1.5 ms capped,
   spinning off.
2. **A busy neighbour**: ``--workers`` threads hashing 1 MiB buffers (hashlib releases the GIL: a
   stand-in for the robot's planning / SLAM threads); its throughput with the predictor running
   (uncapped, then capped) relative to alone. Target: >= 0.75 of alone, capped, spinning off.

The predictor runs with the control-loop defaults (1 intra-op thread: ``--threads``; perception
threads at the caller's priority) unless a row says otherwise.

The source is a video written here (synthetic shapes scenes, 640x480, 30 fps) replayed at its
recorded pace, as a camera would deliver it. Prints the CPU class and the load average beside the
figures (a shared machine's other load shows in the baseline row).

    python benchmarks/bench_control_loop.py --model exports/yolo/model.onnx --seconds 8
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edgecv.data.synthetic import ShapesDataset
from edgecv.runtimes.cpu import cpu_features
from edgecv.runtimes.robot import BackgroundPredictor

CHUNK = os.urandom(1 << 20)  # 1 MiB hashed per workload step


def write_clip(path: Path, seconds: float, fps: float = 30.0) -> Path:
    """A 640x480 mp4 of synthetic scenes (the demo model's kind of data), ``seconds`` long."""
    scenes = ShapesDataset("val", length=16, imgsz=(480, 640), seed=5)
    images = [np.ascontiguousarray(scenes[i].image) for i in range(len(scenes))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for i in range(int(seconds * fps)):
        writer.write(images[(i // 8) % len(images)])
    writer.release()
    return path


def control_loop(seconds: float, hz: float, poll) -> np.ndarray:
    """Run a fixed-rate loop for ``seconds``; every tick's lateness in ms."""
    period = 1.0 / hz
    late = []
    tick = time.perf_counter() + period
    end = tick + seconds
    while tick < end:
        time.sleep(max(0.0, tick - time.perf_counter()))
        late.append(time.perf_counter() - tick)
        poll()
        tick += period
    return np.array(late) * 1e3


class Workload:
    """``workers`` threads hashing 1 MiB chunks until stopped; ``done`` counts chunks."""

    def __init__(self, workers: int) -> None:
        self.done = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _run(self) -> None:
        while not self._stop.is_set():
            hashlib.sha256(CHUNK).digest()
            with self._lock:
                self.done += 1

    def __enter__(self) -> Workload:
        self.started = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.elapsed = time.perf_counter() - self.started
        for thread in self._threads:
            thread.join()

    @property
    def rate(self) -> float:
        return self.done / self.elapsed


CHILD = """
import sys, time
from edgecv.runtimes.robot import BackgroundPredictor
model, clip, rate, threads, seconds = sys.argv[1:6]
with BackgroundPredictor(model, clip, rate=float(rate), threads=int(threads)) as bg:
    while bg.latest() is None:
        time.sleep(0.05)
    print("READY", flush=True)
    time.sleep(float(seconds))
"""


def run_beside(model: Path, clip: Path, args: argparse.Namespace, rate: float) -> dict:
    """The same predictor in a child process (no GIL shared with the loop): the loop alone in this one."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(model), str(clip), str(rate), str(args.threads),
                              str(args.seconds + 5)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().startswith("READY")
        time.sleep(1.0)
        late = control_loop(args.seconds, args.hz, lambda: None)
    finally:
        child.kill()
        child.wait(10)
    return {"p50": float(np.percentile(late, 50)), "p99": float(np.percentile(late, 99)), "load": os.getloadavg()[0]}


def run(model: Path | None, clip: Path, args: argparse.Namespace, rate: float | None, spinning: bool,
        workers: int, nice: int = 0) -> dict:
    """One configuration: optional predictor and workload beside the measured control loop."""
    row: dict = {}
    bg = None
    if model is not None:
        bg = BackgroundPredictor(model, clip, rate=rate, threads=args.threads, spinning=spinning, nice=nice)
        deadline = time.monotonic() + 30
        while bg.latest() is None and time.monotonic() < deadline:  # model loaded, first result out
            time.sleep(0.05)
        time.sleep(1.0)
    poll = (lambda: bg.latest(max_age=0.5)) if bg is not None else (lambda: None)
    try:
        if workers:
            with Workload(workers) as work:
                late = control_loop(args.seconds, args.hz, poll)
            row["work"] = work.rate
        else:
            late = control_loop(args.seconds, args.hz, poll)
        if bg is not None:
            health = bg.health()
            row.update(achieved=health.rate, busy=health.busy_ms)
    finally:
        if bg is not None:
            bg.close()
    row.update(p50=float(np.percentile(late, 50)), p99=float(np.percentile(late, 99)),
               load=os.getloadavg()[0])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("exports/yolo/model.onnx"))
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per configuration")
    parser.add_argument("--hz", type=float, default=100.0, help="control loop rate")
    parser.add_argument("--rate", type=float, default=15.0, help="inference rate cap (Hz)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--workers", type=int, default=2, help="busy workload threads")
    args = parser.parse_args()

    print(f"CPU: {cpu_features().summary()} ({os.cpu_count()} logical cores)")
    print(f"model {args.model}, threads {args.threads}, control loop {args.hz:.0f} Hz, "
          f"{args.seconds:.0f} s per row, workload {args.workers} threads of sha256")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cap = f"{args.rate:.0f} Hz"
    configs = [  # (label, model?, rate cap, spinning, workload threads, nice)
        ("loop alone", False, None, False, 0, 0),
        (f"predictor {cap}, spinning off", True, args.rate, False, 0, 0),
        (f"predictor {cap}, spinning on", True, args.rate, True, 0, 0),
        (f"predictor {cap}, spinning off, nice 5", True, args.rate, False, 0, 5),
        ("workload alone", False, None, False, args.workers, 0),
        ("workload + predictor uncapped, spinning off", True, None, False, args.workers, 0),
        (f"workload + predictor {cap}, spinning off", True, args.rate, False, args.workers, 0),
        (f"workload + predictor {cap}, spinning on", True, args.rate, True, args.workers, 0),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "drive.mp4", seconds=args.seconds + 12)
        rows = []
        for label, use, rate, spin, workers, nice in configs:
            rows.append((label, run(args.model if use else None, clip, args, rate, spin, workers, nice)))
            if len(rows) == 2:  # side by side with the in-process row: the same predictor in a child process
                rows.append((f"predictor {cap}, spinning off, other process",
                             run_beside(args.model, clip, args, args.rate)))
    alone = next(row["work"] for label, row in rows if label == "workload alone")
    print(f"\n{'configuration':<46} {'p50 ms':>7} {'p99 ms':>7} {'infer Hz':>9} {'ms/frame':>9} "
          f"{'workload':>9} {'load':>5}")
    for label, row in rows:
        hz = f"{row['achieved']:.1f}" if "achieved" in row else "-"
        busy = f"{row['busy']:.0f}" if row.get("busy") else "-"
        work = f"{row['work'] / alone:.2f}x" if "work" in row else "-"
        print(f"{label:<46} {row['p50']:>7.2f} {row['p99']:>7.2f} {hz:>9} {busy:>9} {work:>9} {row['load']:>5.1f}")
    print(f"\nworkload alone: {alone:.0f} MiB/s hashed; load average after: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
