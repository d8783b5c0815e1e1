"""Every family through one pipe, side by side in one run: ms per image, fp32 vs int8, ONNX Runtime vs OpenVINO.

    python benchmarks/bench_families.py [--families yolo,ssdlite,retinanet,fcos,fasterrcnn,maskrcnn,fcn,deeplabv3,lraspp,unet]
                                        [--imgsz 320] [--calib 32] [--rounds 3] [--iters 10]
                                        [--backends onnxruntime,openvino] [--batch4 fasterrcnn] [--json out.json]

Each family is exported the way ``edgecv export NAME --int8`` does it (its default builder,
its packaged demo weights where there are any -- yolo, unet, and maskrcnn once its trained weights
ship -- else seeded random weights: latency does not depend on the values, except that the
two-stage graphs' NMS and mask head see the detections random weights give at the lowered score
threshold), without the fidelity check (not what is measured here). int8: one calibration on
``--calib`` synthetic images (cached), emitted per target: ``onnxruntime`` (run in ONNX Runtime) and
``openvino`` (run in OpenVINO).

Timing: :func:`edgecv.runtimes.benchmark.benchmark`'s *bare* backend call on a ready tensor (p50),
divided by the batch; every (precision, backend) of a family is timed in each of ``--rounds``
rounds, the order reversed every other round, so machine load hits them alike; the table shows
the median over rounds and int8/fp32 ratios. ``--batch4 NAME`` also exports NAME at batch 4 and
prints its ms per image against batch 1 (the issue's ``<= 1.1x`` figure for two-stage graphs).
The CPU class (:func:`edgecv.runtimes.cpu.cpu_features`) is printed: int8 only pays on CPUs
with an int8 dot-product instruction.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgecv.export.api import export_variants
from edgecv.export.onnx_export import ExportOptions
from edgecv.fileio import write_json
from edgecv.runtimes.benchmark import benchmark
from edgecv.runtimes.cpu import cpu_features

#: short family names (``edgecv export NAME``); every one is exported at ``--imgsz`` (ResNet-50 ones too)
FAMILIES = ("yolo", "ssdlite", "retinanet", "fcos", "fasterrcnn", "maskrcnn", "fcn", "deeplabv3", "lraspp", "unet")
QUIET = Console(quiet=True)


def export_family(name: str, folder: Path, imgsz: int, calib: int, batch: int = 1,
                  backends: tuple[str, ...] = ("onnxruntime", "openvino")) -> dict[str, Path]:
    """``{"fp32": path, "int8 onnxruntime": path, "int8 openvino": path}`` for family ``name``."""
    from edgecv.calibration import quantize

    out = folder / f"{name}_b{batch}" / "model.onnx"
    opts = ExportOptions(imgsz=imgsz, batch=batch, check=False, conf=0.25)
    result = export_variants(name, out=out, opts=opts, console=QUIET)
    paths = {"fp32": result.fp32.path}
    for target in backends:
        paths[f"int8 {target}"] = quantize(result.fp32.path, samples=calib, target=target, console=QUIET).path
    return paths


def time_family(paths: dict[str, Path], backends: tuple[str, ...], rounds: int, iters: int,
                batch: int = 1) -> dict[str, dict[str, Any]]:
    """Median bare p50 in ms per image for every (precision, backend) pair, alternated round by round."""
    runs = [(label, backend) for backend in backends for label in ("fp32", f"int8 {backend}")]
    samples: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for r in range(rounds):
        for label, backend in (runs if r % 2 == 0 else runs[::-1]):
            res = benchmark(paths[label], backend=backend, batch=batch, iters=iters, warmup=2)
            samples[(label, backend)].append(res.bare.p50 / batch)
    return {f"{backend} {label.split()[0]}": {"ms_per_image": statistics.median(values), "rounds": values}
            for (label, backend), values in samples.items()}


def _ratio(rows: dict, backend: str) -> str:
    fp32, int8 = rows.get(f"{backend} fp32"), rows.get(f"{backend} int8")
    return f"{int8['ms_per_image'] / fp32['ms_per_image']:.2f}x" if fp32 and int8 else "-"


def print_table(results: list[dict], backends: tuple[str, ...], console: Console, cpu: str) -> None:
    table = Table(title=f"ms per image, bare backend call, median of rounds; CPU: {cpu}")
    for column in ("family", "model", "task", "input"):
        table.add_column(column)
    for backend in backends:
        for column in ("fp32", "int8", "int8/fp32"):
            table.add_column(f"{'ORT' if backend == 'onnxruntime' else 'OV'} {column}", justify="right")
    for row in results:
        cells = [row["family"], row["model"], row["task"], row["input"]]
        for backend in backends:
            fp32, int8 = row["times"].get(f"{backend} fp32"), row["times"].get(f"{backend} int8")
            cells += [f"{fp32['ms_per_image']:.1f}" if fp32 else "-", f"{int8['ms_per_image']:.1f}" if int8 else "-",
                      _ratio(row["times"], backend)]
        table.add_row(*cells)
    console.print(table)


def batch4_figure(name: str, folder: Path, imgsz: int, rounds: int, iters: int, console: Console) -> dict:
    """ORT fp32 ms per image of ``name`` exported at batch 1 and at batch 4, alternated round by round."""
    one = export_variants(name, out=folder / f"{name}_b1" / "model.onnx",
                          opts=ExportOptions(imgsz=imgsz, batch=1, check=False), console=QUIET).fp32.path
    four = export_variants(name, out=folder / f"{name}_b4" / "model.onnx",
                           opts=ExportOptions(imgsz=imgsz, batch=4, check=False), console=QUIET).fp32.path
    per: dict[int, list[float]] = {1: [], 4: []}
    for r in range(rounds):
        for batch, path in ((1, one), (4, four)) if r % 2 == 0 else ((4, four), (1, one)):
            per[batch].append(benchmark(path, backend="onnxruntime", batch=batch, iters=iters, warmup=2).bare.p50 / batch)
    b1, b4 = statistics.median(per[1]), statistics.median(per[4])
    console.print(f"{name} at {imgsz}: ORT fp32 {b1:.1f} ms/image at batch 1, {b4:.1f} ms/image at batch 4 "
                  f"(batch 4 / batch 1 = {b4 / b1:.2f}x; per round {[round(b / a, 2) for a, b in zip(per[1], per[4])]})")
    return {"model": name, "imgsz": imgsz, "batch1_ms_per_image": b1, "batch4_ms_per_image": b4, "ratio": b4 / b1,
            "rounds": per}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--imgsz", type=int, default=320, help="export size of every family (default 320)")
    parser.add_argument("--calib", type=int, default=32, help="calibration images per family")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10, help="timed calls per round and (precision, backend)")
    parser.add_argument("--backends", default="onnxruntime,openvino")
    parser.add_argument("--batch4", default="fasterrcnn", help="family timed at batch 4 vs 1 ('' to skip)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    console, backends = Console(), tuple(args.backends.split(","))
    cpu = cpu_features().summary()
    console.print(f"CPU: {cpu}")
    results, doc = [], {"cpu": cpu, "imgsz": args.imgsz, "rounds": args.rounds, "iters": args.iters}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.families.split(","):
            start = time.time()
            paths = export_family(name, Path(tmp), args.imgsz, args.calib, backends=backends)
            from edgecv.runtimes import Predictor

            with Predictor(paths["fp32"], backend="onnxruntime") as predictor:
                meta = predictor.metadata
            times = time_family(paths, backends, args.rounds, args.iters)
            results.append({"family": name, "model": meta.model_family, "task": meta.task,
                            "input": "x".join(map(str, meta.input_shape[2:])), "times": times,
                            "seconds": time.time() - start})
            console.print(f"{name} ({meta.model_family}): " + ", ".join(
                f"{k} {v['ms_per_image']:.1f}" for k, v in times.items()) + f" ms/image ({time.time() - start:.0f} s)")
        doc["families"] = results
        print_table(results, backends, console, cpu)
        if args.batch4:
            doc["batch4"] = batch4_figure(args.batch4, Path(tmp), args.imgsz, args.rounds, args.iters, console)
    if args.json:
        console.print(f"wrote {write_json(args.json, doc, indent=2)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
