"""mIoU of semantic segmentation label maps (the counterpart of :mod:`edgecv.evaluation`'s COCO box mAP).

A *segmenter* is any callable ``list[BGR uint8 image] -> list[label map int [H, W]]`` at each
image's size; :func:`onnx_segmenter` makes one from a semantic ONNX artifact. :func:`evaluate_semantic`
scores it on the synthetic shapes split (0 = background, ``k + 1`` = shape class k) through a
confusion matrix. :mod:`edgecv.evaluation` re-exports every name here.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgecv.errors import OptionError


@dataclass
class MiouResult:
    """Mean IoU of label maps: ``miou`` over the classes present in the ground truth or the
    predictions (a class absent from both is left out), ``per_class`` IoU, ``pixel_accuracy``."""

    miou: float
    per_class: dict[str, float] = field(default_factory=dict)
    pixel_accuracy: float = 0.0
    images: int = 0
    ms_per_image: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def confusion_matrix(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion counts int64 [C,C] (rows: truth, columns: prediction) of two integer label maps
    of the same shape; labels outside ``[0, C)`` in ``truth`` are ignored (e.g. 255 = void)."""
    if pred.shape != truth.shape:
        raise OptionError(f"label maps: expected equal shapes, found prediction {pred.shape} vs truth {truth.shape}")
    keep = (truth >= 0) & (truth < num_classes)
    index = truth[keep].astype(np.int64) * num_classes + np.clip(pred[keep].astype(np.int64), 0, num_classes - 1)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def miou_from_confusion(confusion: np.ndarray, class_names: Sequence[str]) -> MiouResult:
    """IoU per class = TP / (TP + FP + FN) from a confusion matrix; mean over classes seen."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    seen = union > 0
    iou = np.where(seen, tp / np.maximum(union, 1), 0.0)
    per_class = {name: float(iou[i]) for i, name in enumerate(class_names) if seen[i]}
    total = confusion.sum()
    return MiouResult(miou=float(iou[seen].mean()) if seen.any() else 0.0, per_class=per_class,
                      pixel_accuracy=float(tp.sum() / total) if total else 0.0)


def evaluate_semantic(segment: Callable[[Sequence[np.ndarray]], list[np.ndarray]], class_names: Sequence[str],
                      *, count: int = 200, imgsz: int | tuple[int, int] = 128, seed: int = 0, batch: int = 8,
                      split: str = "val") -> MiouResult:
    """mIoU of ``segment`` (BGR uint8 images → label maps int [H,W] at each image's size, class
    index into ``class_names``) on the synthetic split, whose truth is 0 = background and
    ``k + 1`` = shape class k: ``class_names`` must follow that order (as edgecv's U-Net does).
    """
    from edgecv.data.synthetic import ShapesDataset

    shapes = ShapesDataset(split, count, imgsz, seed=seed)
    confusion = np.zeros((len(class_names), len(class_names)), np.int64)
    seconds = 0.0
    for start in range(0, count, batch):
        samples = [shapes[i] for i in range(start, min(count, start + batch))]
        begin = time.perf_counter()
        maps = segment([s.image for s in samples])
        seconds += time.perf_counter() - begin
        for label_map, sample in zip(maps, samples):
            confusion += confusion_matrix(np.asarray(label_map), sample.semantic, len(class_names))
    result = miou_from_confusion(confusion, class_names)
    result.images, result.ms_per_image = count, 1000 * seconds / count
    return result


def onnx_segmenter(model, metadata) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """``BGR images -> label maps at each image's size`` for a semantic ONNX graph (path or
    ModelProto) with ONNX Runtime on the CPU and the runtime's pre-processing."""
    import onnxruntime as ort

    from edgecv.runtimes.preprocess import preprocess_batch
    from edgecv.runtimes.tasks.semantic import labels_to_original

    graph = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    fixed = metadata.input_shape[0] if metadata.input_shape[0] > 0 else None

    def segment(images: Sequence[np.ndarray]) -> list[np.ndarray]:
        maps = []
        for start in range(0, len(images), fixed or len(images)):
            chunk = list(images[start : start + (fixed or len(images))])
            tensor, infos = preprocess_batch(chunk, metadata, batch_size=fixed)
            labels = session.run(["labels"], {metadata.input_name: tensor})[0]
            maps += [labels_to_original(labels[i], info) for i, info in enumerate(infos)]
        return maps

    return segment


def evaluate_semantic_artifact(path: str | Path, *, count: int = 200, imgsz: int | None = None) -> MiouResult:
    """mIoU of a semantic artifact (.onnx, task ``semantic``) on the synthetic ``val`` split drawn at
    ``imgsz`` (default: the artifact's input size)."""
    import onnx

    from edgecv.calibration.api import read_metadata
    from edgecv.evaluation import eval_size  # edgecv.evaluation imports this module at load

    model = onnx.load(str(path))
    meta = read_metadata(model, str(path))
    if meta.task != "semantic":
        raise OptionError(f"{path}: expected a semantic segmentation artifact, found task {meta.task!r}")
    return evaluate_semantic(onnx_segmenter(model, meta), meta.class_names, count=count,
                             imgsz=imgsz or eval_size(meta))


def is_semantic_artifact(model: str | Path) -> bool:
    """Whether ``model`` names an existing .onnx artifact whose metadata says task ``semantic``."""
    path = Path(model)
    if path.suffix != ".onnx" or not path.is_file():
        return False
    import onnx

    from edgecv.calibration.api import read_metadata

    return read_metadata(onnx.load(str(path), load_external_data=False), str(path)).task == "semantic"
