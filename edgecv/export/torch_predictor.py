"""PyTorch reference predictor: the same pre/post-processing as the runtime, PyTorch inference.

Used to evaluate PyTorch weights with exactly the pipeline an exported artifact gets, so that
"PyTorch mAP vs ONNX mAP" compares the models and nothing else. The detector's input
convention (``color_order``, ``resize`` letterbox | stretch, ``pad_value``, ``mean``/``std``) goes
into the same metadata the exporter writes, and :func:`~edgecv.runtimes.preprocess.preprocess_batch`
applies it, so both sides resize, order channels and map boxes back identically.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from edgecv.export.nms_reference import nms_reference
from edgecv.export.onnx_export import ExportOptions, build_metadata, resolve_options
from edgecv.metadata import DETECTION_OUTPUTS
from edgecv.models.base import LoadedDetector
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.postprocess import to_detections
from edgecv.runtimes.preprocess import preprocess_batch


class TorchPredictor:
    """``TorchPredictor(detector, opts)(images) -> list[Detections]`` (original-image pixels)."""

    def __init__(self, detector: LoadedDetector, opts: ExportOptions | None = None, threads: int | None = None) -> None:
        self.detector = detector
        self.opts = resolve_options(opts, detector)
        self.metadata = build_metadata(detector, self.opts)
        self.metadata.input_shape[0] = -1  # any batch
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        tensor, infos = preprocess_batch(list(images), self.metadata)
        boxes, scores = self.detector.module.eval()(torch.from_numpy(tensor))
        outputs = nms_reference(boxes, scores, max_det=self.opts.max_det, iou_threshold=self.opts.iou,
                                conf_threshold=self.opts.conf)
        return to_detections(dict(zip(DETECTION_OUTPUTS, outputs)), infos, tuple(self.detector.class_names))
