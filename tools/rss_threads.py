"""RSS growth of one predictor called once from each of many short-lived threads.

    python tools/rss_threads.py [--model model.onnx] [--backend openvino] [--threads 1000] [--imgsz 320]

Without ``--model`` the demo YOLO is exported at ``--imgsz`` into a temporary folder (needs
torch). A few warm-up calls (main thread and a first wave of threads) come before the first
reading, so the figure is what the threads themselves add. ``--concurrent`` threads run at a
time (each calls the predictor once and ends). RSS is read from ``/proc/self/statm`` (Linux, MiB).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from edgecv.runtimes import Predictor  # noqa: E402
from edgecv.runtimes.benchmark import current_rss_mb as rss_mb  # noqa: E402


def call_from_threads(predictor: Predictor, frame: np.ndarray, count: int, concurrent: int) -> None:
    """Call ``predictor(frame)`` once from each of ``count`` new threads, ``concurrent`` at a time."""
    errors: list[BaseException] = []

    def once() -> None:
        try:
            predictor(frame)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    for first in range(0, count, concurrent):
        wave = [threading.Thread(target=once) for _ in range(min(concurrent, count - first))]
        for thread in wave:
            thread.start()
        for thread in wave:
            thread.join()
    if errors:
        raise errors[0]


def measure(model: Path, backend: str, threads: int, concurrent: int, options: dict) -> dict[str, float]:
    """``{"before_mb", "after_mb", "growth_mb", "seconds"}`` for ``threads`` one-call threads."""
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    with Predictor(model, backend=backend, threads=1, backend_options=options) as predictor:
        predictor(frame)
        call_from_threads(predictor, frame, 2 * concurrent, concurrent)  # warm-up wave
        before, start = rss_mb(), time.perf_counter()
        call_from_threads(predictor, frame, threads, concurrent)
        seconds, after = time.perf_counter() - start, rss_mb()
    return {"before_mb": before, "after_mb": after, "growth_mb": after - before, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="edgecv .onnx (default: export the demo YOLO)")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--threads", type=int, default=1000, help="short-lived threads, one call each")
    parser.add_argument("--concurrent", type=int, default=4, help="threads alive at a time")
    parser.add_argument("--imgsz", type=int, default=320, help="export size of the demo model")
    parser.add_argument("--requests", type=int, default=None, help="openvino infer-request pool size")
    args = parser.parse_args(argv)
    options = {"requests": args.requests} if args.requests is not None else {}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from edgecv.export.api import export_model
            from edgecv.export.onnx_export import ExportOptions

            model = export_model("yolo", out=Path(tmp) / "model.onnx",
                                 opts=ExportOptions(imgsz=args.imgsz, check=False)).path
        figures = measure(model, args.backend, args.threads, args.concurrent, options)
    print(f"{args.backend}: {args.threads} threads ({args.concurrent} at a time), one call each, on {model.name}: "
          f"RSS {figures['before_mb']:.0f} MB -> {figures['after_mb']:.0f} MB "
          f"(+{figures['growth_mb']:.0f} MB) in {figures['seconds']:.1f} s "
          f"[{platform.processor() or platform.machine()}, {os.cpu_count()} cores]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
