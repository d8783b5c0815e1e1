"""edgecv vs Ultralytics on the same 1080p clip, same architecture, same precision, same threads.

The model is Ultralytics' YOLOv8n built from its own yaml (``YOLO("yolov8n.yaml")``: random
weights, nothing downloaded), saved as an Ultralytics checkpoint, then exported twice at 640:

* edgecv: ``export_model("yolo", weights=ckpt, trust=True)`` -> ONNX fp32 with NMS in the graph,
  run by :func:`edgecv.runtimes.predict_source` (the stream pipeline) with ONNX Runtime, saving
  the annotated mp4 and ``predictions.jsonl``;
* Ultralytics: ``model.export(format="onnx")`` (fp32), run by its own
  ``YOLO(onnx).predict(source=clip, stream=True, save=True)`` (annotated video, MJPG ``.avi``).

Same threads: each side runs in its own process with ``OMP_NUM_THREADS`` / ``torch`` threads /
OpenCV threads = ``--threads`` and ONNX Runtime's intra-op pool at ``--threads`` (edgecv:
``threads=``; Ultralytics creates its session with default options, which on this machine
resolve to one intra-op thread per physical core: ``--threads`` defaults to that count).
Same boxes: random weights score far below 0.25, so both sides run at ``--conf`` with the same
``--iou`` and ``--max-det``; the box counts of both sides are printed.

Nothing downloads: every worker runs with ``YOLO_OFFLINE=1``, a private ``YOLO_CONFIG_DIR``
holding ``settings.json`` with ``sync`` off and an ``Arial.ttf`` copied from matplotlib's
DejaVu Sans (Ultralytics fetches that font at plot time otherwise), and an audit hook counting
every ``socket.connect`` / ``getaddrinfo`` to a non-loopback host. With ``--no-network`` (root,
``unshare`` available) each worker also runs in an empty network namespace.

Rounds alternate the order of the sides; the ratio is the median over rounds of edgecv / Ultralytics.

    python benchmarks/bench_ultralytics_stream.py --rounds 3 --no-network
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ultralytics_offline import NetworkAudit, offline_config  # noqa: E402  (shared with bench_ultralytics_race)


def thread_env(threads: int) -> dict[str, str]:
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


# -- workers (each in its own process) -----------------------------------------------------------

def work_prepare(folder: Path, imgsz: int, conf: float, iou: float, max_det: int) -> dict:
    """Build YOLOv8n from its yaml, save the checkpoint, export it through edgecv and Ultralytics."""
    from rich.console import Console
    from ultralytics import YOLO

    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    model = YOLO("yolov8n.yaml")
    ckpt = folder / "yolov8n_random.pt"
    model.save(str(ckpt))
    opts = ExportOptions(imgsz=imgsz, conf=conf, iou=iou, max_det=max_det)
    edge = export_model("yolo", weights=ckpt, out=folder / "edgecv" / "model.onnx", opts=opts, trust=True,
                        console=Console(quiet=True), warn_stale=False).path
    ultra = YOLO(str(ckpt)).export(format="onnx", imgsz=imgsz, dynamic=False, simplify=False, half=False)
    return {"edgecv": str(edge), "ultralytics": str(ultra)}


def work_edgecv(model: Path, clip: Path, out: Path, threads: int, spinning: bool) -> dict:
    import cv2

    from edgecv.runtimes import Predictor, predict_source

    cv2.setNumThreads(threads)
    start = time.perf_counter()
    with Predictor(model, threads=threads, backend_options={"spinning": spinning}) as predictor:
        summary = predict_source(predictor, clip, out, show_progress=False)
    return {"frames": summary.frames, "seconds": time.perf_counter() - start, "boxes": summary.detections}


def work_ultralytics(model: Path, clip: Path, out: Path, threads: int, imgsz: int, conf: float, iou: float,
                     max_det: int) -> dict:
    import cv2
    import torch
    from ultralytics import YOLO

    cv2.setNumThreads(threads)
    torch.set_num_threads(threads)
    frames = boxes = 0
    start = time.perf_counter()
    yolo = YOLO(str(model), task="detect")
    for result in yolo.predict(source=str(clip), stream=True, save=True, imgsz=imgsz, conf=conf, iou=iou,
                               max_det=max_det, verbose=False, project=str(out), name="predict", device="cpu"):
        frames += 1
        boxes += len(result.boxes)
    return {"frames": frames, "seconds": time.perf_counter() - start, "boxes": boxes}


def worker(argv: list[str]) -> int:
    """``--worker KIND JSON-ARGS``: run one side, print one JSON line (figures + network attempts)."""
    audit = NetworkAudit.install()
    audit.recording = True  # for the whole life of this worker process
    attempts = audit.attempts
    kind, args = argv[0], json.loads(argv[1])
    paths = {k: Path(v) for k, v in args.items() if k in ("folder", "model", "clip", "out")}
    args.update(paths)
    work = {"prepare": work_prepare, "edgecv": work_edgecv, "ultralytics": work_ultralytics}[kind]
    got = work(**args)
    print("RESULT " + json.dumps({**got, "network_attempts": attempts}), flush=True)
    return 0


# -- orchestration -------------------------------------------------------------------------------

def run_worker(kind: str, args: dict, env: dict[str, str], no_network: bool) -> dict:
    command = [sys.executable, __file__, "--worker", kind, json.dumps({k: str(v) if isinstance(v, Path) else v
                                                                       for k, v in args.items()})]
    if no_network:
        command = ["unshare", "--net", "--"] + command
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{kind} worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--conf", type=float, default=0.01, help="both sides (random weights score low)")
    parser.add_argument("--iou", type=float, default=0.45)
    parser.add_argument("--max-det", type=int, default=100)
    parser.add_argument("--no-network", action="store_true", help="run every worker in an empty network namespace")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from bench_stream import write_clip

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**offline_config(work / "config"), **thread_env(args.threads)}
        clip = write_clip(work / "clip1080.mp4", (1920, 1080), args.frames)
        models = run_worker("prepare", {"folder": work, "imgsz": args.imgsz, "conf": args.conf, "iou": args.iou,
                                        "max_det": args.max_det}, env, args.no_network)
        attempts = list(models.pop("network_attempts"))
        sides = {
            "edgecv": ("edgecv", {"model": models["edgecv"], "threads": args.threads, "spinning": False}),
            "edgecv_spin": ("edgecv", {"model": models["edgecv"], "threads": args.threads, "spinning": True}),
            "ultralytics": ("ultralytics", {"model": models["ultralytics"], "threads": args.threads,
                                            "imgsz": args.imgsz, "conf": args.conf, "iou": args.iou,
                                            "max_det": args.max_det}),
        }
        figures: dict[str, list[dict]] = {name: [] for name in sides}
        names = list(sides)
        for i in range(args.rounds):
            for name in names[i % len(names):] + names[:i % len(names)]:
                kind, kwargs = sides[name]
                load = os.getloadavg()[0]
                got = run_worker(kind, {**kwargs, "clip": clip, "out": work / f"{name}_{i}"}, env, args.no_network)
                got.update(fps=got["frames"] / got["seconds"], load=load)
                attempts += got["network_attempts"]
                figures[name].append(got)
                print(f"round {i} {name:12s} {got['fps']:6.2f} frames/s  {got['frames']} frames  "
                      f"{got['boxes']} boxes  (load average {load:.2f})", flush=True)
    ratios = {name: statistics.median(a["fps"] / b["fps"] for a, b in zip(figures[name], figures["ultralytics"]))
              for name in ("edgecv", "edgecv_spin")}
    line = f"ultralytics {statistics.median(f['fps'] for f in figures['ultralytics']):6.2f} frames/s"
    for name, ratio in ratios.items():
        line += (f"   {name} {statistics.median(f['fps'] for f in figures[name]):6.2f} frames/s {ratio:.2f}x "
                 f"({'met' if ratio >= 1.3 else 'NOT met'} >= 1.3x)")
    print(line)
    print("boxes per frame: " + ", ".join(f"{n} {statistics.median(f['boxes'] / f['frames'] for f in figs):.1f}"
                                           for n, figs in figures.items()))
    print(f"non-loopback network attempts: {len(attempts)}{' ' + str(sorted(set(attempts))) if attempts else ''}"
          f"{' (workers in an empty network namespace)' if args.no_network else ''}")
    if args.json:
        from edgecv.fileio import write_json

        write_json(args.json, {"figures": figures, "ratios": ratios, "network_attempts": attempts}, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
