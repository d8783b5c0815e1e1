"""Fidelity and latency of torchvision's single-stage builders at real sizes (the tests use tiny ones).

    python benchmarks/bench_tv_single.py [--builders retinanet_resnet50_fpn,fcos_resnet50_fpn] [--imgsz 320]
                                         [--conf 0.3] [--batch 1]

For each builder: lively random weights (tests/models/tv_fixtures.py: BatchNorm statistics
re-estimated on synthetic scenes, unit-std head convolutions, spread class biases -- no download,
no training), ``edgecv export`` at ``--imgsz`` with the fidelity check against torchvision's own
model, then the median ONNX Runtime latency of the exported graph (CPU, batch ``--batch``). Prints
one row per builder: detections torch / ONNX, share matched at IoU >= 0.99, max raw differences,
export seconds and p50 ms. ResNet-50 builders take minutes per size on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from edgecv.export.api import export_model
from edgecv.export.onnx_export import ExportOptions
from edgecv.models import TV_SINGLE_STAGE_BUILDERS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
from tv_fixtures import lively_state_dict  # noqa: E402


def latency_ms(path: Path, batch: int, imgsz: int, calls: int = 10) -> float:
    """Median ms of ``calls`` bare ONNX Runtime runs on a random tensor (after one warm-up)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tensor = np.random.default_rng(0).standard_normal((batch, 3, imgsz, imgsz)).astype(np.float32)
    name = session.get_inputs()[0].name
    session.run(None, {name: tensor})
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        session.run(None, {name: tensor})
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builders", default="ssdlite320_mobilenet_v3_large,retinanet_resnet50_fpn,fcos_resnet50_fpn")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--conf", type=float, default=0.3)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    table = Table(title=f"torchvision single-stage at {args.imgsz} px (fidelity vs torchvision, ORT CPU latency)")
    for column in ("builder", "dets torch/onnx", "matched", "max |Δ| boxes px", "max |Δ| scores", "export s", "p50 ms"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        for builder in args.builders.split(","):
            if builder not in TV_SINGLE_STAGE_BUILDERS:
                raise SystemExit(f"--builders: expected names from {TV_SINGLE_STAGE_BUILDERS}, found {builder!r}")
            weights = lively_state_dict(builder, args.imgsz, Path(tmp) / f"{builder}.pt")
            start = time.time()
            result = export_model(builder, weights, Path(tmp) / f"{builder}.onnx", console=Console(quiet=True),
                                  opts=ExportOptions(imgsz=args.imgsz, conf=args.conf, batch=args.batch),
                                  warn_stale=False)
            seconds = time.time() - start
            f = result.fidelity["sizes"][f"{args.imgsz}x{args.imgsz}"]
            matched = "not compared" if f["matched"] is None else f"{100 * f['matched']:.2f} %"
            table.add_row(builder, f"{f['torch_dets']}/{f['onnx_dets']}", matched, f"{f['max_abs_boxes']:.2e}",
                          f"{f['max_abs_scores']:.2e}", f"{seconds:.0f}",
                          f"{latency_ms(result.path, args.batch, args.imgsz):.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
