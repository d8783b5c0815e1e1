"""Fidelity of an exported two-stage graph: torchvision's OWN model vs the ONNX graph through edgecv's Predictor.

torchvision side: the model in eval mode, its ``GeneralizedRCNNTransform`` an identity at the
export size H x W (min_size = min(H, W), max_size = max(H, W), mean 0 / std 1 on the already-normalised
tensor the runtime's pre-processing makes), so both sides see the same tensor. ONNX side:
:class:`edgecv.runtimes.Predictor` (ONNX Runtime) on the same BGR images, returning
:class:`Detections` (+ :class:`InstanceMasks`).

Criteria (never "0/0 matched, passed"): detections matched one-to-one, same class, box IoU >=
:data:`MATCH_IOU`, for >= :data:`MATCH_SHARE` of ``max(torch, onnx)`` detections, over at least
:data:`MIN_DETECTIONS` torchvision detections (degenerate boxes: coordinates within
:data:`BOX_ATOL` x the input side); masks: mean IoU >= :data:`MASK_IOU` of the matched
pairs' masks, both pasted by the runtime's own :func:`~edgecv.runtimes.tasks.segment.paste_masks`
(torchvision's 28x28 grids vs the graph's), so the figure measures the graph, not two pasting codes.

Images (:func:`fidelity_images`): at two original sizes, the export's own H x W and a
``3/4 H x W`` frame of another aspect (letterboxed into the graph: boxes mapped back and masks
pasted into the original image by the runtime, which is where a wrong paste-back shows), each
with synthetic scenes (several objects, one object) and a grey frame (no object), mild noise.
Figures are reported per original size (``sizes``) and in total; each size with enough
detections must pass on its own.
"""

from __future__ import annotations

import numpy as np
import torch
from rich.console import Console
from torch import nn

from edgecv.export.fidelity import box_iou
from edgecv.models.tv_twostage import TwoStageConfig
from edgecv.runtimes.postprocess import scale_boxes_back
from edgecv.runtimes.preprocess import LetterboxInfo, preprocess_batch

MATCH_IOU = 0.99
MATCH_SHARE = 0.99
MASK_IOU = 0.98
MIN_DETECTIONS = 20
#: Coordinates within this fraction of the input side pair boxes whatever their IoU (degenerate boxes).
BOX_ATOL = 1e-4


def check_images(imgsz: int | tuple[int, int], count: int = 4, noise: float = 4.0,
                 max_objects: int = 8) -> list[np.ndarray]:
    """BGR uint8 check images of ``imgsz`` (side or ``(h, w)``): ``count`` synthetic scenes (1 to
    ``max_objects`` objects) and a grey frame, with Gaussian noise of ``noise`` grey levels (seeded).

    Why the noise: on a flat region every anchor of a random-weight network has the same
    objectness, bit for bit, and which of the tied anchors a ``TopK`` keeps is implementation
    detail (PyTorch and ONNX Runtime choose differently); camera images have sensor noise.
    """
    from edgecv.data.synthetic import ShapesDataset

    hw = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    shapes = ShapesDataset("val", count, hw, seed=1234, max_objects=max_objects)
    images = [shapes[i].image for i in range(count)] + [np.full((*hw, 3), 128, np.uint8)]
    rng = np.random.default_rng(0)
    return [np.clip(im + rng.normal(0, noise, im.shape), 0, 255).astype(np.uint8) for im in images]


