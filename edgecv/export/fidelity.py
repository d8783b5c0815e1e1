"""Fidelity check of an export: PyTorch vs ONNX Runtime on real images.

Two levels, at the export size and (for dynamic exports) at a second, non-square size that would
expose shapes baked into the graph:

* raw outputs: ``raw_boxes`` (x1,y1,x2,y2 input pixels) and ``raw_scores`` (probabilities) of
  PyTorch vs the pre-NMS ONNX graph, on the same preprocessed tensor. Every element must satisfy
  ``|onnx - torch| <= atol * scale + rtol * |torch|`` (Polygraphy's atol + rtol form, with
  PyTorch as the reference). ``scale`` is the input size ``max(H, W)`` for boxes and 1 for scores
  (probabilities), so one ``atol`` means "a fraction of the output's range" for both. Real models
  differ from their own export by a few thousandths of a pixel (BatchNorm folded into the
  convolutions, other summation orders); an absolute 1e-3 px limit rejected them.
* detections: the final graph's detections vs PyTorch + the reference NMS, matched greedily by
  class and IoU >= :data:`MATCH_IOU` (or, for degenerate boxes, equal coordinates within the raw
  tolerance); the share matched is over the larger of the two counts and
  must reach ``match``. When neither side detects anything at a size (random weights, a
  2-epoch checkpoint, images without the model's objects) there is nothing to match: that
  criterion is reported ``"not compared"`` with a warning, never as passed.

Preprocessing is the runtime's own (:func:`edgecv.runtimes.preprocess.preprocess_batch`). The
images are synthetic scenes unless the caller gives its own (:func:`load_check_images`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from edgecv.errors import OptionError, SourceError
from edgecv.export.nms_reference import nms_reference
from edgecv.metadata import ArtifactMetadata
from edgecv.export.uint8_input import network_input_fn
from edgecv.runtimes.preprocess import network_tensor, preprocess_batch

MATCH_IOU = 0.99
#: At most this many images of a ``check_images`` folder are used (evenly spaced in name order):
#: each image runs PyTorch and two ONNX Runtime sessions.
CHECK_IMAGES_MAX = 32
COMPARED = "PyTorch vs ONNX Runtime"
NOT_COMPARED = "not compared"


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria of the fidelity check (``ExportOptions.fidelity_*``, ``--fidelity-*``).

    ``atol`` is a fraction of each output's range (input size in pixels for boxes, 1 for
    scores); ``rtol`` multiplies ``|torch value|``; ``match`` is the share of detections that
    must match (same class, IoU >= :data:`MATCH_IOU`).
    """

    atol: float = 1e-4
    rtol: float = 1e-4
    match: float = 0.99

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise OptionError(f"fidelity {name}: expected a finite number >= 0, found {value!r}")
        if not (isinstance(self.match, (int, float)) and 0.0 <= self.match <= 1.0):
            raise OptionError(f"fidelity match: expected a share in [0, 1], found {self.match!r}")

    def as_dict(self, size: tuple[int, int]) -> dict:
        """The tolerance with the absolute box term in pixels at ``size`` (for the report)."""
        return {"atol": self.atol, "rtol": self.rtol, "match": self.match,
                "boxes_atol_px": self.atol * max(size), "scores_atol": self.atol}


def default_images(imgsz: int | tuple[int, int], count: int = 8) -> list[np.ndarray]:
    """Synthetic validation scenes (BGR uint8) used when the caller names no images; ``imgsz`` is a
    side (square) or ``(h, w)`` (a non-square export is checked on scenes of its own shape)."""
    from edgecv.data.synthetic import ShapesDataset

    shapes = ShapesDataset("val", count, imgsz, seed=1234)
    return [shapes[i].image for i in range(count)]


def mixed_images(imgsz: int | tuple[int, int], many: int = 6) -> list[np.ndarray]:
    """``many`` synthetic scenes with up to 8 objects, one with a single object and one empty background
    (BGR uint8, ``imgsz`` a side or ``(h, w)``): the many / few / zero objects the check of a family
    with an upstream reference uses."""
    from edgecv.data.synthetic import ShapesDataset

    one = ShapesDataset("val", 1, imgsz, seed=4321, max_objects=1)[0].image
    empty = np.full((*one.shape[:2], 3), 127, np.uint8)
    return [*default_images(imgsz, many), one, empty]


