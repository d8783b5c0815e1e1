"""The fair race: Ultralytics YOLOv8n through edgecv vs through Ultralytics, at equal precision, same frame and threads.

    nice -n 19 python benchmarks/bench_ultralytics_race.py --out /tmp/race --runs 5 --iters 10

The model is YOLOv8n built from Ultralytics' ``yolov8n.yaml`` (random weights: nothing downloads),
saved as a checkpoint, then exported at 640 (static, square) by both sides:

* **edgecv**: ``export_model("yolo", weights=ckpt, trust=True)`` -> ONNX fp32 with NMS in the graph;
  int8 by edgecv's calibration (``quantize(..., target="openvino")`` and ``target="onnxruntime"``);
  run by edgecv's ``Predictor`` (whole call: letterbox, normalise, infer, post-process) on ONNX
  Runtime fp32 / int8 and on OpenVINO f32 / int8 / bf16 (``backend_options={"precision": ...}``);
  the same again exported with ``input="uint8"`` (``edgecv export --input uint8``: the graph takes the
  letterboxed uint8 BGR frame and normalises it itself), paired with Ultralytics at equal precision
  as rows of their own. edgecv's artifacts are re-made by every run (the code under test);
  Ultralytics' exports are reused from ``--out``.
* **Ultralytics**: ``model.export(format="onnx")``, ``format="openvino"`` (fp32 IR) and
  ``format="openvino", int8=True, data=<data.yaml>`` (NNCF post-training quantization), run by its own
  ``YOLO(export).predict(frame)``; the OpenVINO IR runs at f32, and at bf16 where the CPU has it.

Both int8 sides calibrate on the same 64 images: edgecv's synthetic set written in YOLO format
(:mod:`yolo_dataset`), which Ultralytics reads through ``data=`` and edgecv through
``quantize(data=<images/val>)``. Same threads: ``--threads`` for edgecv's predictors and for
Ultralytics' runtimes (re-opened with that count by :func:`ultralytics_offline.pin_ultralytics_runtime`,
which also sets the OpenVINO precision hint; torch threads too). bf16 rows only where
``cpu_features()`` lists AVX512-BF16 or AMX.

Timing (:mod:`interleave`): ``--runs`` interleaved runs (every row once per run, as a block of
``--warmup`` + ``--iters`` calls); a row's figure is the median of its per-run medians, a ratio the
median of per-run ratios with their min-max (``--clock cpu``: process CPU time instead of wall
time, for a machine shared with other jobs; with ``--threads 1``). "bare" is the ONNX Runtime fp32 session of edgecv's
fp32 graph on a ready float tensor. Nothing downloads: a private Ultralytics config dir with local
fonts, ``YOLO_OFFLINE=1``, and an audit hook counting every non-loopback connect / lookup and every
pip subprocess (printed at the end; must be 0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # helpers beside this file; edgecv from the checkout

from interleave import Ratio, header, has_bf16, interleaved_runs, ratio  # noqa: E402
from ultralytics_offline import NetworkAudit, offline_config, pin_ultralytics_runtime  # noqa: E402

PREDICT = dict(imgsz=640, conf=0.25, iou=0.7, max_det=300, device="cpu", verbose=False)
CALIB_IMAGES = 64


def frame_640() -> np.ndarray:
    """The race's frame: one synthetic 640x480 BGR scene (uint8 [480, 640, 3])."""
    from edgecv.data.synthetic import ShapesDataset

    return np.ascontiguousarray(ShapesDataset("val", length=1, imgsz=(480, 640), seed=5)[0].image)