def fidelity_images(imgsz: int | tuple[int, int]) -> list[np.ndarray]:
    """The default check set for an export of ``imgsz`` (side or ``(h, w)``): at ``h x w`` four scenes +
    a grey frame; at ``3/4 h x w`` (padded rows in the letterbox) one busy scene, one single-object
    scene and a grey frame (see the module docstring)."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    other = (max(32, h * 3 // 4), w)
    return check_images((h, w)) + check_images(other, count=1) + check_images(other, count=1, max_objects=1)[:1]


def torchvision_outputs(model: nn.Module, tensor: np.ndarray) -> list[dict[str, np.ndarray]]:
    """torchvision's detections on the normalised ``tensor [B, 3, H, W]``: boxes, scores, labels and,
    for Mask R-CNN, the box-relative 28x28 ``grids`` (captured before torchvision pastes them)."""
    grabbed: list = []

    def grab(_module: nn.Module, _inputs: tuple, output: tuple) -> None:
        grabbed.extend(r["masks"][:, 0].clone() for r in output[0] if "masks" in r)

    hook = model.roi_heads.register_forward_hook(grab)
    try:
        with torch.no_grad():
            results = model.eval()(list(torch.from_numpy(tensor)))
    finally:
        hook.remove()
    out = []
    for i, r in enumerate(results):
        item = {k: r[k].numpy() for k in ("boxes", "scores", "labels")}
        if grabbed:
            item["grids"] = grabbed[i].numpy()
        out.append(item)
    return out


def pairs(boxes_a: np.ndarray, cls_a: np.ndarray, boxes_b: np.ndarray, cls_b: np.ndarray,
          iou: float = MATCH_IOU, atol: float = 0.0) -> list[tuple[int, int]]:
    """Greedy one-to-one ``(i, j)`` pairs, same class, box IoU >= ``iou``, best IoU first.

    Boxes whose every coordinate differs by <= ``atol`` px also pair: a box 0.08 px high (random
    weights make such boxes) has an IoU of 0.95 for a 0.002 px difference (as
    :func:`edgecv.export.fidelity.match_detections` does for degenerate boxes).
    """
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return []
    similar = box_iou(boxes_a, boxes_b)
    close = np.all(np.abs(boxes_a[:, None] - boxes_b[None]) <= atol, axis=2)
    similar = np.where(close, 1.0, similar) * (cls_a[:, None] == cls_b[None, :])
    found = []
    for _ in range(min(len(boxes_a), len(boxes_b))):
        i, j = np.unravel_index(np.argmax(similar), similar.shape)
        if similar[i, j] < iou:
            break
        found.append((int(i), int(j)))
        similar[i, :], similar[:, j] = -1, -1
    return found


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _compare(ref: dict, det, info: LetterboxInfo, tally: dict) -> None:  # noqa: ANN001 (Detections)
    """Add one image's comparison to ``tally``: torchvision's boxes (network pixels) mapped back to the
    original image with ``info``, as the Predictor maps its own; masks pasted by the runtime on both sides."""
    from edgecv.runtimes.tasks.segment import paste_masks

    ref_boxes = scale_boxes_back(ref["boxes"], info)
    n_ref, n_got = len(ref["boxes"]), len(det.boxes)
    tally["torch_dets"] += n_ref
    tally["onnx_dets"] += n_got
    tally["pairs"] += max(n_ref, n_got)
    tally["zero_images"] += int(n_got == 0)
    tally["images"] += 1
    matched = pairs(ref_boxes, ref["labels"], det.boxes, det.class_ids, atol=BOX_ATOL * max(info.orig_shape))
    tally["matched"] += len(matched)
    tally["matched_iou50"] += len(pairs(ref_boxes, ref["labels"], det.boxes, det.class_ids, 0.5))
    if "grids" in ref and matched and det.masks is not None:
        rows = [i for i, _ in matched]
        torch_masks = paste_masks(ref["grids"][rows], ref["boxes"][rows], info).dense()
        onnx_masks = det.masks.dense()
        tally["mask_ious"] += [mask_iou(torch_masks[k], onnx_masks[j]) for k, (_, j) in enumerate(matched)]


def check_twostage(model: nn.Module, path, cfg: TwoStageConfig, images: list[np.ndarray] | None = None) -> dict:  # noqa: ANN001
    """Compare torchvision's ``model`` with the artifact at ``path`` on ``images`` (default
    :func:`check_images`); returns a JSON-able report (``passed``, ``status``, ``failures``, figures)."""
    from edgecv.runtimes import Predictor

    images = images if images is not None else fidelity_images(cfg.imgsz)
    sizes: dict[str, dict] = {}
    with Predictor(path, backend="onnxruntime") as predictor:
        batch = predictor.batch_size or len(images)
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            tensor, infos = preprocess_batch(chunk, predictor.metadata, batch_size=batch)
            refs = torchvision_outputs(model, tensor)
            for ref, det, info in zip(refs, predictor(chunk), infos):
                key = "x".join(map(str, info.orig_shape))
                _compare(ref, det, info, sizes.setdefault(key, _empty_tally()))
    total = _empty_tally()
    for tally in sizes.values():
        for name, value in tally.items():
            total[name] += value
    report = _judge(total, cfg, len(images))
    report["sizes"] = {key: _figures(tally) for key, tally in sizes.items()}
    for key, figures in report["sizes"].items():  # each size with enough detections passes on its own
        if cfg.pooler != "pool" and figures["torch_dets"] >= MIN_DETECTIONS and figures["matched_share"] < MATCH_SHARE:
            report["failures"].append(f"at original size {key}: matched {100 * figures['matched_share']:.1f} % "
                                      f"(torch {figures['torch_dets']}, onnx {figures['onnx_dets']})")
            report.update(passed=False, status="failed")
    return report


def _empty_tally() -> dict:
    return {"torch_dets": 0, "onnx_dets": 0, "pairs": 0, "matched": 0, "zero_images": 0, "matched_iou50": 0,
            "images": 0, "mask_ious": []}


def _figures(tally: dict) -> dict:
    """One size's JSON-able figures: counts, matched share, mean mask IoU."""
    ious = tally["mask_ious"]
    return {**{k: v for k, v in tally.items() if k != "mask_ious"},
            "matched_share": tally["matched"] / tally["pairs"] if tally["pairs"] else None,
            "mask_iou_mean": float(np.mean(ious)) if ious else None, "mask_pairs": len(ious)}


