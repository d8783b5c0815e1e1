"""INT8 benchmark, one run: accuracy, latency and calibration time of the demo model.

    python benchmarks/bench_int8.py [--eval-count 500] [--calib 256] [--runs 30] [--out /tmp/bench_int8]

1. Accuracy at the model's default size (320) with ``--conf 0.001``: fp32 vs int8 (onnxruntime
   target) vs int8 (tensorrt target, run in ORT) mAP50-95 / mAP50 and drop in points on
   ``--eval-count`` synthetic validation images (calibration: ``--calib`` images of the
   synthetic ``test`` split, never the validation split).
2. Latency at 640: median bare ORT session time per form (runs interleaved so CPU noise hits all
   forms alike), the int8/fp32 ratio, plus the ORT-form alternatives (QOperator, reduce_range,
   per-tensor weights) that chose the ``onnxruntime`` target's form.
3. Calibration time of ``--calib`` images at 640 (statistics collection, no cache).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from edgecv.calibration import quantize
from edgecv.calibration.api import calibrate_stats, ranges_for, read_metadata, write_metadata
from edgecv.calibration.emit import EmitOptions, emit
from edgecv.calibration.report import evaluate_artifact
from edgecv.evaluation import SyntheticCoco
from edgecv.export.api import export_model
from edgecv.export.onnx_export import ExportOptions

QUIET = Console(quiet=True)


def interleaved_latency(paths: dict[str, Path], runs: int, threads: int = 2) -> dict[str, float]:
    """Median ms per model, one run of each model per round (fair under a noisy shared CPU).

    Spinning is off: an idle session's spinning workers would otherwise steal the cores from the
    next model of the round (measured: fp32 82 ms interleaved with spinning vs 43 ms alone).
    """
    sessions = {}
    for name, path in paths.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    times: dict[str, list[float]] = {n: [] for n in paths}
    for i in range(runs + 3):
        for name, sess in sessions.items():
            tic = time.perf_counter()
            sess.run(None, {sess.get_inputs()[0].name: x})
            if i >= 3:
                times[name].append((time.perf_counter() - tic) * 1e3)
    return {n: float(np.median(t)) for n, t in times.items()}


def accuracy(folder: Path, eval_count: int, calib: int, console: Console) -> dict[str, dict]:
    fp32 = export_model("yolo", out=folder / "acc" / "model.onnx", opts=ExportOptions(conf=0.001), console=QUIET).path
    data = SyntheticCoco(eval_count, int(read_metadata(onnx.load(str(fp32)), "fp32").letterbox_size[0]))
    paths = {"fp32": fp32}
    for target in ("onnxruntime", "tensorrt"):
        paths[f"int8 {target}"] = quantize(fp32, folder / "acc" / f"model_int8_{target}.onnx", target=target,
                                           samples=calib, console=QUIET).path
    rows = {}
    for name, path in paths.items():
        res = evaluate_artifact(path, data, f"evaluating {name}")
        rows[name] = {"map50_95": res.map50_95, "map50": res.map50}
        console.print(f"{name}: mAP50-95 {100 * res.map50_95:.2f} pts, mAP50 {100 * res.map50:.2f} pts")
    return rows


def forms_640(folder: Path, calib: int, console: Console) -> tuple[dict[str, Path], float]:
    """fp32 at 640, the two targets and the ORT-form alternatives; returns (paths, calibration seconds)."""
    fp32 = export_model("yolo", out=folder / "640" / "model.onnx", opts=ExportOptions(imgsz=640, check=False),
                        console=QUIET).path
    model = onnx.load(str(fp32))
    meta = read_metadata(model, str(fp32))
    cache, _, seconds = calibrate_stats(fp32, model, meta, "shapes", calib, 0, None, console)
    console.print(f"calibration of {cache.samples} images at 640: {seconds:.1f} s")
    ranges = ranges_for(cache, "percentile")
    forms = {"int8 onnxruntime (QDQ u8/s8 per-channel)": EmitOptions("onnxruntime"),
             "int8 tensorrt (QDQ s8/s8 symmetric)": EmitOptions("tensorrt"),
             "alt: QOperator u8/s8": EmitOptions("onnxruntime", form="qoperator"),
             "alt: QDQ u8/s8 reduce_range": EmitOptions("onnxruntime", reduce_range=True),
             "alt: QDQ u8/s8 per-tensor": EmitOptions("onnxruntime", per_channel=False)}
    paths = {"fp32": fp32}
    for i, (name, opts) in enumerate(forms.items()):
        graph = emit(model, ranges, opts)
        write_metadata(graph, meta)
        paths[name] = folder / "640" / f"form{i}.onnx"
        onnx.save(graph, str(paths[name]))
    return paths, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-count", type=int, default=500)
    parser.add_argument("--calib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_int8"))
    args = parser.parse_args()
    console = Console()
    acc = accuracy(args.out, args.eval_count, args.calib, console)
    paths, calib_seconds = forms_640(args.out, args.calib, console)
    latency = interleaved_latency(paths, args.runs)
    table = Table(title=f"demo YOLO-n: mAP in points (AP x 100) on {args.eval_count} val images at 320, "
                        f"ONNX Runtime latency at 640 (2 threads, median of {args.runs} interleaved runs)")
    for col in ("model", "mAP50-95 (pts)", "drop (pts)", "mAP50 (pts)", "ORT ms @640", "x fp32"):
        table.add_column(col, justify="left" if col == "model" else "right")
    base = acc["fp32"]["map50_95"]
    for name, ms in latency.items():
        key = next((k for k in acc if name.startswith(k)), None)
        row = acc.get(key) if key else None
        # the tensorrt-target graph's ORT time says nothing about TensorRT: shown, but marked
        cross = " (ORT, not indicative)" if "tensorrt" in name else ""
        table.add_row(name, f"{100 * row['map50_95']:.2f}" if row else "-", f"{100 * (base - row['map50_95']):+.2f}"
                      if row else "-", f"{100 * row['map50']:.2f}" if row else "-", f"{ms:.1f}{cross}",
                      f"{ms / latency['fp32']:.2f}")
    console.print(table)
    console.print(f"calibration time, {args.calib} images at 640: {calib_seconds:.1f} s (target < 180 s)")


if __name__ == "__main__":
    main()