def prepare(folder: Path) -> dict[str, Path]:
    """Checkpoint, dataset and every export of both sides under ``folder`` (reused when present)."""
    from rich.console import Console
    from ultralytics import YOLO

    from edgecv.calibration import quantize
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions
    from yolo_dataset import write_yolo_dataset

    folder.mkdir(parents=True, exist_ok=True)
    data_yaml = folder / "shapes_yolo" / "data.yaml"
    if not data_yaml.is_file():
        write_yolo_dataset(data_yaml.parent, train=4, val=CALIB_IMAGES, imgsz=(480, 640), seed=0)
    ckpt = folder / "ultra" / "yolov8n.pt"  # Ultralytics writes its exports beside the checkpoint
    if not ckpt.is_file():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        YOLO("yolov8n.yaml").save(str(ckpt))
    paths = {"data": data_yaml}
    edgecv = folder / "edgecv"
    if edgecv.exists():
        shutil.rmtree(edgecv)  # edgecv's side is always made by the code under test (Ultralytics' is reused)
    for key, kind in (("edgecv_fp32", "float"), ("edgecv_u8_fp32", "uint8")):
        paths[key] = edgecv / kind / "model.onnx"
        export_model("yolo", weights=ckpt, out=paths[key], trust=True, console=Console(quiet=True),
                     class_names=[str(i) for i in range(80)], warn_stale=False,
                     opts=ExportOptions(imgsz=640, conf=PREDICT["conf"], iou=PREDICT["iou"],
                                        max_det=PREDICT["max_det"], input=kind))
    for fp32, target in (("edgecv_fp32", "openvino"), ("edgecv_fp32", "onnxruntime"), ("edgecv_u8_fp32", "openvino")):
        path = paths[f"{fp32.removesuffix('fp32')}int8_{target}"] = paths[fp32].with_name(f"model_int8_{target}.onnx")
        quantize(paths[fp32], path, data=data_yaml.parent / "images" / "val", samples=CALIB_IMAGES,
                 target=target, cache=paths[fp32].with_name("calib.json"), console=Console(quiet=True))
    exports = {"ultra_onnx": ("yolov8n.onnx", dict(format="onnx", simplify=True)),
               "ultra_openvino": ("yolov8n_openvino_model", dict(format="openvino")),
               "ultra_openvino_int8": ("yolov8n_int8_openvino_model",
                                       dict(format="openvino", int8=True, data=str(data_yaml)))}
    for key, (name, kwargs) in exports.items():
        paths[key] = ckpt.parent / name
        if not paths[key].exists():
            YOLO(str(ckpt)).export(imgsz=640, dynamic=False, **kwargs)
    return paths


class Row:
    """One timed path: ``call()`` runs it on the frame; ``side`` ``"edgecv"`` / ``"ultralytics"`` / ``"bare"``;
    ``pair``: the equal-precision key (``"fp32 onnxruntime"``, ``"int8 openvino"``, ...) or None."""

    def __init__(self, label: str, side: str, pair: str | None, call: Callable[[], Any], runs_at: str,
                 count: Callable[[], int] | None = None, close: Callable[[], None] | None = None) -> None:
        self.label, self.side, self.pair, self.call, self.runs_at = label, side, pair, call, runs_at
        self.count, self.close = count, close


