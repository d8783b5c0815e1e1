"""PyTorch vs exported fp32 ONNX: COCO mAP (pycocotools) on the synthetic validation split.

    python benchmarks/bench_accuracy.py [--weights PATH] [--count 500] [--imgsz 320]

Both sides share the runtime's letterbox and the same NMS settings (conf 0.001, IoU 0.6,
100 detections), so the difference measures the export alone. Prints both figures and the gap.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgecv.evaluation import SyntheticCoco, evaluate
from edgecv.export.onnx_export import ExportOptions, export_detector
from edgecv.export.torch_predictor import TorchPredictor
from edgecv.models import load_for_export
from edgecv.runtimes import Predictor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="YOLO checkpoint (default: the demo weights)")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="validation seed (the val split never overlaps training)")
    args = parser.parse_args(argv)
    console = Console()
    detector = load_for_export("yolo", args.weights)
    opts = ExportOptions(imgsz=args.imgsz or detector.imgsz, conf=0.001, iou=0.6, max_det=100)
    data = SyntheticCoco(args.count, opts.imgsz, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        result = export_detector(detector, Path(tmp) / "model.onnx", opts, console=console)
        torch_eval = evaluate(TorchPredictor(detector, opts), data, class_names=detector.class_names,
                              description="PyTorch")
        with Predictor(result.path) as predictor:
            onnx_eval = evaluate(predictor, data, class_names=detector.class_names, description="ONNX Runtime")
    table = Table(title=f"COCO mAP on {args.count} synthetic validation images at {opts.imgsz}")
    for column in ("model", "mAP50-95", "mAP50", "ms/image"):
        table.add_column(column)
    for name, r in (("PyTorch", torch_eval), ("ONNX fp32", onnx_eval)):
        table.add_row(name, f"{r.map50_95:.4f}", f"{r.map50:.4f}", f"{r.ms_per_image:.1f}")
    console.print(table)
    gap = abs(torch_eval.map50_95 - onnx_eval.map50_95)
    console.print(f"|ΔmAP50-95| = {gap:.4f} (target ≤ 0.002); PyTorch mAP50-95 target ≥ 0.75")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
