"""Task ``semantic`` (label maps): the arg-max class of every network-input pixel.

Outputs: ``labels [B, H, W] int32`` (the arg-max class id per pixel of the network input,
``H, W`` = the input tensor's size) and, optionally, ``probs [B, C, H, W] float32`` class
probabilities. No ``num_dets`` / ``boxes``. The result is one
:class:`~edgecv.runtimes.semantic_map.SemanticMap` per image at ORIGINAL resolution:

* the letterbox padding is cut off and the scale undone, or for a stretch artifact each axis is
  scaled back on its own;
* labels by nearest neighbour: original pixel ``(x, y)`` takes the network pixel under its
  centre, ``x_net = floor((x + 0.5) * scale_x + pad_x)`` (clamped to the map);
* probabilities (option ``probs=True``) bilinearly over the same region, float32 ``[C, H, W]``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from edgecv.errors import ArtifactError, OptionError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.backends import Backend
from edgecv.runtimes.preprocess import LetterboxInfo
from edgecv.runtimes.semantic_map import SemanticMap
from edgecv.runtimes.tasks.base import (PostContext, check_batch, check_declared_rank, check_input,
                                        check_output_names, declared_shapes)


def source_indices(info: LetterboxInfo, net_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(rows [H], cols [W])``: the network pixel under each original pixel's centre."""
    height, width = info.orig_shape
    scale_x, scale_y = info.scales
    rows = np.floor((np.arange(height) + 0.5) * scale_y + info.pad_y).astype(np.intp)
    cols = np.floor((np.arange(width) + 0.5) * scale_x + info.pad_x).astype(np.intp)
    return np.clip(rows, 0, net_hw[0] - 1), np.clip(cols, 0, net_hw[1] - 1)


def labels_to_original(labels: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """A network-input label map ``[h, w]`` -> int32 ``[H, W]`` of the original image (nearest)."""
    rows, cols = source_indices(info, labels.shape)
    return np.ascontiguousarray(labels.take(rows, axis=0).take(cols, axis=1), np.int32)


def probs_to_original(probs: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Network-input probabilities ``[C, h, w]`` -> float32 ``[C, H, W]`` of the original image
    (bilinear over the region the image occupies in the network input)."""
    height, width = info.orig_shape
    scale_x, scale_y = info.scales
    # original pixel centre (x + 0.5) sits at network coordinate (x + 0.5) * scale + pad, i.e. at
    # index (x + 0.5) * scale + pad - 0.5 with network pixel centres at integers (OpenCV's convention)
    to_net = np.array([[scale_x, 0.0, 0.5 * scale_x + info.pad_x - 0.5],
                       [0.0, scale_y, 0.5 * scale_y + info.pad_y - 0.5]], np.float64)
    planes = [cv2.warpAffine(np.ascontiguousarray(p, np.float32), to_net, (width, height),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
              for p in probs]
    return np.stack(planes) if planes else np.zeros((0, height, width), np.float32)


class SemanticTask:
    """Label maps at original resolution. Option ``probs`` (default False): also return the class
    probabilities (needs the ``probs`` output; costs ``C x H x W x 4`` bytes per image)."""

    name = "semantic"
    options: Mapping[str, Any] = {"probs": False}
    uses_conf = False

    def check_artifact(self, metadata: ArtifactMetadata, backend: Backend, options: Mapping[str, Any]) -> None:
        check_input(metadata, backend)
        if options.get("probs") and "probs" not in backend.output_names:
            raise OptionError(f"task option probs: expected an artifact with a 'probs' output, found outputs "
                              f"{backend.output_names}")
        check_output_names("semantic", ("labels",), backend)
        shapes = declared_shapes(backend.path)
        check_declared_rank(backend, shapes, "labels", "[B, H, W]")
        if "probs" in backend.output_names:
            dims = check_declared_rank(backend, shapes, "probs", "[B, C, H, W]")
            classes = len(metadata.class_names)
            if dims is not None and dims[1] and dims[1] != classes:
                raise ArtifactError(f"{backend.path}: expected {dims[1]} class_names (output 'probs' has {dims[1]} "
                                    f"classes), found {classes} in the metadata")

    def postprocess(self, outputs: Mapping[str, np.ndarray], infos: Sequence[LetterboxInfo],
                    context: PostContext) -> list[SemanticMap]:
        labels = self._labels(outputs, context)
        check_batch(labels.shape[0], infos)
        probs = self._probs(outputs, labels, context) if context.options.get("probs") else None
        return [SemanticMap(labels_to_original(labels[i], info), context.class_names,
                            None if probs is None else probs_to_original(probs[i], info))
                for i, info in enumerate(infos)]

    @staticmethod
    def _labels(outputs: Mapping[str, np.ndarray], context: PostContext) -> np.ndarray:
        if "labels" not in outputs:
            raise ArtifactError(f"expected semantic output 'labels' [B, H, W], found {sorted(outputs)}")
        labels = np.asarray(outputs["labels"])
        if labels.ndim != 3 or tuple(labels.shape[1:]) != tuple(context.input_hw):
            raise ArtifactError(f"output 'labels': expected shape [B, {context.input_hw[0]}, {context.input_hw[1]}] "
                                f"(one class id per input pixel), found {list(labels.shape)}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ArtifactError(f"output 'labels': expected integer class ids, found dtype {labels.dtype}")
        classes = len(context.class_names)
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ArtifactError(f"output 'labels': expected ids in [0, {classes - 1}] (the metadata's class_names), "
                                f"found [{labels.min()}, {labels.max()}]")
        return labels

    @staticmethod
    def _probs(outputs: Mapping[str, np.ndarray], labels: np.ndarray, context: PostContext) -> np.ndarray:
        if "probs" not in outputs:
            raise OptionError(f"task option probs: expected an artifact with a 'probs' output, found outputs "
                              f"{sorted(outputs)}")
        probs = np.asarray(outputs["probs"])
        expected = [labels.shape[0], len(context.class_names), *labels.shape[1:]]
        if list(probs.shape) != expected:
            raise ArtifactError(f"output 'probs': expected shape {expected} [B, C, H, W], found {list(probs.shape)}")
        return probs


TASK = SemanticTask()
