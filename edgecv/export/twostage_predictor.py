"""PyTorch predictor of a two-stage model (Faster / Mask R-CNN) with the runtime's pre/post-processing.

The model runs as :class:`~edgecv.models.tv_twostage.TwoStageGraph` in PyTorch -- the module the
exporter traces -- and its outputs (the detection contract, plus ``masks [B, K, 28, 28]``) go
through the same task post-processing an artifact's outputs get
(:mod:`edgecv.runtimes.tasks.segment` pastes the masks). So "PyTorch mAP vs ONNX mAP" measures
the export and nothing else; the fidelity check (:mod:`edgecv.export.twostage_fidelity`) is what
compares this graph with torchvision's own forward.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from edgecv.metadata import ArtifactMetadata
from edgecv.models.tv_twostage import TwoStageConfig, TwoStageGraph
from edgecv.runtimes.preprocess import preprocess_batch
from edgecv.runtimes.tasks.base import PostContext


class TwoStageTorchPredictor:
    """``TwoStageTorchPredictor(model, cfg, class_names, builder)(images) -> list[Detections]``.

    ``model``: a torchvision ``FasterRCNN`` / ``MaskRCNN`` (its transform an identity at
    ``cfg.hw``, as :func:`~edgecv.models.tv_twostage.build_torchvision` makes it); images: BGR
    uint8 ``[H, W, 3]`` of any size (letterboxed to ``cfg.hw``, as the artifact's metadata states);
    results in original pixels, with :class:`~edgecv.runtimes.masks.InstanceMasks` when the model has a mask head.
    """

    def __init__(self, model: nn.Module, cfg: TwoStageConfig, class_names: Sequence[str],
                 builder: str = "maskrcnn_tiny") -> None:
        from edgecv.export.twostage import twostage_metadata

        self.graph = TwoStageGraph(model.eval(), cfg).eval()
        self.metadata: ArtifactMetadata = twostage_metadata(builder, cfg, 1, list(class_names), "pytorch")
        self.metadata.input_shape[0] = -1  # any batch
        self.class_names = tuple(class_names)
        self.cfg = cfg

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> list:
        from edgecv.runtimes.tasks import segment
        from edgecv.runtimes.tasks.detect import TASK as DETECT

        tensor, infos = preprocess_batch(list(images), self.metadata)
        outputs = [t.numpy() for t in self.graph(torch.from_numpy(tensor))]
        named = dict(zip(self.metadata.outputs, outputs))
        task = segment.TASK if "masks" in named else DETECT
        context = PostContext(self.class_names, None, tuple(tensor.shape[2:]), {})
        return task.postprocess(named, infos, context)


def predictor_for(detector, imgsz: int | tuple[int, int] | None = None,  # noqa: ANN001
                  conf: float = 0.001, iou: float = 0.5, max_det: int = 100) -> TwoStageTorchPredictor:
    """The PyTorch predictor of a two-stage :class:`~edgecv.models.base.LoadedDetector` (as
    :func:`edgecv.models.tv_twostage.load_twostage` returns it: ``extra`` holds ``builder`` and the
    fp32 ``state``, None for seeded random weights) at ``imgsz`` (a side or ``(h, w)``, height first as
    :class:`~edgecv.models.tv_twostage.TwoStageConfig` takes it; default: the detector's size)."""
    from edgecv.models.tv_twostage import build_torchvision, num_classes_of, seeded_random_model

    builder, state = detector.extra["builder"], detector.extra["state"]
    cfg = TwoStageConfig(imgsz=imgsz or detector.imgsz, conf=conf, iou=iou, max_det=max_det)
    if state is None:
        model = seeded_random_model(builder, cfg)
    else:
        model = build_torchvision(builder, cfg, num_classes_of(state, detector.source))
        model.load_state_dict(state)
    return TwoStageTorchPredictor(model, cfg, detector.class_names, builder)
