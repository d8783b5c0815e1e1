"""Predictor overhead: the whole ``Predictor`` call vs a bare ``InferenceSession.run``, interleaved.

    python benchmarks/bench_predictor.py model.onnx --runs 50 --imgsz 1280x720

On one frame (skimage's astronaut, BGR, resized to ``--imgsz``, default 1280x720) it times,
alternating in one loop so both see the same machine state,

* whole: ``predictor(frame)`` = letterbox + normalise -> infer -> post-process -> Detections;
* bare:  ``session.run`` on the pre-made input tensor (the predictor's own ONNX Runtime
  session when it has one, so thread pools and caches are shared),

and prints both medians and ``overhead = (whole - bare) / whole``. Works on any edgecv
detection artifact. ``--max-overhead 15`` exits 1 when the overhead exceeds 15 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from edgecv.runtimes import Predictor
from edgecv.runtimes.preprocess import preprocess_batch


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)`` (width, height); ``"640"`` -> ``(640, 640)``."""
    parts = text.lower().split("x")
    try:
        width, height = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
    except ValueError:
        width = height = 0
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1280x720, found {text!r}")
    return width, height


def make_frame(size: tuple[int, int]) -> np.ndarray:
    """skimage's astronaut as BGR uint8 at ``size`` (w, h); a smooth synthetic frame without skimage."""
    try:
        from skimage import data

        rgb = data.astronaut()
    except ImportError:
        y, x = np.mgrid[0:512, 0:512]
        rgb = np.stack([x % 256, y % 256, (x + y) % 256], axis=2).astype(np.uint8)
    return cv2.resize(np.ascontiguousarray(rgb[:, :, ::-1]), size, interpolation=cv2.INTER_AREA)


def bare_runner(predictor: Predictor, tensor: np.ndarray):  # type: ignore[no-untyped-def]
    """A zero-argument callable running the artifact's session on ``tensor``, nothing else."""
    session = getattr(predictor.backend, "session", None)
    if session is None:
        import onnxruntime as ort

        session = ort.InferenceSession(str(predictor.path), providers=["CPUExecutionProvider"])
    feed = {predictor.metadata.input_name: tensor}
    return lambda: session.run(None, feed)


def measure(predictor: Predictor, frame: np.ndarray, runs: int, warmup: int) -> dict[str, list[float]]:
    """Interleaved timings in ms: ``whole``, ``bare`` and the predictor's own stage timings."""
    tensor, _ = preprocess_batch([frame], predictor.metadata, predictor.batch_size)
    bare = bare_runner(predictor, tensor)
    for _ in range(warmup):
        predictor(frame)
        bare()
    times: dict[str, list[float]] = {"whole": [], "bare": [], "preprocess": [], "infer": [], "postprocess": []}
    for i in range(runs):
        for which in (("whole", "bare") if i % 2 == 0 else ("bare", "whole")):
            start = time.perf_counter()
            if which == "whole":
                _, timing = predictor.predict_timed([frame])
            else:
                bare()
            times[which].append((time.perf_counter() - start) * 1e3)
        for stage in ("preprocess", "infer", "postprocess"):
            times[stage].append(timing[f"{stage}_ms"])
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path, help="an edgecv detection artifact (.onnx)")
    parser.add_argument("--runs", type=int, default=50, help="timed iterations (each runs whole and bare once)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--imgsz", type=parse_size, default=(1280, 720), help="frame size WxH (default 1280x720)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--max-overhead", type=float, default=None, help="exit 1 above this overhead (%%)")
    args = parser.parse_args(argv)

    frame = make_frame(args.imgsz)
    with Predictor(args.artifact, threads=args.threads) as predictor:
        times = measure(predictor, frame, max(1, args.runs), max(0, args.warmup))
        net_h, net_w = predictor.metadata.letterbox_size if -1 in predictor.metadata.input_shape[2:] \
            else predictor.metadata.input_shape[2:]
    med = {key: statistics.median(values) for key, values in times.items()}
    overhead = (med["whole"] - med["bare"]) / med["whole"] * 100.0
    print(f"artifact  {args.artifact}  frame {args.imgsz[0]}x{args.imgsz[1]} -> input {net_w}x{net_h}, "
          f"{args.runs} runs")
    print(f"whole     {med['whole']:8.2f} ms  (preprocess {med['preprocess']:.2f} | infer {med['infer']:.2f} | "
          f"postprocess {med['postprocess']:.2f})")
    print(f"bare      {med['bare']:8.2f} ms  (InferenceSession.run on the pre-made tensor)")
    print(f"overhead  {overhead:8.1f} %   ((whole - bare) / whole)")
    if args.max_overhead is not None and overhead > args.max_overhead:
        print(f"FAIL: overhead {overhead:.1f} % > {args.max_overhead} %")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
