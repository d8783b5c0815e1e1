"""COCO box mAP of any predictor, computed by pycocotools (the reference COCO evaluation).

A *predictor* here is any callable ``list[BGR image] -> list[Detections]``:
:class:`edgecv.runtimes.Predictor` for artifacts, :class:`edgecv.export.torch_predictor.TorchPredictor`
for PyTorch weights. Both share the runtime's pre/post-processing, so the figures compare models,
not pipelines.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from rich.console import Console
from rich.progress import Progress

from edgecv.errors import DatasetError, MissingDependencyError

Predict = Callable[[Sequence[np.ndarray]], list]


@dataclass
class EvalResult:
    """COCO figures: ``map50_95`` (AP@[.5:.95]), ``map50`` (AP@.5), per-class AP@[.5:.95]."""

    map50_95: float
    map50: float
    per_class: dict[str, float] = field(default_factory=dict)
    images: int = 0
    detections: int = 0
    ms_per_image: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class SyntheticCoco:
    """The synthetic shapes validation split as an in-memory COCO set (same interface as CocoFolder)."""

    def __init__(self, count: int = 500, imgsz: int = 320, seed: int = 0, split: str = "val") -> None:
        from edgecv.data.coco import coco_dict
        from edgecv.data.synthetic import ShapesDataset

        self.shapes = ShapesDataset(split, count, imgsz, seed=seed)
        samples = [self.shapes[i] for i in range(count)]
        self._images = [s.image for s in samples]
        self.gt = coco_dict(samples, list(self.shapes.class_names), [f"{i:06d}.png" for i in range(count)])
        self.class_names = list(self.shapes.class_names)
        self.category_ids = list(range(1, len(self.class_names) + 1))

    def read(self, entry: dict) -> np.ndarray:
        return self._images[entry["id"] - 1]


def _to_coco_results(dets, image_id: int, category_ids: list[int]) -> list[dict]:
    out = []
    for box, score, cls in zip(dets.boxes, dets.scores, dets.class_ids):
        x1, y1, x2, y2 = (float(v) for v in box)
        out.append({"image_id": image_id, "category_id": category_ids[int(cls)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})
    return out


def _coco_eval(gt: dict, results: list[dict], class_names: list[str]) -> tuple[float, float, dict[str, float]]:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise MissingDependencyError("evaluation needs pycocotools: pip install 'edgecv[eval]'") from exc
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if not results:
            return 0.0, 0.0, {n: 0.0 for n in class_names}
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, name in enumerate(class_names):
        p = precision[:, :, k, 0, -1]
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
    return float(evaluator.stats[0]), float(evaluator.stats[1]), per_class


def evaluate(predict: Predict, data, *, class_names: list[str] | None = None, batch: int = 8,
             show_progress: bool = True, description: str = "evaluating") -> EvalResult:
    """COCO mAP of ``predict`` on ``data`` (a :class:`~edgecv.data.coco.CocoFolder` or :class:`SyntheticCoco`).

    ``class_names`` are the model's; their count must equal the dataset's category count.
    """
    if class_names is not None and len(class_names) != len(data.class_names):
        raise DatasetError(f"the model has {len(class_names)} classes ({', '.join(class_names)}), the dataset "
                           f"{len(data.class_names)} ({', '.join(data.class_names)})")
    entries = data.gt["images"]
    results: list[dict] = []
    elapsed = 0.0
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task(description, total=len(entries))
        for start in range(0, len(entries), batch):
            chunk = entries[start : start + batch]
            images = [data.read(e) for e in chunk]
            tic = time.perf_counter()
            dets = predict(images)
            elapsed += time.perf_counter() - tic
            for entry, d in zip(chunk, dets):
                results.extend(_to_coco_results(d, entry["id"], data.category_ids))
            progress.advance(task, len(chunk))
    map50_95, map50, per_class = _coco_eval(data.gt, results, data.class_names)
    return EvalResult(map50_95=map50_95, map50=map50, per_class=per_class, images=len(entries),
                      detections=len(results), ms_per_image=1000 * elapsed / len(entries))


def open_eval_data(data: str | Path, *, count: int = 500, imgsz: int = 320):
    """``"shapes"`` → :class:`SyntheticCoco` of ``count`` scenes at ``imgsz``; else a COCO folder/json."""
    if str(data) == "shapes":
        return SyntheticCoco(count, imgsz)
    from edgecv.data.coco import CocoFolder

    return CocoFolder.open(data)


def evaluate_model(model: str | Path, data: str | Path = "shapes", *, count: int = 500, imgsz: int | None = None,
                   conf: float = 0.001, iou: float = 0.6, family: str = "yolo", trust: bool = False,
                   console: Console | None = None) -> EvalResult:
    """COCO mAP of an artifact (``.onnx``: its own thresholds) or PyTorch weights (``.pt`` or a family
    name for its demo weights: evaluated with ``conf``/``iou`` through the runtime's pre/post-processing).

    With ``data="shapes"`` the scenes are drawn at the model's input size.
    """
    console = console or Console()
    if str(model).endswith(".onnx"):
        from edgecv.runtimes import Predictor

        predictor = Predictor(model)
        meta = predictor.metadata
        if meta.conf_threshold > 0.01:
            console.print(f"[yellow]note:[/] the artifact filters scores below {meta.conf_threshold}; mAP is "
                          "measured at that threshold (export with --conf 0.001 for the standard COCO figure)")
        size = meta.letterbox_size[0]
    else:
        from edgecv.export.onnx_export import ExportOptions
        from edgecv.export.torch_predictor import TorchPredictor
        from edgecv.models import LOADERS, load_for_export

        weights = None if str(model) in LOADERS else model
        detector = load_for_export(str(model) if weights is None else family, weights, trust=trust)
        predictor = TorchPredictor(detector, ExportOptions(imgsz=imgsz, conf=conf, iou=iou, max_det=100))
        meta = predictor.metadata
        size = predictor.opts.imgsz
    dataset = open_eval_data(data, count=count, imgsz=size)
    return evaluate(predictor, dataset, class_names=meta.class_names)
