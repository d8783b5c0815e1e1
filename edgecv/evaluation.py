"""COCO box mAP of any predictor, computed by pycocotools (the reference COCO evaluation).

(mIoU of semantic label maps lives in :mod:`edgecv.evaluation_semantic`; its names are re-exported here.)

A *predictor* here is any callable ``list[BGR image] -> list[Detections]``:
:class:`edgecv.runtimes.Predictor` for artifacts, :class:`edgecv.export.torch_predictor.TorchPredictor`
for PyTorch weights. Both share the runtime's pre/post-processing, so the figures compare models,
not pipelines.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from rich.console import Console
from rich.progress import Progress

from edgecv.errors import ArtifactError, DatasetError, MissingDependencyError, OptionError
from edgecv.evaluation_semantic import (  # semantic mIoU, re-exported: callers import it from here
    MiouResult, confusion_matrix, evaluate_semantic, evaluate_semantic_artifact, is_semantic_artifact,
    miou_from_confusion, onnx_segmenter,
)

if TYPE_CHECKING:
    from edgecv.metadata import ArtifactMetadata

__all__ = [
    "EvalResult", "MiouResult", "Predict", "SyntheticCoco", "confusion_matrix", "evaluate", "evaluate_model",
    "evaluate_semantic", "evaluate_semantic_artifact", "is_semantic_artifact", "match_classes",
    "eval_size", "miou_from_confusion", "onnx_segmenter", "open_eval_data", "parse_class_map",
]

Predict = Callable[[Sequence[np.ndarray]], list]


@dataclass
class EvalResult:
    """COCO figures: ``map50_95`` (AP@[.5:.95]), ``map50`` (AP@.5), per-class AP@[.5:.95] of the boxes;
    ``mask_*``: the same for instance masks (pycocotools ``segm``), None when the model has no masks."""

    map50_95: float
    map50: float
    per_class: dict[str, float] = field(default_factory=dict)
    images: int = 0
    detections: int = 0
    ms_per_image: float = 0.0
    class_map: dict[str, str] = field(default_factory=dict)  # dataset category -> model class, where renamed
    ignored_classes: list[str] = field(default_factory=list)  # model classes the dataset has no category for
    mask_map50_95: float | None = None
    mask_map50: float | None = None
    mask_per_class: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class SyntheticCoco:
    """The synthetic shapes validation split as an in-memory COCO set (same interface as CocoFolder)."""

    def __init__(self, count: int = 500, imgsz: int | tuple[int, int] = 320, seed: int = 0, split: str = "val") -> None:
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


def _to_coco_results(dets, image_id: int, category_ids: list[int | None]) -> list[dict]:
    """COCO result entries of one image; detections of model classes without a category are dropped.

    With instance masks (``dets.masks``, :class:`~edgecv.runtimes.masks.InstanceMasks` in original
    pixels) each entry also carries ``segmentation``: the mask's COCO RLE document (compressed
    counts, image size), which pycocotools' ``segm`` evaluation reads as is.
    """
    masks = getattr(dets, "masks", None)
    documents = masks.to_rle() if masks is not None else [None] * len(dets.boxes)
    out = []
    for box, score, cls, document in zip(dets.boxes, dets.scores, dets.class_ids, documents):
        category = category_ids[int(cls)]
        if category is None:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        entry = {"image_id": image_id, "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1],
                 "score": float(score)}
        if document is not None:
            entry["segmentation"] = document
        out.append(entry)
    return out


def parse_class_map(spec: str | Path | dict[str, str] | None) -> dict[str, str]:
    """``DATASET=MODEL`` pairs: ``"person=circle,car=square"``, a JSON file ``{"person": "circle"}`` or a dict.

    Keys are dataset category names, values model class names. Raises :class:`OptionError` when
    malformed.
    """
    if spec is None or spec == "":
        return {}
    if isinstance(spec, dict):
        pairs = spec
    elif str(spec).endswith(".json") or Path(spec).is_file():
        path = Path(spec)
        if not path.is_file():
            raise OptionError(f"class map: expected a JSON file at {path}, found none")
        try:
            pairs = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise OptionError(f"class map {path}: expected a JSON object {{dataset name: model name}}, "
                              f"found invalid JSON ({exc})") from exc
    else:
        pairs = {}
        for item in filter(None, (part.strip() for part in str(spec).split(","))):
            dataset_name, sep, model_name = item.partition("=")
            if not sep or not dataset_name.strip() or not model_name.strip():
                raise OptionError(f"class map: expected DATASET=MODEL pairs separated by commas, found {item!r}")
            pairs[dataset_name.strip()] = model_name.strip()
    if not isinstance(pairs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
        raise OptionError(f"class map: expected {{dataset name: model name}} strings, found {pairs!r}")
    return dict(pairs)


def match_classes(model_names: Sequence[str], categories: Sequence[tuple[int, str]],
                  class_map: dict[str, str] | None = None) -> list[int | None]:
    """COCO category id for each model class index (``None``: the dataset has no such category).

    Categories are matched to model classes by name, never by position; ``class_map``
    (dataset name -> model name) renames the ones that differ. Every dataset category must find
    a model class, and no two the same one (:class:`DatasetError` with both lists otherwise).
    """
    class_map = dict(class_map or {})
    dataset_names = [name for _, name in categories]
    ids_seen = [category_id for category_id, _ in categories]
    if len(set(ids_seen)) != len(ids_seen):
        raise DatasetError(f"expected unique COCO category ids, found {sorted(ids_seen)}")
    unknown = [k for k in class_map if k not in dataset_names]
    bad_values = [v for v in class_map.values() if v not in model_names]
    if unknown or bad_values:
        raise DatasetError(f"class map: expected dataset categories [{', '.join(dataset_names)}] on the left and "
                           f"model classes [{', '.join(model_names)}] on the right, found unknown "
                           f"{', '.join(map(repr, unknown + bad_values))}")
    index = {name: i for i, name in enumerate(model_names)}
    ids: list[int | None] = [None] * len(model_names)
    taken: dict[str, str] = {}  # model class -> the dataset category mapped to it
    unmatched = []
    for category_id, name in categories:
        target = class_map.get(name, name)
        if target not in index:
            unmatched.append(name)
        elif target in taken:
            raise DatasetError(f"dataset categories {taken[target]!r} and {name!r} both map to model class "
                               f"{target!r}; expected one category per model class")
        else:
            ids[index[target]], taken[target] = category_id, name
    if unmatched:
        raise DatasetError(f"dataset categories [{', '.join(unmatched)}] match no model class by name: the model has "
                           f"[{', '.join(model_names)}], the dataset [{', '.join(dataset_names)}]; map them "
                           "explicitly with --class-map DATASET=MODEL,... (class_map=)")
    return ids


def _coco_eval(gt: dict, results: list[dict], class_names: list[str], iou_type: str = "bbox"
               ) -> tuple[float, float, dict[str, float]]:
    """``(AP@[.5:.95], AP@.5, per-class AP@[.5:.95])`` of ``results`` against ``gt`` for ``iou_type``
    ``"bbox"`` or ``"segm"`` (then every ground truth and result entry needs a ``segmentation``)."""
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
        if iou_type == "segm":  # without a bbox, loadRes takes each area from its mask (COCO's segm convention)
            results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, name in enumerate(class_names):
        p = precision[:, :, k, 0, -1]
        per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
    return float(evaluator.stats[0]), float(evaluator.stats[1]), per_class


def evaluate(predict: Predict, data, *, class_names: list[str] | None = None,
             class_map: dict[str, str] | None = None, batch: int = 8, show_progress: bool = True,
             description: str = "evaluating") -> EvalResult:
    """COCO mAP of ``predict`` on ``data`` (a :class:`~edgecv.data.coco.CocoFolder` or :class:`SyntheticCoco`).

    ``class_names`` are the model's (default: the dataset's own, in category id order); dataset
    categories are matched to them by name, with ``class_map`` (dataset name -> model name) for
    names that differ (see :func:`match_classes`). Detections of model classes the dataset lacks
    are left out and listed in ``ignored_classes``.
    """
    model_names = list(class_names) if class_names is not None else list(data.class_names)
    category_ids = match_classes(model_names, list(zip(data.category_ids, data.class_names)), class_map)
    entries = data.gt["images"]
    results: list[dict] = []
    elapsed, saw_masks = 0.0, False
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task(description, total=len(entries))
        for start in range(0, len(entries), batch):
            chunk = entries[start : start + batch]
            images = [data.read(e) for e in chunk]
            tic = time.perf_counter()
            dets = predict(images)
            elapsed += time.perf_counter() - tic
            for entry, d in zip(chunk, dets):
                saw_masks = saw_masks or getattr(d, "masks", None) is not None
                results.extend(_to_coco_results(d, entry["id"], category_ids))
            progress.advance(task, len(chunk))
    map50_95, map50, per_class = _coco_eval(data.gt, results, data.class_names)
    result = EvalResult(map50_95=map50_95, map50=map50, per_class=per_class, images=len(entries),
                        detections=len(results), ms_per_image=1000 * elapsed / len(entries),
                        class_map={k: v for k, v in (class_map or {}).items() if k != v},
                        ignored_classes=[n for n, c in zip(model_names, category_ids) if c is None])
    if saw_masks:
        _add_mask_map(result, data, results)
    return result


def _add_mask_map(result: EvalResult, data, results: list[dict]) -> None:
    """Fill ``result.mask_*`` with the ``segm`` figures, when every ground-truth annotation has a
    ``segmentation`` (RLE or polygons); a box-only dataset leaves them None (box mAP still holds)."""
    if any("segmentation" not in a for a in data.gt["annotations"]):
        return
    result.mask_map50_95, result.mask_map50, result.mask_per_class = _coco_eval(
        data.gt, results, data.class_names, "segm")


def eval_size(meta: ArtifactMetadata) -> int | tuple[int, int]:
    """The size synthetic evaluation scenes of an artifact are drawn at: its letterbox side when square,
    its letterbox ``(H, W)`` when not (a ``--imgsz 640x480`` export: scenes shaped like its frames, not
    squares padded on two sides), or for a ``--frame`` artifact (which takes camera frames of exactly
    one size) that frame ``(H, W)``."""
    from edgecv.runtimes.preprocess import graph_frame

    frame = graph_frame(meta)
    if frame:
        return frame
    h, w = (int(v) for v in meta.letterbox_size)
    return h if h == w else (h, w)


def open_eval_data(data: str | Path, *, count: int = 500, imgsz: int | tuple[int, int] = 320):
    """``"shapes"`` → :class:`SyntheticCoco` of ``count`` scenes at ``imgsz`` (a side or ``(H, W)``);
    else a COCO folder/json."""
    if str(data) == "shapes":
        return SyntheticCoco(count, imgsz)
    from edgecv.data.coco import CocoFolder

    return CocoFolder.open(data)


def evaluate_model(model: str | Path, data: str | Path = "shapes", *, count: int = 500, imgsz: int | None = None,
                   conf: float = 0.001, iou: float = 0.6, family: str = "yolo", trust: bool = False,
                   class_map: str | Path | dict[str, str] | None = None, console: Console | None = None
                   ) -> EvalResult:
    """COCO mAP of an artifact (``.onnx``: its own thresholds) or PyTorch weights (``.pt`` or a family
    name for its demo weights: evaluated with ``conf``/``iou`` through the runtime's pre/post-processing).

    With ``data="shapes"`` the scenes are drawn at the model's input size. Dataset categories are
    matched to model classes by name; ``class_map`` (see :func:`parse_class_map`) maps the rest.
    """
    console = console or Console()
    mapping = parse_class_map(class_map)
    if str(model).endswith(".onnx"):
        predictor, meta, size = _artifact_predictor(model, console)
    else:
        predictor, meta, size = _torch_predictor(model, family, trust, imgsz, conf, iou)
    dataset = open_eval_data(data, count=count, imgsz=size)
    result = evaluate(predictor, dataset, class_names=meta.class_names, class_map=mapping)
    if [n for n in result.ignored_classes if n != "__background__"]:  # torchvision's class 0 is never predicted
        console.print(f"[yellow]note:[/] the dataset has no category for model classes "
                      f"{', '.join(result.ignored_classes)}; their detections are not scored")
    return result


def _artifact_predictor(model: str | Path, console: Console
                        ) -> tuple[Predict, ArtifactMetadata, int | tuple[int, int]]:
    """``(Predictor, its metadata, input size)`` of a detect / segment ``.onnx`` artifact.

    Raises:
        ArtifactError: a semantic artifact (label maps have no boxes to score).
    """
    from edgecv.runtimes import Predictor

    predictor = Predictor(model)
    if predictor.task.name == "semantic":  # a SemanticMap has no boxes to score
        predictor.close()
        raise ArtifactError(f"{model}: expected a detect or segment artifact for box mAP, found task 'semantic' "
                            "(label maps need mIoU, which this evaluation does not compute)")
    meta = predictor.metadata
    if meta.conf_threshold > 0.01:
        console.print(f"[yellow]note:[/] the artifact filters scores below {meta.conf_threshold}; mAP is "
                      "measured at that threshold (export with --conf 0.001 for the standard COCO figure)")
    return predictor, meta, eval_size(meta)


def _torch_predictor(model: str | Path, family: str, trust: bool, imgsz: int | None, conf: float, iou: float
                     ) -> tuple[Predict, ArtifactMetadata, int | tuple[int, int]]:
    """``(predictor, its metadata, input size)`` of PyTorch weights: a ``.pt`` of ``family`` or a family
    name for its demo weights, run through the runtime's pre/post-processing at ``conf`` / ``iou``."""
    from edgecv.export.onnx_export import ExportOptions
    from edgecv.export.torch_predictor import TorchPredictor
    from edgecv.models import LOADERS, load_for_export

    weights = None if str(model) in LOADERS else model
    detector = load_for_export(str(model) if weights is None else family, weights, trust=trust)
    if "builder" in detector.extra:  # two-stage (tv_twostage): its export graph run in PyTorch, masks pasted
        from edgecv.export.twostage_predictor import predictor_for

        predictor = predictor_for(detector, imgsz, conf, iou)
        return predictor, predictor.metadata, predictor.cfg.imgsz
    predictor = TorchPredictor(detector, ExportOptions(imgsz=imgsz, conf=conf, iou=iou, max_det=100))
    return predictor, predictor.metadata, predictor.opts.imgsz
