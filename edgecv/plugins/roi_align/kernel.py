"""Triton kernel of ``edgecv::MultiLevelRoIAlign`` and the host functions that launch it.

One program pools one RoI for a block of ``BLOCK_C`` channels and all ``P * P`` bins: it assigns
the RoI its FPN level (torchvision's LevelMapper, :mod:`edgecv.plugins.roi_align`), reads that
level's row of the ``levels`` table, then averages bilinear samples exactly as torchvision's
``roi_align`` does (same sample positions, the same out-of-image rule: a sample with ``y < -1``,
``y > H``, ``x < -1`` or ``x > W`` counts as 0; coordinates clamped to the map otherwise; the
average divides by ``max(grid_h * grid_w, 1)``). Only the assigned level is read, so the node
costs one RoI Align, not ``L`` of them as the portable graph's ``Where`` chain does.

On a machine without a GPU the kernel runs under ``TRITON_INTERPRET=1`` on CPU tensors (Triton
reads the variable when this module is imported, so set it before the import -- the tests do it in
a subprocess). The same function compiles ahead of time for the GPU targets (:mod:`edgecv.plugins.compile`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import triton
import triton.language as tl

from edgecv.plugins.roi_align import CANONICAL_LEVEL, CANONICAL_SCALE, LEVEL_EPS, level_table

# Globals a jit function reads must be constexpr.
_LEVEL0 = tl.constexpr(float(CANONICAL_LEVEL))
_SIDE0 = tl.constexpr(CANONICAL_SCALE)
_EPS = tl.constexpr(LEVEL_EPS)


@triton.jit
def roi_align_kernel(feat_ptr, rois_ptr, levels_ptr, batch_ptr, num_rois, rois_per_image, channels, spatial,
                     num_levels, out_ptr, POOLED: tl.constexpr, SAMPLING: tl.constexpr,
                     ALIGNED: tl.constexpr, HAS_BATCH: tl.constexpr, BLOCK_R: tl.constexpr,
                     BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_S: tl.constexpr):
    """``out[n, c, ph, pw]`` for ``BLOCK_R`` RoIs from ``program_id(0) * BLOCK_R`` and the
    ``BLOCK_C`` channels of block ``program_id(1)``.

    ``feat_ptr`` float32 ``[B, C, S]``, ``rois_ptr`` float32 ``[N, 4]``, ``levels_ptr`` float32
    ``[L, 4]``, ``batch_ptr`` int32 ``[N]`` (``HAS_BATCH``; else None and image =
    ``n // rois_per_image``), ``out_ptr`` float32 ``[N, C, P, P]``. Parameter order = TensorRT's
    AOT launch order: the node's inputs, the scalars, the output (``batch_ptr`` is a constexpr None
    in the node's build). The block's second axis is
    (RoI, bin) flattened (``BLOCK_R * BLOCK_P``), its third the samples of a bin: with
    ``SAMPLING > 0`` all ``SAMPLING**2`` at once (``BLOCK_S`` >= that, a power of 2); with
    ``SAMPLING <= 0`` (torchvision's adaptive ``ceil(side / P)`` grid, per RoI) one per loop step.
    """
    # Index arithmetic in int64: no overflow on large maps (and none for the interpreter to check).
    q = tl.arange(0, BLOCK_R * BLOCK_P).to(tl.int64)
    n = tl.program_id(0).to(tl.int64) * BLOCK_R + q // BLOCK_P
    bins = q % BLOCK_P
    ok = (n < num_rois) & (bins < POOLED * POOLED)
    x1 = tl.load(rois_ptr + n * 4, mask=ok, other=0.0)
    y1 = tl.load(rois_ptr + n * 4 + 1, mask=ok, other=0.0)
    x2 = tl.load(rois_ptr + n * 4 + 2, mask=ok, other=0.0)
    y2 = tl.load(rois_ptr + n * 4 + 3, mask=ok, other=0.0)
    if HAS_BATCH:
        image = tl.load(batch_ptr + n, mask=ok, other=0).to(tl.int64)
    else:
        image = n // rois_per_image
    # Level: floor(4 + log2(sqrt(area) / 224) + eps), clamped; area <= 0 -> -inf -> the finest level.
    area = tl.maximum((x2 - x1) * (y2 - y1), 0.0)
    k = tl.floor(tl.log2(tl.div_rn(tl.sqrt_rn(area), _SIDE0)) + _LEVEL0 + _EPS)
    k_lo = tl.floor(0.5 - tl.log2(tl.load(levels_ptr)))
    k = tl.minimum(tl.maximum(k, k_lo), k_lo + (num_levels - 1))
    row = levels_ptr + (k - k_lo).to(tl.int64) * 4
    scale = tl.load(row, mask=ok, other=1.0)
    height = tl.load(row + 1, mask=ok, other=1.0).to(tl.int64)[:, None]
    width = tl.load(row + 2, mask=ok, other=1.0).to(tl.int64)[:, None]
    start = tl.load(row + 3, mask=ok, other=0.0).to(tl.int64) + image * channels * spatial
    # torchvision's roi_align: aligned shifts by half a pixel; not aligned forces a side >= 1.
    shift = 0.5 if ALIGNED else 0.0
    start_w = x1 * scale - shift
    start_h = y1 * scale - shift
    roi_w = x2 * scale - shift - start_w
    roi_h = y2 * scale - shift - start_h
    if not ALIGNED:
        roi_w = tl.maximum(roi_w, 1.0)
        roi_h = tl.maximum(roi_h, 1.0)
    # IEEE division and square root (tl.div_rn, tl.sqrt_rn): Triton's "/" and tl.sqrt are the GPU's
    # approximate ones, which would round differently from torchvision, the twin and the interpreter.
    bin_w1 = tl.div_rn(roi_w, POOLED * 1.0)
    bin_h1 = tl.div_rn(roi_h, POOLED * 1.0)
    top = (start_h + (bins // POOLED).to(tl.float32) * bin_h1)[:, None]  # [Q, 1]: the bin's corner
    left = (start_w + (bins % POOLED).to(tl.float32) * bin_w1)[:, None]
    bin_w = bin_w1[:, None]
    bin_h = bin_h1[:, None]

    chan = tl.program_id(1).to(tl.int64) * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    chan_ok = chan < channels
    base = feat_ptr + (chan * spatial)[:, None, None] + start[None, :, None]  # [BLOCK_C, Q, 1]
    if SAMPLING > 0:
        samples = tl.arange(0, BLOCK_S)
        iy = (samples // SAMPLING).to(tl.float32)[None, :]
        ix = (samples % SAMPLING).to(tl.float32)[None, :]
        y = top + tl.div_rn((iy + 0.5) * bin_h, SAMPLING * 1.0)  # [Q, BLOCK_S]
        x = left + tl.div_rn((ix + 0.5) * bin_w, SAMPLING * 1.0)
        use = ok[:, None] & (samples < SAMPLING * SAMPLING)[None, :]
        acc = tl.sum(_bilinear(base, y, x, height, width, use, chan_ok), axis=2)
        count = SAMPLING * SAMPLING * 1.0
    else:
        grid_h = tl.where(ok, tl.ceil(bin_h1), 0.0).to(tl.int32)  # ceil(side / P)
        grid_w = tl.where(ok, tl.ceil(bin_w1), 0.0).to(tl.int32)
        count = tl.maximum(grid_h * grid_w, 1).to(tl.float32)[None, :]
        grid_h = grid_h[:, None]
        grid_w = grid_w[:, None]
        acc = tl.zeros((BLOCK_C, BLOCK_R * BLOCK_P), dtype=tl.float32)
        for iy in range(0, tl.max(grid_h)):
            y = top + tl.div_rn((iy + 0.5) * bin_h, tl.maximum(grid_h, 1).to(tl.float32))  # [Q, 1]; past grid: unused
            for ix in range(0, tl.max(grid_w)):
                x = left + tl.div_rn((ix + 0.5) * bin_w, tl.maximum(grid_w, 1).to(tl.float32))
                use = ok[:, None] & (iy < grid_h) & (ix < grid_w)
                acc += tl.sum(_bilinear(base, y, x, height, width, use, chan_ok), axis=2)
    out = tl.div_rn(acc, count)
    dest = out_ptr + n[None, :] * (channels * POOLED * POOLED) + chan[:, None] * (POOLED * POOLED) + bins[None, :]
    tl.store(dest, out, mask=chan_ok[:, None] & ok[None, :])


@triton.jit
def _bilinear(base, y, x, height, width, use, chan_ok):
    """Bilinear samples ``[BLOCK_C, Q, S]`` at ``(y, x)`` ``[Q, S]`` (torchvision's rule) from the
    ``height x width`` maps (``[Q, 1]``) at ``base`` ``[BLOCK_C, Q, 1]``; 0 where not ``use``."""
    inside = use & (y >= -1.0) & (y <= height) & (x >= -1.0) & (x <= width)
    y = tl.maximum(y, 0.0)
    x = tl.maximum(x, 0.0)
    y_low = y.to(tl.int64)
    x_low = x.to(tl.int64)
    y_edge = y_low >= height - 1
    x_edge = x_low >= width - 1
    y_low = tl.where(y_edge, height - 1, y_low)
    x_low = tl.where(x_edge, width - 1, x_low)
    y_high = tl.where(y_edge, height - 1, y_low + 1)
    x_high = tl.where(x_edge, width - 1, x_low + 1)
    ly = tl.where(y_edge, 0.0, y - y_low.to(tl.float32))
    lx = tl.where(x_edge, 0.0, x - x_low.to(tl.float32))
    hy = 1.0 - ly
    hx = 1.0 - lx
    mask = chan_ok[:, None, None] & inside[None, :, :]
    v1 = tl.load(base + (y_low * width + x_low)[None, :, :], mask=mask, other=0.0)
    v2 = tl.load(base + (y_low * width + x_high)[None, :, :], mask=mask, other=0.0)
    v3 = tl.load(base + (y_high * width + x_low)[None, :, :], mask=mask, other=0.0)
    v4 = tl.load(base + (y_high * width + x_high)[None, :, :], mask=mask, other=0.0)
    value = ((hy * hx)[None, :, :] * v1 + (hy * lx)[None, :, :] * v2 + (ly * hx)[None, :, :] * v3
             + (ly * lx)[None, :, :] * v4)
    return tl.where(mask, value, 0.0)


#: Elements of one program's ``[BLOCK_C, BLOCK_P, BLOCK_S]`` block: a GPU-friendly size (a few
#: registers per thread at 4 warps); the interpreter runs larger blocks faster (``max_elements``).
GPU_BLOCK_ELEMENTS = 4096
NUM_WARPS = 4
#: The kernel's runtime arguments in TensorRT's AOT launch order (inputs, scalar extras, output);
#: ``batch_ptr`` is a constexpr None in the node's build (:func:`kernel_constexprs`).
KERNEL_SIGNATURE = {"feat_ptr": "*fp32", "rois_ptr": "*fp32", "levels_ptr": "*fp32", "num_rois": "i32",
                    "rois_per_image": "i32", "channels": "i32", "spatial": "i32", "num_levels": "i32",
                    "out_ptr": "*fp32"}


def kernel_constexprs(output_size: int, sampling_ratio: int, aligned: bool) -> dict:
    """The node's compile-time arguments (one RoI per program, GPU block size; channels masked)."""
    _, block_c, block_p, block_s = block_sizes(1, 1 << 30, output_size, sampling_ratio)
    return {"batch_ptr": None, "POOLED": output_size, "SAMPLING": max(sampling_ratio, 0), "ALIGNED": bool(aligned),
            "HAS_BATCH": False, "BLOCK_R": 1, "BLOCK_C": block_c, "BLOCK_P": block_p, "BLOCK_S": block_s}


def block_sizes(rois: int, channels: int, output_size: int, sampling_ratio: int,
                max_elements: int = GPU_BLOCK_ELEMENTS) -> tuple[int, int, int, int]:
    """``(BLOCK_R, BLOCK_C, BLOCK_P, BLOCK_S)``: all ``P * P`` bins and all samples of a bin in one
    block, then channels, then RoIs, up to ``max_elements`` per program."""
    block_p = triton.next_power_of_2(output_size * output_size)
    block_s = triton.next_power_of_2(max(sampling_ratio, 1) ** 2)
    block_c = max(1, min(triton.next_power_of_2(channels), max_elements // (block_p * block_s)))
    block_r = max(1, min(triton.next_power_of_2(max(rois, 1)), max_elements // (block_p * block_s * block_c)))
    return block_r, block_c, block_p, block_s


def launch(features: torch.Tensor, rois: torch.Tensor, levels: torch.Tensor, output_size: int,
           sampling_ratio: int, aligned: bool, batch_index: torch.Tensor | None = None,
           rois_per_image: int | None = None) -> torch.Tensor:
    """Run the kernel on the node's tensors: ``features [B, C, S]``, ``rois [N, 4]``, ``levels [L, 4]``
    float32 -> ``[N, C, P, P]`` float32. RoI ``n`` belongs to image ``batch_index[n]`` (int) when given,
    else to ``n // rois_per_image``."""
    features = features.contiguous().float()
    rois = rois.reshape(-1, 4).contiguous().float()
    levels = levels.contiguous().float()
    count, channels, spatial = rois.shape[0], features.shape[1], features.shape[2]
    out = torch.zeros((count, channels, output_size, output_size), dtype=torch.float32, device=features.device)
    if count == 0 or channels == 0:
        return out
    has_batch = batch_index is not None
    batch = batch_index.to(torch.int32).contiguous() if has_batch else None
    # The interpreter's cost is per operation, not per element: one program for all channels there.
    max_elements = 1 << 20 if os.environ.get("TRITON_INTERPRET") == "1" else GPU_BLOCK_ELEMENTS
    block_r, block_c, block_p, block_s = block_sizes(count, channels, output_size, sampling_ratio, max_elements)
    grid = (triton.cdiv(count, block_r), triton.cdiv(channels, block_c))
    roi_align_kernel[grid](features, rois, levels, batch, count, int(rois_per_image or count), channels, spatial,
                           levels.shape[0], out, POOLED=output_size,
                           SAMPLING=max(int(sampling_ratio), 0), ALIGNED=bool(aligned), HAS_BATCH=has_batch,
                           BLOCK_R=block_r, BLOCK_C=block_c, BLOCK_P=block_p, BLOCK_S=block_s)
    return out


def flatten_levels(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[B, C, H_l, W_l]`` maps (finest first) -> the node's ``features [B, C, sum H_l * W_l]``."""
    return torch.cat([f.reshape(f.shape[0], f.shape[1], -1) for f in features], 2)


def multilevel_roi_align(features: Sequence[torch.Tensor], scales: Sequence[float], boxes: torch.Tensor,
                         output_size: int, sampling_ratio: int = 2, aligned: bool = False) -> torch.Tensor:
    """FPN RoI Align of ``boxes [B, R, 4]`` (x1, y1, x2, y2 input pixels) from ``features`` (finest
    first, ``scales[l]`` = 1 / stride) -> ``[B * R, C, P, P]`` float32, row ``b * R + r``."""
    table = level_table([tuple(f.shape[-2:]) for f in features], scales)
    levels = torch.from_numpy(table).to(boxes.device)
    return launch(flatten_levels(list(features)[:len(table)]), boxes, levels, output_size, sampling_ratio, aligned,
                  rois_per_image=max(int(boxes.shape[1]), 1))


def roi_align(feature: torch.Tensor, rois: torch.Tensor, batch_index: torch.Tensor, spatial_scale: float,
              output_size: int, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """Single-level RoI Align (the ONNX ``RoiAlign`` / torchvision ``roi_align`` form, average mode):
    ``feature [B, C, H, W]``, ``rois [N, 4]``, ``batch_index [N]`` -> ``[N, C, P, P]``.

    The level table has one row, so every RoI maps to it; ``spatial_scale`` need not be a power of 2.
    """
    height, width = feature.shape[-2:]
    table = np.asarray([[spatial_scale, height, width, 0]], dtype=np.float32)
    return launch(flatten_levels([feature]), rois, torch.from_numpy(table), output_size, sampling_ratio, aligned,
                  batch_index=batch_index)