def load_check_images(folder: str | os.PathLike[str], limit: int = CHECK_IMAGES_MAX) -> list[np.ndarray]:
    """BGR uint8 images of ``folder`` (recursive) for the check: at most ``limit``, evenly spaced.

    Raises:
        SourceError: the folder is missing, is a file, or holds no decodable image.
    """
    from edgecv.runtimes.sources import ImageFiles, iter_source

    path = Path(folder)
    if not path.exists():
        raise SourceError(f"--check-images: expected a folder of images, found no such path {path}")
    if not path.is_dir():
        raise SourceError(f"--check-images: expected a folder of images, found the file {path}")
    try:
        source = iter_source(path)
    except SourceError as exc:  # a folder without image files: say which option pointed at it
        raise SourceError(f"--check-images: {exc}") from exc
    if not isinstance(source, ImageFiles):  # a directory opens as a folder source; anything else is a bug here
        raise SourceError(f"--check-images: expected {path} to open as a folder of images, found a {source.kind} source")
    picks = np.unique(np.linspace(0, len(source.paths) - 1, min(limit, len(source.paths))).round().astype(int))
    chosen = ImageFiles([source.paths[i] for i in picks], path, "folder", str(path))
    images = [frame for _, frame in chosen]
    if not images:
        raise SourceError(f"--check-images: expected decodable images in {path}, found {len(chosen.paths)} "
                          f"files OpenCV cannot decode (e.g. {chosen.skipped[0].path})")
    return images


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of x1,y1,x2,y2 boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_detections(boxes_a: np.ndarray, cls_a: np.ndarray, boxes_b: np.ndarray, cls_b: np.ndarray,
                     iou: float = MATCH_IOU, atol: float = 0.0, rtol: float = 0.0) -> int:
    """Number of greedy one-to-one matches with the same class and IoU >= ``iou``.

    ``a`` is the reference. Boxes whose every coordinate is within ``atol + rtol * |a|`` pixels
    also match: a degenerate (zero-area) or one-pixel box has a meaningless IoU, but the same
    coordinates within the raw-output tolerance are the same box.
    """
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return 0
    similar = box_iou(boxes_a, boxes_b)
    close = np.all(np.abs(boxes_a[:, None] - boxes_b[None]) <= atol + rtol * np.abs(boxes_a[:, None]), axis=2)
    similar = np.where(close, 1.0, similar) * (cls_a[:, None] == cls_b[None, :])
    matched = 0
    for _ in range(min(len(boxes_a), len(boxes_b))):
        i, j = np.unravel_index(np.argmax(similar), similar.shape)
        if similar[i, j] < iou:
            break
        matched += 1
        similar[i, :] = -1
        similar[:, j] = -1
    return matched


def tolerance_used(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float) -> float:
    """``max(|got - ref| / (atol + rtol * |ref|))``: <= 1 means every element is within tolerance.

    With ``atol = rtol = 0`` any difference is infinitely over (and none is 0).
    """
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    bound = atol + rtol * np.abs(ref.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / bound)
    return float(ratio.max()) if ratio.size else 0.0


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _compare_at(module: nn.Module, raw: ort.InferenceSession, final: ort.InferenceSession,
                metadata: ArtifactMetadata, images: list[np.ndarray], tol: Tolerance, reference=None,
                to_network=None) -> dict:  # noqa: ANN001 (to_network: see uint8_input.network_input_fn)
    """Run both sides on ``images`` at the metadata's letterbox size, in chunks of the fixed batch.

    The detections' reference is ``reference`` (the upstream model, see
    :attr:`edgecv.models.base.LoadedDetector.reference`) when given, else ``module`` + the reference NMS.
    """
    batch = metadata.input_shape[0] if metadata.input_shape[0] > 0 else len(images)
    box_atol = tol.atol * max(metadata.letterbox_size)
    err_boxes = err_scores = used_boxes = used_scores = 0.0
    matched = torch_dets = onnx_dets = pairs = ties = 0
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        tensor, _ = preprocess_batch(chunk, metadata, batch_size=batch)
        # what PyTorch gets: a uint8 artifact normalises (and may letterbox) in its graph
        network = network_tensor(tensor, metadata) if to_network is None else to_network(tensor)
        with torch.no_grad():
            t_boxes, t_scores = (t.numpy() for t in module(torch.from_numpy(network)))
        o_boxes, o_scores = raw.run(None, {metadata.input_name: tensor})[:2]
        err_boxes = max(err_boxes, float(np.abs(t_boxes - o_boxes).max()))
        err_scores = max(err_scores, float(np.abs(t_scores - o_scores).max()))
        used_boxes = max(used_boxes, tolerance_used(o_boxes, t_boxes, box_atol, tol.rtol))
        used_scores = max(used_scores, tolerance_used(o_scores, t_scores, tol.atol, tol.rtol))
        thresholds = {"max_det": metadata.max_det, "iou_threshold": metadata.iou_threshold,
                      "conf_threshold": metadata.conf_threshold}
        ref = nms_reference(t_boxes, t_scores, **thresholds) if reference is None else reference(network, **thresholds)
        got = final.run(None, {metadata.input_name: tensor})
        for b in range(len(chunk)):
            n_ref, n_got = int(ref[0][b, 0]), int(got[0][b, 0])
            torch_dets, onnx_dets = torch_dets + n_ref, onnx_dets + n_got
            pairs += max(n_ref, n_got)
            if reference is None:
                matched += match_detections(ref[1][b, :n_ref], ref[3][b, :n_ref], got[1][b, :n_got],
                                            got[3][b, :n_got], atol=box_atol, rtol=tol.rtol)
                continue
            by_iou, by_tie = match_with_ties([r[b, :n_ref] for r in ref[1:]], [g[b, :n_got] for g in got[1:]],
                                             box_atol, tol)
            matched, ties = matched + by_iou + by_tie, ties + by_tie
    figures = {"max_abs_boxes": err_boxes, "max_abs_scores": err_scores, "boxes_tolerance_used": used_boxes,
               "scores_tolerance_used": used_scores, "torch_dets": torch_dets, "onnx_dets": onnx_dets,
               "matched": matched / pairs if pairs else None}
    if reference is not None:
        figures["tie_matched"] = ties  # included in "matched"
    return figures