def _judge(tally: dict, cfg: TwoStageConfig, images: int) -> dict:
    share = tally["matched"] / tally["pairs"] if tally["pairs"] else None
    ious = tally.pop("mask_ious")
    report = {"compared": "torchvision (own model) vs ONNX Runtime via Predictor", "images": images, **tally,
              "matched_share": share, "match_iou": MATCH_IOU,
              "matched_share_iou50": tally["matched_iou50"] / tally["pairs"] if tally["pairs"] else None,
              "pooler": cfg.pooler,
              "mask_iou_mean": float(np.mean(ious)) if ious else None, "mask_pairs": len(ious)}
    failures, warns = [], []
    if tally["torch_dets"] < MIN_DETECTIONS:  # nothing worth comparing: said so, never "passed"
        warns.append(f"torchvision detected {tally['torch_dets']} objects, fewer than {MIN_DETECTIONS}: detections "
                     "not compared (lower --conf, or check images with the model's objects)")
    elif share < MATCH_SHARE:
        failures.append(f"matched {100 * share:.1f} % of detections (torch {tally['torch_dets']}, onnx "
                        f"{tally['onnx_dets']}) at IoU >= {MATCH_IOU}, expected >= {100 * MATCH_SHARE:.0f} %")
    if ious and np.mean(ious) < MASK_IOU:
        failures.append(f"mean mask IoU {np.mean(ious):.4f} over {len(ious)} pairs, expected >= {MASK_IOU}")
    if cfg.pooler == "pool":  # RoI Pool vs torchvision's RoI Align: the figure shows what quantisation costs
        report.update(passed=True, status="informative (RoI Pool graph vs torchvision's RoI Align model)",
                      failures=[], differences=failures)
    else:
        status = "failed" if failures else "not compared" if warns else "passed"
        report.update(passed=not failures, status=status, failures=failures)
    report["warnings"] = warns
    return report


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f} %"


def print_twostage_report(report: dict, console: Console) -> None:
    """One line of figures and the verdict."""
    masks = "" if report["mask_iou_mean"] is None else f", mean mask IoU {report['mask_iou_mean']:.4f} " \
                                                      f"({report['mask_pairs']} pairs)"
    console.print(f"fidelity ({report['compared']}, RoI {report['pooler']}): {report['images']} images, dets torch/"
                  f"onnx {report['torch_dets']}/{report['onnx_dets']}, matched @IoU{MATCH_IOU} "
                  f"{_percent(report['matched_share'])} (@IoU0.5 {_percent(report['matched_share_iou50'])}){masks}: "
                  f"{report['status']}", highlight=False)
    for key, f in report.get("sizes", {}).items():
        console.print(f"  at {key}: {f['images']} images, dets torch/onnx {f['torch_dets']}/{f['onnx_dets']}, "
                      f"matched {_percent(f['matched_share'])}" + ("" if f["mask_iou_mean"] is None else
                                                                    f", mask IoU {f['mask_iou_mean']:.4f}"),
                      highlight=False)
    for line in report.get("failures", []) + report.get("differences", []) + report.get("warnings", []):
        console.print(f"[yellow]{line}[/]", highlight=False)
