"""Pipelined stream vs a naive sequential loop, side by side in one run.

Two cases, each with a clip and an export made by this script in a temporary folder:

* ``1080p``: a 1920x1080 clip of moving synthetic shapes (150 frames), the 320 demo model;
  target: pipelined >= 1.4x the frames/s of the naive loop.
* ``480p``: a 640x480 clip, the demo model exported at 640 (inference dominates);
  target: no regression (>= 0.97x).

Both loops do the same work: read + decode, predict, draw, write the annotated mp4 and a
flushed jsonl line per frame, with the same ONNX Runtime threads. The pipelined one is
:func:`edgecv.runtimes.predict_source` (the stream pipeline); the naive one is written out
below. Rounds rotate the loops so all see the same machine load; the ratio is the median over
rounds of each round's loop / naive, and the load average is printed beside every figure.

Same threads: every loop gets ``--threads`` ONNX Runtime intra-op threads (OpenVINO:
``INFERENCE_NUM_THREADS``), FFmpeg's default decoder threads, one encoder, OpenCV's default
pool; the pipelined loops add their Python stage threads (reader, capture, infer, sinks), which
only hand work over. ``naive_nospin`` is the naive loop with ONNX Runtime's spinning off, the
same session options as ``pipelined`` (what ``edgecv predict`` uses for streams).

``--profile`` first times each stage of the naive loop on its own (wall and process CPU:
decode, letterbox, normalise, infer, post, draw, encode, jsonl) and prints the bounds a
pipeline can reach on this machine: the slowest stage, and the CPU sum over the cores.

``--loops ov_sync,ov_async`` compares OpenVINO's synchronous infer with asynchronous requests
kept in flight by the pipeline (``inflight=2``, ``requests=2``).

    python benchmarks/bench_stream.py --threads 2 --rounds 3 --profile
    python benchmarks/bench_stream.py --loops ov_sync,ov_async --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def write_clip(path: Path, size: tuple[int, int], frames: int) -> Path:
    """``frames`` frames of ``size`` (w, h): synthetic shape scenes, scaled up and drifting."""
    from edgecv.data.synthetic import draw_scene

    width, height = size
    rng = np.random.default_rng(0)
    base = cv2.resize(draw_scene(rng, (height // 2, width // 2)).image, (width, height))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    for i in range(frames):
        writer.write(np.roll(base, (i * 3, i * 7), axis=(0, 1)))  # everything moves, every frame differs
    writer.release()
    return path


def export(out: Path, imgsz: int) -> Path:
    from rich.console import Console

    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    return Path(export_model("yolo", out=out, opts=ExportOptions(imgsz=imgsz), console=Console(quiet=True),
                             warn_stale=False).path)


def naive(artifact: Path, clip: Path, out: Path, threads: int, spinning: bool = True) -> float:
    """Read, predict, draw, write, one frame after another; returns frames/s."""
    from edgecv.runtimes import Predictor, annotate
    from edgecv.runtimes.streams.sinks.video_writers import open_writer

    out.mkdir(parents=True, exist_ok=True)
    with Predictor(artifact, threads=threads, backend_options={"spinning": spinning}) as predictor:
        capture = cv2.VideoCapture(str(clip))
        fps = capture.get(cv2.CAP_PROP_FPS)
        writer, frames = None, 0
        with (out / "predictions.jsonl").open("w") as jsonl:
            start = time.perf_counter()
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                dets = predictor(frame)
                image = annotate(frame, dets)
                if writer is None:  # the encoder VideoSink uses (fragmented MP4): the same work
                    writer = open_writer(out / "clip.mp4", fps, (frame.shape[1], frame.shape[0]))
                writer.write(image)
                jsonl.write(json.dumps({"name": f"clip#{frames}", **dets.to_dict()}) + "\n")
                jsonl.flush()
                frames += 1
            writer.close()
            elapsed = time.perf_counter() - start
        capture.release()
    return frames / elapsed


def pipelined(artifact: Path, clip: Path, out: Path, threads: int, spinning: bool = True) -> float:
    """The same work through :func:`predict_source` (the stream pipeline); returns frames/s."""
    from edgecv.runtimes import Predictor, predict_source

    with Predictor(artifact, threads=threads, backend_options={"spinning": spinning}) as predictor:
        summary = predict_source(predictor, clip, out, show_progress=False)
    return summary.fps


def pipelined_sink_nice(artifact: Path, clip: Path, out: Path, threads: int, nice: int) -> float:
    """``pipelined_nospin`` with the sink thread's nice step set to ``nice`` (0: same priority as inference)."""
    from edgecv.runtimes.streams import pipeline

    saved, pipeline.SINK_NICE = pipeline.SINK_NICE, nice
    try:
        return pipelined(artifact, clip, out, threads, spinning=False)
    finally:
        pipeline.SINK_NICE = saved


