"""A two-stage graph at the camera's aspect vs the square one: the shipped tiny Mask R-CNN, side by side.

    python benchmarks/bench_twostage_rect.py [--model maskrcnn_tiny] [--side 320] [--rect 320x256] [--frame 640x480]
                                             [--max-det 100] [--runs 3] [--iters 10] [--threads 2] [--clock wall]

Exports ``--model`` (default ``maskrcnn_tiny`` with the shipped demo weights, conf 0.25; a torchvision
builder name runs with seeded random weights) twice -- ``--imgsz SIDE`` (square)
and ``--imgsz WxH`` -- and times, interleaved (:mod:`interleave`), on one synthetic scene of the
``--frame`` size (default 640x480, 4:3, which 320x256 holds with little padding):

* **bare**: the ONNX Runtime session on a ready float tensor of the graph's input shape;
* **whole**: :class:`edgecv.runtimes.Predictor` on the BGR frame (letterbox, normalisation,
  inference, boxes mapped back, masks pasted at the frame's size).

It prints per-row milliseconds, the rect / square ratio of each and the CPU class. Both graphs see
the same frame; their detection counts are printed so that a faster graph finding nothing shows.
Then where the time goes (:func:`stage_ms`: ONNX Runtime's profiler, 1 thread, the two sessions
called alternately): why the ratio stays far above the pixel ratio (0.8 for 320x256). Only the
backbone + FPN and the RPN head scale with the pixels; the box stage (RoI Align + box head on
``post_nms_top_n`` proposals) does not (the mask stage runs on the detected rows:
``bench_twostage_shapes.py``).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from interleave import header, interleaved_runs, ratio  # noqa: E402

from edgecv.export.onnx_export import ExportOptions, export_hw, parse_imgsz  # noqa: E402


def _export(model: str, size: int | tuple[int, int], out: Path, max_det: int) -> Path:
    """``model`` exported at ``size`` (side or (width, height)); its fidelity checked."""
    from edgecv.export.api import export_model

    return export_model(model, out=out, opts=ExportOptions(imgsz=size, max_det=max_det),
                        warn_stale=False).path


#: Node-name fragment -> stage (first match wins; TwoStageGraph's module scopes).
STAGES = (("roialign/mask", "mask RoI Align"), ("roialign/box", "box RoI Align"), ("mask_", "mask head"),
          ("/backbone", "backbone + FPN"), ("/head/", "RPN head"), ("box_", "box head"))


def stage_ms(paths: dict[str, Path], folder: Path, calls: int = 10) -> dict[str, dict[str, float]]:
    """``{graph: {stage: ms per call}}``: ONNX Runtime's per-node kernel times (1 thread), the graphs
    called alternately ``calls`` times on random tensors, summed per :data:`STAGES` (else ``other``).
    The profiler's json files are written in ``folder`` (a temporary one: not the working directory)."""
    import onnxruntime as ort

    sessions = {}
    for name, path in paths.items():
        options = ort.SessionOptions()
        options.enable_profiling, options.intra_op_num_threads = True, 1
        options.profile_file_prefix = str(folder / f"ort_profile_{name}")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        item = session.get_inputs()[0]
        sessions[name] = (session, {item.name: np.random.default_rng(0).standard_normal(item.shape).astype(np.float32)})
    for _ in range(calls):
        for session, feed in sessions.values():
            session.run(None, feed)
    out: dict[str, dict[str, float]] = {}
    for name, (session, _) in sessions.items():
        with open(session.end_profiling()) as file:
            events = json.load(file)
        totals: collections.Counter = collections.Counter()
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                stage = next((label for key, label in STAGES if key in event["name"]), "other")
                totals[stage] += event["dur"] / 1e3 / calls
        out[name] = dict(totals)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="maskrcnn_tiny", help="two-stage model name (edgecv export's)")
    parser.add_argument("--side", type=int, default=320, help="square export side")
    parser.add_argument("--rect", default="320x256", help="non-square export WIDTHxHEIGHT")
    parser.add_argument("--frame", default="640x480", help="camera frame WIDTHxHEIGHT the predictor gets")
    parser.add_argument("--max-det", type=int, default=100, help="K: the mask stage runs on all K rows")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: process CPU time (use 1 thread)")
    args = parser.parse_args()
    from edgecv.data.synthetic import ShapesDataset
    from edgecv.runtimes import Predictor

    rect, (frame_w, frame_h) = parse_imgsz(args.rect), parse_imgsz(args.frame)
    frame = ShapesDataset("val", 1, (frame_h, frame_w), seed=5)[0].image
    with tempfile.TemporaryDirectory(prefix="edgecv_rect2stage_") as tmp:
        paths = {"square": _export(args.model, args.side, Path(tmp) / "square.onnx", args.max_det),
                 "rect": _export(args.model, rect, Path(tmp) / "rect.onnx", args.max_det)}
        predictors = {name: Predictor(path, backend="onnxruntime", threads=args.threads)
                      for name, path in paths.items()}
        calls = {}
        for name, predictor in predictors.items():
            tensor = np.random.default_rng(0).standard_normal(predictor.metadata.input_shape).astype(np.float32)
            session, input_name = predictor.backend.session, predictor.metadata.input_name
            calls[f"{name} bare"] = lambda s=session, n=input_name, t=tensor: s.run(None, {n: t})
            calls[f"{name} whole"] = lambda p=predictor: p(frame)
        runs = interleaved_runs(calls, args.runs, args.iters, args.warmup, args.clock)
        found = {name: len(predictor(frame)) for name, predictor in predictors.items()}
        for predictor in predictors.values():
            predictor.close()
        stages = stage_ms(paths, Path(tmp))
    h, w = export_hw(rect)
    print(header(f"{args.model} {w}x{h} vs {args.side}x{args.side}, ONNX Runtime fp32, max_det {args.max_det}, "
                 f"frame {frame_w}x{frame_h}", args.runs, args.iters, args.threads, args.clock))
    for name, values in runs.items():
        print(f"{name:14s} {np.median(values):8.1f} ms  (runs: {', '.join(f'{v:.1f}' for v in values)})")
    for kind in ("bare", "whole"):
        print(f"rect / square, {kind}: {ratio(runs[f'rect {kind}'], runs[f'square {kind}'])}")
    print(f"detections on the frame: square {found['square']}, rect {found['rect']}")
    total = sum(stages["square"].values())
    print("per stage (ONNX Runtime profiler, 1 thread, ms per call; share of the square graph's time):")
    for stage in sorted(stages["square"], key=lambda k: -stages["square"][k]):
        a, b = stages["square"][stage], stages["rect"].get(stage, 0.0)
        print(f"  {stage:16s} square {a:7.1f}  rect {b:7.1f}  rect/square {b / a:.2f}  ({100 * a / total:.0f} %)")


if __name__ == "__main__":
    main()
