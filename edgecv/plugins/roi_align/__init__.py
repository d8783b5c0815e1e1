"""``edgecv::MultiLevelRoIAlign``: FPN level assignment + RoI Align of every level in one node.

The node form (one form that the CPU twin and TensorRT's ONNX parser both resolve):

* ``domain="ai.onnx.contrib"`` (where onnxruntime-extensions' Python custom ops live), ``op_type=
  "MultiLevelRoIAlign"``; TensorRT's parser looks an unknown op up in the plugin registry by op type
  and the ``plugin_version`` / ``plugin_namespace`` attributes, so those are string attributes of
  the node (``"1"``, ``"edgecv"``), as on ``edgecv::BatchedNMS``.
* inputs (fixed arity: Python custom ops have no variadic inputs, and a fixed arity is what a
  TensorRT plugin signature declares):

  - ``features`` float32 ``[B, C, S]``: the pooled FPN levels, finest first, each ``[B, C, H_l, W_l]``
    flattened to ``[B, C, H_l * W_l]`` and concatenated on the last axis (``S = sum H_l * W_l``);
  - ``rois`` float32 ``[B, R, 4]``: x1, y1, x2, y2 in network-input pixels, R per image;
  - ``levels`` float32 ``[L, 4]`` (a constant): per level ``(spatial_scale, H_l, W_l, offset_l)``,
    ``offset_l`` = where level ``l`` starts in ``S`` (:func:`level_table`). Levels are consecutive
    FPN levels ``k_min .. k_max`` with ``k = -log2(spatial_scale)`` (only the maps RoIs can reach:
    :func:`reachable_levels`).

* attributes: ``plugin_version`` (str), ``plugin_namespace`` (str), ``output_size`` (int, square
  bins ``P x P``), ``sampling_ratio`` (int; <= 0: adaptive ``ceil(roi_side / P)`` as torchvision),
  ``aligned`` (int 0/1: torchvision's ``aligned``; 0 = ONNX ``output_half_pixel``, 1 = ``half_pixel``).
* output ``pooled`` float32 ``[B * R, C, P, P]``: row ``b * R + r`` is RoI ``r`` of image ``b``,
  pooled (average of bilinear samples) from its level -- the layout of
  :func:`edgecv.export.rcnn_ops.multilevel_roi_pool`, so the node drops into the two-stage graph.

Level of a RoI: torchvision's LevelMapper, ``k = floor(4 + log2(sqrt(area) / 224) + 1e-6)`` clamped
to ``k_min .. k_max``; a box with area <= 0 (degenerate or flipped) goes to ``k_min``, as in the
portable graph, whose ``Where`` chain falls back to the first level.

Modules: :mod:`.kernel` (Triton kernel + host function), :mod:`.twin` (ONNX Runtime custom op),
:mod:`.trt` (TensorRT Quick Deployable Plugin), :mod:`.graph` (ONNX pass); the shared
:mod:`edgecv.plugins.compile` compiles the kernel ahead of time for the GPU targets. This module
imports numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OP_TYPE = "MultiLevelRoIAlign"
DOMAIN = "ai.onnx.contrib"
NAMESPACE = "edgecv"
VERSION = "1"
PLUGIN_ID = f"{NAMESPACE}::{OP_TYPE}"
#: Node attributes besides plugin_namespace / plugin_version, with their Python types (TensorRT's too).
ATTRIBUTES: dict[str, type] = {"output_size": int, "sampling_ratio": int, "aligned": int}
#: torchvision's box head pooler (MultiScaleRoIAlign 7x7, sampling ratio 2, aligned=False).
DEFAULT_ATTRS: dict[str, Any] = {"output_size": 7, "sampling_ratio": 2, "aligned": 0}
#: torchvision's LevelMapper constants: a 224-pixel box goes to level 4.
CANONICAL_LEVEL = 4
CANONICAL_SCALE = 224.0
LEVEL_EPS = 1e-6


def reachable_levels(scales: Sequence[float]) -> int:
    """How many of the maps (finest first, ``scales[l]`` = 1 / stride) RoIs can be assigned to.

    torchvision's MultiScaleRoIAlign clamps levels to ``k_min = -log2(scales[0])`` ..
    ``k_max = -log2(scales[-1])`` and pools RoIs of level ``k`` from map ``k - k_min``: the first
    ``k_max - k_min + 1`` maps, which must be levels ``k_min, k_min + 1, ...`` (a MobileNetV3 FPN at
    a small input has two maps of stride 32: ``k_min = k_max``, only the first is read). Raises
    ValueError for scales that are not powers of 2 or maps that break that order.
    """
    if not scales:
        raise ValueError("levels: expected at least one level, found none")
    ks = [-np.log2(s) for s in scales]
    if any(abs(k - round(k)) > 1e-6 for k in ks):
        raise ValueError(f"levels: expected scales 2**-k, found {list(scales)}")
    ks = [round(k) for k in ks]
    count = ks[-1] - ks[0] + 1
    if count < 1 or count > len(ks) or ks[:count] != list(range(ks[0], ks[0] + count)):
        raise ValueError(f"levels: expected consecutive FPN levels finest first (1/4, 1/8, ...), found {list(scales)}")
    return count


def level_table(shapes: Sequence[tuple[int, int]], scales: Sequence[float]) -> np.ndarray:
    """The ``levels`` input: float32 ``[L, 4]`` rows ``(spatial_scale, height, width, offset)`` of the
    :func:`reachable_levels` maps (the node's ``features`` hold those maps only, in this order).

    ``shapes`` are the maps' ``(H, W)``, finest first; ``scales[l]`` = 1 / stride of map ``l``.
    """
    if len(shapes) != len(scales):
        raise ValueError(f"levels: expected as many shapes as scales, found {len(shapes)} and {len(scales)}")
    count = reachable_levels(scales)
    shapes, scales = list(shapes)[:count], list(scales)[:count]
    offsets = np.cumsum([0] + [h * w for h, w in shapes])[:-1]
    rows = [(s, h, w, o) for s, (h, w), o in zip(scales, shapes, offsets)]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def compile_node(attrs: dict[str, Any], capability: str | int, *, ptx_version: int | None = None) -> list:
    """The kernel a node with these attributes runs, compiled for ``capability`` (list of one
    CompiledKernel). The shapes (B, R, C, L, S) are launch arguments, not compiled in."""
    from edgecv.plugins.compile import compile_kernel
    from edgecv.plugins.roi_align.kernel import KERNEL_SIGNATURE, NUM_WARPS, kernel_constexprs, roi_align_kernel

    constexprs = kernel_constexprs(int(attrs["output_size"]), int(attrs["sampling_ratio"]), bool(int(attrs["aligned"])))
    return [compile_kernel(roi_align_kernel, KERNEL_SIGNATURE, constexprs, capability, num_warps=NUM_WARPS,
                           ptx_version=ptx_version)]