def match_with_ties(ref: list[np.ndarray], got: list[np.ndarray], box_atol: float, tol: Tolerance
                    ) -> tuple[int, int]:
    """``(matched by IoU, matched as ties)`` between ``ref`` and ``got`` = ``[boxes [n,4], scores [n], classes [n]]``.

    After the IoU matching of :func:`match_detections`, a left-over reference detection pairs with a
    left-over detection of the same class whose score is equal within the score tolerance: boxes with
    tied scores (flat image regions give many) are kept in an arbitrary order by any NMS, so which of
    them survives differs between two correct implementations. Pairs are made one-to-one, closest
    scores first.
    """
    (boxes_a, scores_a, cls_a), (boxes_b, scores_b, cls_b) = ref, got
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return 0, 0
    similar = box_iou(boxes_a, boxes_b)
    close = np.all(np.abs(boxes_a[:, None] - boxes_b[None]) <= box_atol + tol.rtol * np.abs(boxes_a[:, None]), axis=2)
    similar = np.where(close, 1.0, similar) * (cls_a[:, None] == cls_b[None, :])
    used_a, used_b = _greedy(similar, MATCH_IOU)
    gap = np.abs(scores_a[:, None] - scores_b[None, :])
    tied = (gap <= tol.atol + tol.rtol * np.abs(scores_a[:, None])) & (cls_a[:, None] == cls_b[None, :])
    tied[used_a, :], tied[:, used_b] = False, False
    ties = _greedy(np.where(tied, 1.0 - gap, -1.0), 0.0)[0]
    return len(used_a), len(ties)


def _greedy(similar: np.ndarray, threshold: float) -> tuple[list[int], list[int]]:
    """Rows and columns of greedy one-to-one pairs, best ``similar`` first, while it is >= ``threshold``."""
    similar = similar.copy()
    rows: list[int] = []
    cols: list[int] = []
    for _ in range(min(similar.shape)):
        i, j = np.unravel_index(np.argmax(similar), similar.shape)
        if similar[i, j] < threshold:
            break
        rows.append(int(i))
        cols.append(int(j))
        similar[i, :] = -1
        similar[:, j] = -1
    return rows, cols


def _judge(key: str, figures: dict, tol: Tolerance, size: tuple[int, int]) -> tuple[dict, list[str], list[str]]:
    """Status of each criterion at one size, plus failure and warning lines (each naming its flag)."""
    status, failures, warns = {}, [], []
    for output, item, unit, atol in (("boxes", "box", " px", tol.atol * max(size)), ("scores", "score", "", tol.atol)):
        used = figures[f"{output}_tolerance_used"]
        status[f"raw_{output}"] = "passed" if used <= 1.0 else "failed"
        if used > 1.0:
            failures.append(
                f"{key}: max_abs_{output} = {figures[f'max_abs_{output}']:.3g}{unit}, {used:.3g}x the tolerance "
                f"|Δ| <= {atol:.3g}{unit} + {tol.rtol:g}·|{item}| (relax with --fidelity-atol / --fidelity-rtol, "
                "ExportOptions.fidelity_atol / fidelity_rtol)")
    if figures["matched"] is None:
        status["detections"] = NOT_COMPARED
        warns.append(f"{key}: no detections above conf {figures.get('conf', '?')} on either side "
                     f"({figures['images']} images): the detection criterion compared nothing; only the raw "
                     "outputs were checked (use images with the model's objects: --check-images folder/)")
    elif figures["matched"] < tol.match:
        status["detections"] = "failed"
        failures.append(
            f"{key}: matched = {100 * figures['matched']:.1f} % of detections (torch {figures['torch_dets']}, "
            f"onnx {figures['onnx_dets']}) at IoU >= {MATCH_IOU} with the same class, needed "
            f"{100 * tol.match:.1f} % (relax with --fidelity-match, ExportOptions.fidelity_match)")
    else:
        status["detections"] = "passed"
    return status, failures, warns


