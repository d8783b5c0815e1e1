"""What the default NMS candidate cap (3840, TensorRT's TopK limit) costs in mAP at 640 px.

    python benchmarks/bench_candidate_cap.py [--count 200] [--imgsz 640] [--weights PATH] [--caps 3840,300,100]

A 640 px YOLO has 8,400 candidates per image; TensorRT's TopK takes k <= 3840 and its NMS
layer considers at most 5,000 boxes, so edgecv's graph pre-selects the 3,840 candidates with
the highest best-class score before NMS (edgecv.export.nms). This exports the model twice at
the COCO-evaluation thresholds (conf 0.001, IoU 0.6, 100 detections) -- with the default cap
and with no cap (``max_candidates=None``, an ONNX Runtime-only graph) -- and evaluates both
with ONNX Runtime on the synthetic validation split drawn at the same size (pycocotools, via
edgecv.evaluation). Also prints how often the cap binds: the share of images with more than
3,840 candidates above the threshold, read from the graph's raw outputs. ``--caps`` adds smaller
caps to show where the cap starts to cost (how much headroom the default has on this model).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from edgecv.evaluation import SyntheticCoco, evaluate
from edgecv.export.nms import DEFAULT_MAX_CANDIDATES
from edgecv.export.onnx_export import ExportOptions, export_detector, slim, torch_to_onnx
from edgecv.models import load_for_export
from edgecv.runtimes import Predictor
from edgecv.runtimes.preprocess import preprocess_batch


def candidates_above(detector, opts: ExportOptions, data: SyntheticCoco, metadata) -> np.ndarray:
    """Per image, the number of candidates whose best class score exceeds ``opts.conf`` (raw graph)."""
    raw = slim(torch_to_onnx(detector.module, opts))
    session = ort.InferenceSession(raw.SerializeToString(), providers=["CPUExecutionProvider"])
    counts = []
    for entry in data.gt["images"]:
        tensor, _ = preprocess_batch([data.read(entry)], metadata, batch_size=1)
        _, scores = session.run(None, {metadata.input_name: tensor})[:2]
        counts.append(int((scores[0].max(axis=1) > np.float32(opts.conf)).sum()))
    return np.asarray(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="YOLO checkpoint (default: the demo weights)")
    parser.add_argument("--count", type=int, default=200, help="synthetic validation images")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--caps", default=str(DEFAULT_MAX_CANDIDATES),
                        help="comma-separated candidate caps to compare with no cap (default: the default cap)")
    args = parser.parse_args(argv)
    console = Console()
    detector = load_for_export("yolo", args.weights)
    data = SyntheticCoco(args.count, args.imgsz, seed=args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        caps = [int(c) for c in args.caps.split(",")]
        graphs = [(f"cap {c}" + (" (default)" if c == DEFAULT_MAX_CANDIDATES else ""), c) for c in caps]
        for label, cap in [("no cap", None), *graphs]:
            opts = ExportOptions(imgsz=args.imgsz, conf=0.001, iou=0.6, max_det=100, max_candidates=cap, check=False)
            path = Path(tmp) / f"model_{cap}.onnx"
            result = export_detector(detector, path, opts)
            with Predictor(result.path) as predictor:
                rows.append((label, evaluate(predictor, data, class_names=detector.class_names, description=label)))
        counts = candidates_above(detector, opts, data, result.metadata)
    anchors = sum((args.imgsz // stride) ** 2 for stride in (8, 16, 32))
    table = Table(title=f"demo YOLO at {args.imgsz} ({anchors} candidates), conf 0.001, "
                        f"{args.count} synthetic validation images, ONNX Runtime CPU")
    for column in ("graph", "mAP50-95", "mAP50", "detections", "ms/image"):
        table.add_column(column)
    for label, r in rows:
        table.add_row(label, f"{r.map50_95:.4f}", f"{r.map50:.4f}", str(r.detections), f"{r.ms_per_image:.1f}")
    console.print(table)
    uncapped = rows[0][1]
    for label, capped in rows[1:]:
        console.print(f"mAP50-95 cost of {label}: {100 * (uncapped.map50_95 - capped.map50_95):+.3f} points "
                      f"(mAP50: {100 * (uncapped.map50 - capped.map50):+.3f})")
    console.print(f"candidates above conf 0.001 per image: median {int(np.median(counts))}, max {counts.max()}; "
                  f"the cap binds on {100 * float((counts > DEFAULT_MAX_CANDIDATES).mean()):.1f} % of images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