def openvino(artifact: Path, clip: Path, out: Path, threads: int, inflight: int) -> float:
    """The pipeline on OpenVINO with ``inflight`` asynchronous requests (1: synchronous infer)."""
    from edgecv.runtimes import Predictor, predict_source

    with Predictor(artifact, backend="openvino", threads=threads, backend_options={"requests": inflight}) as predictor:
        summary = predict_source(predictor, clip, out, show_progress=False, inflight=inflight)
    return summary.fps


#: the loops compared, each round in rotated order: name -> frames/s of one run
LOOPS = {
    "naive": naive,
    "naive_nospin": lambda artifact, clip, out, threads: naive(artifact, clip, out, threads, spinning=False),
    "pipelined": pipelined,
    # ONNX Runtime's idle threads sleep instead of spinning: the decode / draw / encode threads get the cores
    "pipelined_nospin": lambda artifact, clip, out, threads: pipelined(artifact, clip, out, threads, spinning=False),
    # the sink thread at inference's priority: what streams/priority.py changes
    "pipelined_nospin_nice0": lambda artifact, clip, out, threads: pipelined_sink_nice(artifact, clip, out, threads, 0),
    "ov_sync": lambda artifact, clip, out, threads: openvino(artifact, clip, out, threads, 1),
    "ov_async": lambda artifact, clip, out, threads: openvino(artifact, clip, out, threads, 2),
}
DEFAULT_LOOPS = "naive,naive_nospin,pipelined,pipelined_nospin"
#: the like-for-like pairs (same session options): loop -> the loop it is compared with
PAIRS = {"pipelined": "naive", "pipelined_nospin": "naive_nospin", "naive_nospin": "naive", "ov_async": "ov_sync",
         "pipelined_nospin_nice0": "naive_nospin"}


def run_case(name: str, artifact: Path, clip: Path, work: Path, threads: int, rounds: int, target: float,
             names: list[str]) -> dict:
    figures: dict[str, list[float]] = {loop: [] for loop in names}
    loads: dict[str, list[float]] = {loop: [] for loop in names}
    for i in range(rounds):
        for which in names[i % len(names):] + names[:i % len(names)]:  # rotate: each loop sees each slot
            loads[which].append(os.getloadavg()[0])
            figures[which].append(LOOPS[which](artifact, clip, work / f"{name}_{which}_{i}", threads))
            print(f"  round {i} {name} {which:16s} {figures[which][-1]:6.1f} frames/s "
                  f"(load average {loads[which][-1]:.2f})", flush=True)
    # the load of a shared machine drifts between rounds: compare each round's pair, then take the median
    bases = {which: PAIRS[which] if PAIRS.get(which) in figures else names[0] for which in names[1:]}
    ratios = {which: statistics.median(b / a for a, b in zip(figures[base], figures[which]))
              for which, base in bases.items()}
    line = f"{name:6s} {names[0]} {statistics.median(figures[names[0]]):6.1f} frames/s"
    for which, ratio in ratios.items():
        line += (f" | {which} {statistics.median(figures[which]):6.1f} frames/s {ratio:.2f}x of {bases[which]} "
                 f"({'met' if ratio >= target else 'NOT met'} >= {target}x)")
    print(line + f" | load average {min(min(v) for v in loads.values()):.2f}-{max(max(v) for v in loads.values()):.2f}",
          flush=True)
    return {**{f"{k}_fps": v for k, v in figures.items()}, "loads": loads, "ratios": ratios, "target": target}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (both loops)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--cases", default="1080p,480p")
    parser.add_argument("--loops", default=DEFAULT_LOOPS, help=f"the first is the base; any of {list(LOOPS)}")
    parser.add_argument("--profile", action="store_true", help="per-stage times of the sequential loop first")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    names = args.loops.split(",")
    cases = {"1080p": ((1920, 1080), 320, 1.4), "480p": ((640, 480), 640, 0.97)}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.cases.split(","):
            size, imgsz, target = cases[name]
            clip = write_clip(work / f"{name}.mp4", size, args.frames)
            artifact = export(work / f"m{imgsz}" / "model.onnx", imgsz)
            if args.profile:
                from stage_profile import print_profile, profile_stages

                print_profile(name, profile_stages(artifact, clip, work / f"{name}_profile", args.threads))
            ov_target = 1.0 if names[0].startswith("ov_") else target  # async must at least pay for itself
            results[name] = run_case(name, artifact, clip, work, args.threads, args.rounds, ov_target, names)
    if args.json:
        from edgecv.fileio import write_json

        write_json(args.json, results, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