def check_fidelity(module: nn.Module, raw_model: onnx.ModelProto, final_model: onnx.ModelProto,
                   metadata: ArtifactMetadata, images: list[np.ndarray], tolerance: Tolerance | None = None,
                   images_source: str = "synthetic shapes", reference=None) -> dict:
    """Compare PyTorch with both ONNX graphs on ``images`` (BGR uint8); returns a JSON-able report.

    ``reference``: the upstream model whose final detections the final graph must match (e.g.
    torchvision's own detector, see :attr:`edgecv.models.base.LoadedDetector.reference`); None:
    ``module``'s raw outputs through :func:`~edgecv.export.nms_reference.nms_reference`. The raw
    outputs are always compared with ``module``.

    Report keys: ``compared``, ``precision`` (of the graph checked), ``images``, ``images_source``,
    ``match_iou``, ``tolerance``, ``sizes`` (per ``HxW``: figures and ``checks``, each criterion
    ``passed`` / ``failed`` / ``not compared``), ``warnings``, ``failures``, ``passed`` (no
    failure) and ``status`` (``passed``, ``passed (raw outputs only)`` or ``failed``).
    """
    tol = tolerance or Tolerance()
    raw, final = _session(raw_model), _session(final_model)
    h, w = metadata.letterbox_size
    sizes = [(h, w)]
    if metadata.dynamic:
        sizes.append((max(metadata.stride, round(h * 0.75 / metadata.stride) * metadata.stride), w))
    report: dict = {"compared": COMPARED, "precision": metadata.precision, "images": len(images),
                    "images_source": images_source, "match_iou": MATCH_IOU, "tolerance": tol.as_dict((h, w)),
                    "sizes": {}}
    if reference is not None:
        report["reference"] = f"{getattr(reference, 'name', type(reference).__name__)} (upstream model, eval)"
    failures: list[str] = []
    warns: list[str] = []
    for size in sizes:
        at = dataclasses.replace(metadata, letterbox_size=list(size),
                                 input_shape=list(metadata.input_shape))  # static: one size; dynamic: all -1
        figures = _compare_at(module.eval(), raw, final, at, images, tol, reference,
                              network_input_fn(raw_model, metadata))
        key = f"{size[0]}x{size[1]}"
        status, bad, note = _judge(key, {**figures, "images": len(images), "conf": metadata.conf_threshold}, tol, size)
        report["sizes"][key] = {**figures, "checks": status}
        failures += bad
        warns += note
    report["failures"] = failures
    report["warnings"] = warns
    report["passed"] = not failures
    report["status"] = "failed" if failures else "passed (raw outputs only)" if warns else "passed"
    return report


def print_report(report: dict, console: Console) -> None:
    """Short table of the fidelity figures, then the verdict and any warning."""
    tol = report["tolerance"]
    table = Table(title=f"Fidelity: {report.get('compared', COMPARED)} ({report['images']} images, "
                        f"{report.get('images_source', 'synthetic shapes')})")
    for column in ("size", "max |Δ| boxes (px)", "max |Δ| scores", "tolerance used", "dets torch/onnx",
                   f"matched @IoU{MATCH_IOU}"):
        table.add_column(column)
    for size, f in report["sizes"].items():
        used = max(f["boxes_tolerance_used"], f["scores_tolerance_used"])
        matched = NOT_COMPARED if f["matched"] is None else f"{100 * f['matched']:.1f} %"
        table.add_row(size, f"{f['max_abs_boxes']:.2e}", f"{f['max_abs_scores']:.2e}", f"{100 * used:.1f} %",
                      f"{f['torch_dets']}/{f['onnx_dets']}", matched)
    console.print(table)
    console.print(f"tolerance: |Δ| <= atol·scale + rtol·|torch| with atol {tol['atol']:g} (boxes: "
                  f"{tol['boxes_atol_px']:.3g} px), rtol {tol['rtol']:g}; detections matched >= "
                  f"{100 * tol['match']:.1f} %", highlight=False)
    for line in report.get("warnings", []):
        console.print(f"[yellow]warning:[/] {line}", highlight=False)
    if not report["passed"]:
        console.print("[red]fidelity check failed:[/] " + "; ".join(report["failures"]), highlight=False)
    elif report.get("warnings"):
        console.print("[yellow]fidelity check passed on raw outputs only[/] (detections not compared)")
    else:
        console.print("[green]fidelity check passed[/]")
