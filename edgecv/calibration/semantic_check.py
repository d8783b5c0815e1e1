"""fp32 vs int8 accuracy of a semantic segmentation graph (task ``semantic``): mIoU of the label
maps on the synthetic validation split, with ONNX Runtime on the CPU.

The detection path (:mod:`edgecv.calibration.fallback`) measures COCO mAP through the Predictor
and searches for layers to keep float; for label maps only the measurement is done here: the
layer search is driven by mAP and is not extended to mIoU (a ``max_drop`` that is not met is
reported, the graph is kept).
"""

from __future__ import annotations

from typing import Any

import onnx
from rich.console import Console

from edgecv.errors import CalibrationError
from edgecv.metadata import ArtifactMetadata


def semantic_accuracy(fp32: onnx.ModelProto, int8: onnx.ModelProto, metadata: ArtifactMetadata,
                      eval_data: str, eval_count: int, max_drop: float | None, target: str,
                      console: Console) -> dict[str, Any]:
    """``{"metric": "miou", "fp32": {...}, "int8": {...}, "drop_points", ...}``; mIoU as fractions,
    the drop in points (mIoU x 100, positive = int8 worse)."""
    from edgecv.evaluation import eval_size, evaluate_semantic, onnx_segmenter

    if str(eval_data) != "shapes":
        raise CalibrationError(f"semantic evaluation data: expected 'shapes' (the synthetic set's label maps), "
                               f"found {eval_data!r}")
    size = eval_size(metadata)  # a side, or (H, W) for a non-square export
    rows = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        score = evaluate_semantic(onnx_segmenter(model, metadata), metadata.class_names, count=eval_count, imgsz=size)
        rows[name] = {"miou": score.miou, "pixel_accuracy": score.pixel_accuracy, "per_class": score.per_class,
                      "ms_per_image": score.ms_per_image}
    drop = 100 * (rows["fp32"]["miou"] - rows["int8"]["miou"])
    console.print(f"mIoU fp32 {rows['fp32']['miou']:.4f}  int8 {rows['int8']['miou']:.4f}  drop {drop:.2f} pts "
                  f"({eval_count} synthetic images at {size if isinstance(size, int) else '%dx%d' % size[::-1]} px)")
    if max_drop is not None and drop > max_drop:
        console.print(f"[yellow]--max-drop {max_drop} pts not reached ({drop:.2f}):[/] the float-layer fallback "
                      "is driven by detection mAP and does not run for label maps; keeping the graph")
    return {"metric": "miou", "fp32": rows["fp32"], "int8": rows["int8"], "drop_points": drop,
            "eval_data": str(eval_data), "eval_images": eval_count, "max_drop": max_drop, "target": target}
