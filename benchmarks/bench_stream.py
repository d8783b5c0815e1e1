"""Pipelined stream vs a naive sequential loop, side by side in one run.

Two cases, each with a clip and an export made by this script in a temporary folder:

* ``1080p``: a 1920x1080 clip of moving synthetic shapes (150 frames), the 320 demo model;
  target: pipelined >= 1.4x the frames/s of the naive loop.
* ``480p``: a 640x480 clip, the demo model exported at 640 (inference dominates);
  target: no regression (>= 0.97x).

Both loops do the same work: read + decode, predict, draw, write the annotated mp4 and a
flushed jsonl line per frame, with the same ONNX Runtime threads. The pipelined one is
:func:`edgecv.runtimes.predict_source` (the stream pipeline); the naive one is written out
below. Rounds alternate naive / pipelined so both see the same machine load; the ratio is the
median over rounds of each round's pipelined / naive.

    python benchmarks/bench_stream.py --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import json
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


def naive(artifact: Path, clip: Path, out: Path, threads: int) -> float:
    """Read, predict, draw, write, one frame after another; returns frames/s."""
    from edgecv.runtimes import Predictor, annotate
    from edgecv.runtimes.streams.sinks.video_writers import open_writer

    out.mkdir(parents=True, exist_ok=True)
    with Predictor(artifact, threads=threads) as predictor:
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


#: the loops compared, each round in rotated order: name -> frames/s of one run
LOOPS = {
    "naive": naive,
    "pipelined": pipelined,
    # ONNX Runtime's idle threads sleep instead of spinning: the decode / draw / encode threads get the cores
    "pipelined_nospin": lambda artifact, clip, out, threads: pipelined(artifact, clip, out, threads, spinning=False),
}


def run_case(name: str, artifact: Path, clip: Path, work: Path, threads: int, rounds: int, target: float) -> dict:
    figures: dict[str, list[float]] = {name: [] for name in LOOPS}
    names = list(LOOPS)
    for i in range(rounds):
        for which in names[i % len(names):] + names[:i % len(names)]:  # rotate: each loop sees each slot
            figures[which].append(LOOPS[which](artifact, clip, work / f"{name}_{which}_{i}", threads))
    # the load of a shared machine drifts between rounds: compare each round's pair, then take the median
    ratios = {which: statistics.median(b / a for a, b in zip(figures["naive"], figures[which]))
              for which in names[1:]}
    line = f"{name:6s} naive {statistics.median(figures['naive']):6.1f} frames/s"
    for which, ratio in ratios.items():
        line += (f"   {which} {statistics.median(figures[which]):6.1f} frames/s {ratio:.2f}x "
                 f"({'met' if ratio >= target else 'NOT met'} >= {target}x)")
    print(line, flush=True)
    ratio = ratios["pipelined"]
    return {**{f"{k}_fps": v for k, v in figures.items()}, "ratio": ratio, "ratios": ratios, "target": target}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (both loops)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--cases", default="1080p,480p")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    cases = {"1080p": ((1920, 1080), 320, 1.4), "480p": ((640, 480), 640, 0.97)}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.cases.split(","):
            size, imgsz, target = cases[name]
            clip = write_clip(work / f"{name}.mp4", size, args.frames)
            artifact = export(work / f"m{imgsz}" / "model.onnx", imgsz)
            results[name] = run_case(name, artifact, clip, work, args.threads, args.rounds, target)
    if args.json:
        from edgecv.fileio import write_json

        write_json(args.json, results, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
