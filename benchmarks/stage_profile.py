"""Where the time of one frame goes, stage by stage, in the naive sequential loop.

Each stage is timed on its own, wall clock and process CPU (``time.process_time``: every thread
of the process, so ONNX Runtime's intra-op workers and FFmpeg's decoder threads are counted):
decode (``VideoCapture.read``), letterbox (resize + pad), normalise (HWC uint8 -> CHW float32),
infer (the backend alone), post (detections in frame pixels), draw (``annotate``: a copy of the
frame + boxes), encode (``VideoWriter.write``, mp4v) and jsonl (dump + flush).

What a pipeline on ``cores`` cores can reach (ignoring hand-over costs):

* never faster than its slowest stage (a stage runs in one thread; inference in its own pool);
* never faster than the CPU of all stages divided by the cores.

``bound = max(slowest stage wall, CPU sum / cores)``; the best ratio over the sequential loop is
``wall sum / bound``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

STAGES = ("decode", "letterbox", "normalise", "infer", "post", "draw", "encode", "jsonl")


def profile_stages(artifact: Path, clip: Path, out: Path, threads: int, spinning: bool = False) -> dict[str, Any]:
    """Median wall / CPU ms per stage over the clip; see the module docstring."""
    from edgecv.runtimes import Predictor, annotate
    from edgecv.runtimes.postprocess import to_detections
    from edgecv.runtimes.preprocess import fill_tensor, input_hw, normalisation, resize_for

    out.mkdir(parents=True, exist_ok=True)
    wall: dict[str, list[float]] = {s: [] for s in STAGES}
    cpu: dict[str, list[float]] = {s: [] for s in STAGES}

    def timed(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        result = fn(*args)
        wall[stage].append((time.perf_counter() - w) * 1e3)
        cpu[stage].append((time.process_time() - c) * 1e3)
        return result

    load = os.getloadavg()[0]
    with Predictor(artifact, threads=threads, backend_options={"spinning": spinning}) as predictor, \
            (out / "profile.jsonl").open("w") as jsonl:
        meta, capture, writer = predictor.metadata, cv2.VideoCapture(str(clip)), None
        hw, norm = input_hw(meta), normalisation(meta)

        def write_line(dets: Any) -> None:
            jsonl.write(json.dumps(dets.to_dict()) + "\n")
            jsonl.flush()
        while True:
            ok, frame = timed("decode", capture.read)
            if not ok:
                break
            padded, info = timed("letterbox", resize_for, frame, hw, meta)
            tensor = np.empty((1, 3, *hw), np.float32)
            timed("normalise", fill_tensor, padded, norm, tensor[0])
            outputs = timed("infer", predictor.backend.infer, tensor)
            dets = timed("post", to_detections, outputs, [info], predictor.class_names, None)[0]
            image = timed("draw", annotate, frame, dets)
            if writer is None:
                writer = cv2.VideoWriter(str(out / "profile.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0,
                                         (frame.shape[1], frame.shape[0]))
            timed("encode", writer.write, image)
            timed("jsonl", write_line, dets)
        writer.release()
        capture.release()
    return {"wall": {s: statistics.median(v) for s, v in wall.items()},
            "cpu": {s: statistics.median(v) for s, v in cpu.items()}, "threads": threads,
            "cores": len(os.sched_getaffinity(0)), "load": load}


def print_profile(name: str, got: dict[str, Any]) -> None:
    """The per-stage table and the bounds it implies."""
    wall, cpu, cores = got["wall"], got["cpu"], got["cores"]
    print(f"{name}: per-stage medians, sequential, {got['threads']} ORT threads (load average {got['load']:.2f})")
    for stage in STAGES:
        print(f"    {stage:10s} wall {wall[stage]:6.2f} ms   cpu {cpu[stage]:6.2f} ms")
    total_wall, total_cpu = sum(wall.values()), sum(cpu.values())
    slowest = max(STAGES, key=lambda s: wall[s])
    bound = max(wall[slowest], total_cpu / cores)
    print(f"    sum: wall {total_wall:.2f} ms, cpu {total_cpu:.2f} ms; slowest stage {slowest} {wall[slowest]:.2f} ms; "
          f"cpu / {cores} cores {total_cpu / cores:.2f} ms -> pipeline bound {bound:.2f} ms/frame, "
          f"best ratio {total_wall / bound:.2f}x", flush=True)