def edgecv_rows(paths: dict[str, Path], frame: np.ndarray, threads: int, bf16: bool) -> list[Row]:
    from edgecv.runtimes import Predictor

    specs = [("edgecv onnxruntime fp32", "fp32 onnxruntime", "edgecv_fp32", "onnxruntime", {}),
             ("edgecv openvino f32", "fp32 openvino", "edgecv_fp32", "openvino", {"precision": "f32"}),
             ("edgecv onnxruntime int8 (ort target)", None, "edgecv_int8_onnxruntime", "onnxruntime", {}),
             ("edgecv openvino int8 (openvino target)", "int8 openvino", "edgecv_int8_openvino", "openvino", {}),
             ("edgecv onnxruntime fp32, uint8 input", "fp32 onnxruntime", "edgecv_u8_fp32", "onnxruntime", {}),
             ("edgecv openvino f32, uint8 input", "fp32 openvino", "edgecv_u8_fp32", "openvino", {"precision": "f32"}),
             ("edgecv openvino int8, uint8 input", "int8 openvino", "edgecv_u8_int8_openvino", "openvino", {})]
    if bf16:
        specs += [("edgecv openvino bf16", "bf16 openvino", "edgecv_fp32", "openvino", {"precision": "bf16"}),
                  ("edgecv openvino bf16, uint8 input", "bf16 openvino", "edgecv_u8_fp32", "openvino",
                   {"precision": "bf16"})]
    rows = []
    for label, pair, key, backend, options in specs:
        predictor = Predictor(paths[key], backend=backend, threads=threads, backend_options=options)
        hint = getattr(predictor.backend, "inference_precision", "")
        runs_at = f"{backend} {predictor.metadata.precision}" + (f" ({hint} hint)" if hint else "")
        rows.append(Row(label, "edgecv", pair, lambda p=predictor: p(frame), f"{runs_at}, {threads} thr",
                        lambda p=predictor: len(p(frame)), predictor.close))
    return rows


def ultralytics_rows(paths: dict[str, Path], frame: np.ndarray, threads: int, bf16: bool) -> list[Row]:
    from ultralytics import YOLO

    specs = [("ultralytics onnx (onnxruntime) fp32", "fp32 onnxruntime", "ultra_onnx", None),
             ("ultralytics openvino f32", "fp32 openvino", "ultra_openvino", "f32"),
             ("ultralytics openvino int8 (NNCF)", "int8 openvino", "ultra_openvino_int8", None)]
    if bf16:
        specs.append(("ultralytics openvino bf16", "bf16 openvino", "ultra_openvino", "bf16"))
    rows = []
    for label, pair, key, precision in specs:
        yolo = YOLO(str(paths[key]), task="detect")
        yolo.predict(frame, **PREDICT)  # creates Ultralytics' runtime, which pinning re-opens
        got = pin_ultralytics_runtime(yolo, threads, precision)
        graph = "int8" if "int8" in key else "fp32"
        runs_at = f"{got['runtime']} {graph}" + (f" ({got['precision']} hint)" if got["runtime"] == "openvino" else "")
        rows.append(Row(label, "ultralytics", pair, lambda y=yolo: y.predict(frame, **PREDICT),
                        f"{runs_at}, {got['threads']} thr",
                        lambda y=yolo: len(y.predict(frame, **PREDICT)[0].boxes)))
    return rows


def bare_row(fp32: Path, frame: np.ndarray, threads: int) -> Row:
    """The ONNX Runtime fp32 session of edgecv's fp32 graph on a ready float tensor (all graph optimisations)."""
    import onnxruntime as ort

    from edgecv.runtimes import Predictor
    from edgecv.runtimes.preprocess import preprocess_batch

    with Predictor(fp32, backend="onnxruntime", threads=threads) as predictor:
        tensor, _ = preprocess_batch([frame], predictor.metadata, 1)
        name = predictor.backend.input_names[0]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(fp32), sess_options=options, providers=["CPUExecutionProvider"])
    return Row("BARE ort fp32 session (edgecv graph)", "bare", None, lambda: session.run(None, {name: tensor}),
               f"onnxruntime fp32, {threads} thr")


def best(rows: list[Row], side: str, runs: dict[str, list[float]]) -> Row:
    return min((row for row in rows if row.side == side), key=lambda row: statistics.median(runs[row.label]))


