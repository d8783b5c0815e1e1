"""Semantic segmentation families: export, fidelity (pixel agreement at two sizes) and ONNX Runtime latency.

    python benchmarks/bench_semantic.py [--models fcn_resnet50,deeplabv3_resnet50,lraspp,deeplabv3,unet]
                                        [--imgsz 256] [--runs 10] [--json out.json]

torchvision builders without trained weights get variance-keeping random weights (as in the tests),
so their label maps hold many classes and the pixel agreement compares something; ``unet`` uses the
packaged demo weights. Exports are dynamic (fidelity at the size and a non-square second size).
Latency: median of ``--runs`` bare ONNX Runtime calls at batch 1 on the CPU (2 threads).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table

from edgecv.export.onnx_export import ExportOptions, export_detector
from edgecv.fileio import write_json
from edgecv.models import load_for_export
from edgecv.models.tv_segmentation import perturb_batchnorm


def latency_ms(path: Path, imgsz: int, runs: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    session.run(None, {"images": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"images": x})
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fcn_resnet50,deeplabv3_resnet50,lraspp,deeplabv3,unet")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--atol", type=float, default=1e-3, help="logits tolerance as a fraction of their range: "
                        "the varied random weights reach logits of ~1e3, where float32 summation order differs by ~2e-4")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    console, rows = Console(), []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            loaded = load_for_export(name)
            if loaded.extra.get("random_weights"):
                perturb_batchnorm(loaded.module)
            result = export_detector(loaded, Path(tmp) / f"{name}.onnx", ExportOptions(imgsz=args.imgsz, dynamic=True,
                                                                                                 fidelity_atol=args.atol))
            sizes = result.fidelity["sizes"]
            rows.append({"model": name, "family": loaded.family, "seconds_export": round(result.seconds, 1),
                         "agreement": {k: v["agreement"] for k, v in sizes.items()},
                         "classes_seen": {k: v["classes_seen"] for k, v in sizes.items()},
                         "max_abs_logits": max(v["max_abs_logits"] for v in sizes.values()),
                         "status": result.fidelity["status"],
                         "ort_ms": round(latency_ms(result.path, args.imgsz, args.runs), 1)})
    table = Table(title=f"Semantic families at {args.imgsz} px (fp32, ONNX Runtime CPU, batch 1)")
    for column in ("model", "pixels equal (2 sizes)", "classes seen", "max |Δ| logits", "fidelity", "ORT ms", "export s"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["model"], " / ".join(f"{100 * a:.3f} %" for a in r["agreement"].values()),
                      " / ".join(map(str, r["classes_seen"].values())), f"{r['max_abs_logits']:.1e}", r["status"],
                      f"{r['ort_ms']}", f"{r['seconds_export']}")
    console.print(table)
    if args.json:
        write_json(args.json, rows, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
