"""Fidelity check of an export: PyTorch vs ONNX Runtime on real images.

Two levels, at the export size and (for dynamic exports) at a second, non-square size that would
expose shapes baked into the graph:

* raw outputs: max abs error of ``raw_boxes`` (pixels) and ``raw_scores`` between PyTorch and the
  pre-NMS ONNX graph, on the same preprocessed tensor;
* detections: the final graph's detections vs PyTorch + the reference NMS, matched greedily by
  class and IoU >= ``MATCH_IOU``; the fraction matched is over the larger of the two counts.

Preprocessing is the runtime's own (:func:`edgecv.runtimes.preprocess.preprocess_batch`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from edgecv.export.nms import nms_reference
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.preprocess import preprocess_batch

MATCH_IOU = 0.99
TOLERANCE = {"max_abs_scores": 1e-3, "max_abs_boxes": 1e-3, "matched": 0.99}


def default_images(imgsz: int, count: int = 8) -> list[np.ndarray]:
    """Synthetic validation scenes (BGR uint8) used when the caller names no images."""
    from edgecv.data.synthetic import ShapesDataset

    shapes = ShapesDataset("val", count, imgsz, seed=1234)
    return [shapes[i].image for i in range(count)]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of x1,y1,x2,y2 boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_detections(boxes_a: np.ndarray, cls_a: np.ndarray, boxes_b: np.ndarray, cls_b: np.ndarray,
                     iou: float = MATCH_IOU) -> int:
    """Number of greedy one-to-one matches with the same class and IoU >= ``iou``."""
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return 0
    ious = box_iou(boxes_a, boxes_b) * (cls_a[:, None] == cls_b[None, :])
    matched = 0
    for _ in range(min(len(boxes_a), len(boxes_b))):
        i, j = np.unravel_index(np.argmax(ious), ious.shape)
        if ious[i, j] < iou:
            break
        matched += 1
        ious[i, :] = -1
        ious[:, j] = -1
    return matched


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _compare_at(module: nn.Module, raw: ort.InferenceSession, final: ort.InferenceSession,
                metadata: ArtifactMetadata, images: list[np.ndarray]) -> dict:
    """Run both sides on ``images`` at the metadata's letterbox size, in chunks of the fixed batch."""
    batch = metadata.input_shape[0] if metadata.input_shape[0] > 0 else len(images)
    err_boxes = err_scores = 0.0
    matched = torch_dets = onnx_dets = pairs = 0
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        tensor, _ = preprocess_batch(chunk, metadata, batch_size=batch)
        with torch.no_grad():
            t_boxes, t_scores = (t.numpy() for t in module(torch.from_numpy(tensor)))
        o_boxes, o_scores = raw.run(None, {metadata.input_name: tensor})[:2]
        err_boxes = max(err_boxes, float(np.abs(t_boxes - o_boxes).max()))
        err_scores = max(err_scores, float(np.abs(t_scores - o_scores).max()))
        ref = nms_reference(t_boxes, t_scores, max_det=metadata.max_det, iou_threshold=metadata.iou_threshold,
                            conf_threshold=metadata.conf_threshold)
        got = final.run(None, {metadata.input_name: tensor})
        for b in range(len(chunk)):
            n_ref, n_got = int(ref[0][b, 0]), int(got[0][b, 0])
            torch_dets, onnx_dets = torch_dets + n_ref, onnx_dets + n_got
            pairs += max(n_ref, n_got)
            matched += match_detections(ref[1][b, :n_ref], ref[3][b, :n_ref], got[1][b, :n_got], got[3][b, :n_got])
    return {"max_abs_boxes": err_boxes, "max_abs_scores": err_scores, "torch_dets": torch_dets,
            "onnx_dets": onnx_dets, "matched": matched / pairs if pairs else 1.0}


def check_fidelity(module: nn.Module, raw_model: onnx.ModelProto, final_model: onnx.ModelProto,
                   metadata: ArtifactMetadata, images: list[np.ndarray]) -> dict:
    """Compare PyTorch with both ONNX graphs; returns a JSON-able report with ``passed`` and ``failures``."""
    raw, final = _session(raw_model), _session(final_model)
    h, w = metadata.letterbox_size
    sizes = [(h, w)]
    if metadata.dynamic:
        sizes.append((max(metadata.stride, round(h * 0.75 / metadata.stride) * metadata.stride), w))
    report: dict = {"images": len(images), "match_iou": MATCH_IOU, "tolerance": dict(TOLERANCE), "sizes": {}}
    failures = []
    for size in sizes:
        at = dataclasses.replace(metadata, letterbox_size=list(size),
                                 input_shape=[metadata.input_shape[0], 3, *(size if not metadata.dynamic else (-1, -1))])
        figures = _compare_at(module.eval(), raw, final, at, images)
        key = f"{size[0]}x{size[1]}"
        report["sizes"][key] = figures
        for name, limit in TOLERANCE.items():
            bad = figures[name] < limit if name == "matched" else figures[name] > limit
            if bad:
                failures.append(f"{key}: {name} = {figures[name]:.3g}, limit {limit}")
    report["failures"] = failures
    report["passed"] = not failures
    return report


def print_report(report: dict, console: Console) -> None:
    """Short table of the fidelity figures."""
    table = Table(title=f"Fidelity: PyTorch vs ONNX Runtime ({report['images']} images)")
    for column in ("size", "max |Δ| boxes (px)", "max |Δ| scores", "dets torch/onnx", f"matched @IoU{MATCH_IOU}"):
        table.add_column(column)
    for size, f in report["sizes"].items():
        table.add_row(size, f"{f['max_abs_boxes']:.2e}", f"{f['max_abs_scores']:.2e}",
                      f"{f['torch_dets']}/{f['onnx_dets']}", f"{100 * f['matched']:.1f} %")
    console.print(table)
    console.print("[green]fidelity check passed[/]" if report["passed"]
                  else "[red]fidelity check failed:[/] " + "; ".join(report["failures"]))