def report(rows: list[Row], runs: dict[str, list[float]], n_runs: int, iters: int, threads: int,
           clock: str = "wall") -> dict:
    """Print the race table and the pairs; return them as plain data (for ``--json``)."""
    bare = runs[next(row.label for row in rows if row.side == "bare")]
    print(header("Ultralytics YOLOv8n (yaml, random weights), static 640 exports, frame 640x480", n_runs, iters,
                 threads, clock))
    print(f"{'path':42s} {'runs at':36s} {'ms':>8s}  {'x bare [min-max]':22s} boxes")
    table = {}
    for row in rows:
        ms, vs_bare = statistics.median(runs[row.label]), ratio(runs[row.label], bare)
        boxes = "" if row.count is None else str(row.count())
        table[row.label] = {"ms": ms, "runs_ms": runs[row.label], "x_bare": vs_bare.__dict__, "runs_at": row.runs_at}
        print(f"{row.label:42s} {row.runs_at:36s} {ms:8.2f}  {str(vs_bare):22s} {boxes}")
    pairs: dict[str, Ratio] = {}  # every edgecv row against Ultralytics' row of its precision and runtime
    theirs_at = {row.pair: row for row in rows if row.side == "ultralytics" and row.pair}
    for row in rows:
        if row.side == "edgecv" and row.pair in theirs_at:
            variant = ", uint8 input" if "uint8 input" in row.label else ""
            pairs[row.pair + variant] = ratio(runs[row.label], runs[theirs_at[row.pair].label])
    ours, theirs = best(rows, "edgecv", runs), best(rows, "ultralytics", runs)
    pairs["best vs best"] = ratio(runs[ours.label], runs[theirs.label])
    print("\nedgecv / Ultralytics time (< 1: edgecv faster), median of per-run ratios [min-max]:")
    for key, r in pairs.items():
        print(f"  {key:32s} {str(r):24s} {race_verdict(r)}")
    print(f"  (best: {ours.label} vs {theirs.label})")
    return {"rows": table, "pairs": {key: r.__dict__ for key, r in pairs.items()},
            "best": {"edgecv": ours.label, "ultralytics": theirs.label}}


def race_verdict(r: Ratio) -> str:
    """The issue's bar: edgecv ahead by >= 5 % at equal precision, beyond the run-to-run spread."""
    if r.high < 1.0:
        return f"edgecv ahead by {1 - r.median:.1%}" + (" (>= 5 %)" if r.median <= 0.95 else " (< 5 %)")
    if r.low > 1.0:
        return f"edgecv behind by {r.median - 1:.1%}"
    return "a tie: 1.0 is inside the spread"


def run_race(out: Path, runs: int, iters: int, warmup: int, threads: int, clock: str = "wall") -> dict:
    """Prepare, time and print the race; returns :func:`report`'s data plus the network audit."""
    if runs < 3:
        raise SystemExit(f"--runs: at least 3 interleaved runs expected, found {runs}")
    os.environ.update(offline_config(out / "ultralytics_config"))  # before Ultralytics is imported
    import torch

    torch.set_num_threads(threads)  # Ultralytics' pre-processing runs in torch
    with NetworkAudit.install() as audit:
        paths = prepare(out)
        frame, bf16 = frame_640(), has_bf16()
        rows = [bare_row(paths["edgecv_fp32"], frame, threads), *edgecv_rows(paths, frame, threads, bf16),
                *ultralytics_rows(paths, frame, threads, bf16)]
        timed = interleaved_runs({row.label: row.call for row in rows}, runs, iters, warmup, clock)
        result = report(rows, timed, runs, iters, threads, clock)
    if not bf16:
        print("  (no bf16 rows: this CPU has neither AVX512-BF16 nor AMX)")
    print(f"non-loopback network attempts / pip runs during the race: {len(audit.attempts)}"
          f"{' ' + str(sorted(set(audit.attempts))) if audit.attempts else ''}")
    for row in rows:
        if row.close:
            row.close()
    return {**result, "network_attempts": list(audit.attempts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/edgecv_bench_race"))
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs (>= 3)")
    parser.add_argument("--iters", type=int, default=10, help="timed calls per row per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per row per run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time (a shared machine's work figure; use with --threads 1)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = run_race(args.out, args.runs, args.iters, args.warmup, args.threads, args.clock)
    if args.json:
        from edgecv.fileio import write_json

        write_json(args.json, result, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
