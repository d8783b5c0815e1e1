"""CPU twin of ``edgecv::MultiLevelRoIAlign``: an ONNX Runtime custom op (onnxruntime-extensions'
Python op route) computing what the Triton kernel computes, in numpy.

The node form is documented in :mod:`edgecv.plugins.roi_align`. :func:`register` declares the op
(once per process) in onnxruntime-extensions' ``ai.onnx.contrib`` domain; a session then needs
``SessionOptions.register_custom_ops_library(onnxruntime_extensions.get_library_path())``
(:func:`session_options`). Torch-free: numpy + onnxruntime(-extensions) only.

Numerics follow torchvision's ``roi_align`` CPU kernel step by step (float32 throughout), except
that the samples of a bin are summed pairwise rather than one after the other (differences ~1e-7).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecv.errors import MissingDependencyError
from edgecv.plugins.once import Once
from edgecv.plugins.roi_align import CANONICAL_LEVEL, CANONICAL_SCALE, LEVEL_EPS, OP_TYPE

#: Gathered values per chunk of RoIs (bounds the twin's memory: ~4 corners x this x 4 bytes).
_CHUNK_ELEMENTS = 1 << 22
_registration = Once()


def assign_levels(rois: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Row of ``levels [L, 4]`` for each RoI ``[N, 4]`` (LevelMapper; area <= 0 -> the finest level)."""
    rois = rois.astype(np.float32, copy=False)
    area = np.maximum((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]), np.float32(0))
    with np.errstate(divide="ignore"):
        k = np.floor(np.log2(np.sqrt(area) / np.float32(CANONICAL_SCALE)) + np.float32(CANONICAL_LEVEL)
                     + np.float32(LEVEL_EPS))
    k_lo = np.floor(np.float32(0.5) - np.log2(levels[0, 0]))
    return (np.clip(k, k_lo, k_lo + len(levels) - 1) - k_lo).astype(np.int64)


def _axis(start: np.ndarray, size: np.ndarray, pooled: int, grid: int, limit: np.ndarray) -> tuple[np.ndarray, ...]:
    """One axis of the samples ``[n, P * grid]``: ``(valid, low, high, frac_low, frac_high)``."""
    bins = np.arange(pooled, dtype=np.float32)[:, None]
    steps = np.arange(grid, dtype=np.float32)[None, :] + np.float32(0.5)
    binsize = (size / np.float32(pooled))[:, None, None]
    pos = start[:, None, None] + bins[None] * binsize + steps[None] * binsize / np.float32(grid)
    pos = pos.reshape(len(start), -1)
    limit = limit[:, None]
    valid = (pos >= -1) & (pos <= limit)
    pos = np.maximum(pos, np.float32(0))
    low = pos.astype(np.int64)
    edge = low >= limit - 1
    low = np.where(edge, limit - 1, low)
    high = np.where(edge, limit - 1, low + 1)
    frac = np.where(edge, np.float32(0), pos - low.astype(np.float32)).astype(np.float32)
    return valid, np.maximum(low, 0), np.maximum(high, 0), frac, (np.float32(1) - frac).astype(np.float32)


def _pool_chunk(features: np.ndarray, rois: np.ndarray, image: np.ndarray, table: np.ndarray, pooled: int,
                grid_h: int, grid_w: int, aligned: bool) -> np.ndarray:
    """RoI Align of ``rois [n, 4]`` (rows of ``table`` = their levels; a ``grid_h x grid_w`` sample
    grid per bin) -> ``[n, C, P, P]``."""
    scale, height, width, offset = table[:, 0], table[:, 1].astype(np.int64), table[:, 2].astype(np.int64), \
        table[:, 3].astype(np.int64)
    shift = np.float32(0.5 if aligned else 0.0)
    start_w, start_h = rois[:, 0] * scale - shift, rois[:, 1] * scale - shift
    roi_w, roi_h = rois[:, 2] * scale - shift - start_w, rois[:, 3] * scale - shift - start_h
    if not aligned:
        roi_w, roi_h = np.maximum(roi_w, np.float32(1)), np.maximum(roi_h, np.float32(1))
    yv, y0, y1, ly, hy = _axis(start_h, roi_h, pooled, grid_h, height)
    xv, x0, x1, lx, hx = _axis(start_w, roi_w, pooled, grid_w, width)
    n, rows, cols = len(rois), pooled * grid_h, pooled * grid_w
    total = np.zeros((n, rows, cols, features.shape[1]), np.float32)
    flat = features.transpose(0, 2, 1)  # [B, S, C]: one gather per corner
    valid = (yv[:, :, None] & xv[:, None, :]).astype(np.float32)
    for ys, wy in ((y0, hy), (y1, ly)):
        for xs, wx in ((x0, hx), (x1, lx)):
            index = offset[:, None, None] + ys[:, :, None] * width[:, None, None] + xs[:, None, :]
            values = flat[image[:, None], index.reshape(n, -1)].reshape(n, rows, cols, -1)
            total += (wy[:, :, None] * wx[:, None, :] * valid)[..., None] * values
    total = total.reshape(n, pooled, grid_h, pooled, grid_w, -1).sum(axis=(2, 4)) / np.float32(grid_h * grid_w)
    return total.transpose(0, 3, 1, 2).astype(np.float32)


def multilevel_roi_align(features: np.ndarray, rois: np.ndarray, levels: np.ndarray, output_size: int,
                         sampling_ratio: int, aligned: bool, image: np.ndarray | None = None) -> np.ndarray:
    """The op in numpy: ``features [B, C, S]``, ``rois [B, R, 4]`` (or ``[N, 4]`` with ``image [N]``),
    ``levels [L, 4]`` float32 -> ``[B * R, C, P, P]`` float32 (node form: :mod:`edgecv.plugins.roi_align`)."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    levels = np.asarray(levels, dtype=np.float32)
    if image is None:
        per_image = rois.shape[1] if rois.ndim == 3 else len(rois)
        image = np.arange(int(np.prod(rois.shape[:-1]))) // max(per_image, 1)
    rois = np.asarray(rois, dtype=np.float32).reshape(-1, 4)
    image = np.asarray(image, dtype=np.int64).reshape(-1)
    out = np.zeros((len(rois), features.shape[1], output_size, output_size), np.float32)
    if len(rois) == 0:
        return out
    table = levels[assign_levels(rois, levels)]
    if sampling_ratio > 0:
        chunk = max(1, _CHUNK_ELEMENTS // max(1, features.shape[1] * (output_size * sampling_ratio) ** 2))
        for lo in range(0, len(rois), chunk):
            part = slice(lo, lo + chunk)
            out[part] = _pool_chunk(features, rois[part], image[part], table[part], output_size, sampling_ratio,
                                    sampling_ratio, aligned)
        return out
    for i in range(len(rois)):  # adaptive grid: ceil(side / P) per RoI, one RoI at a time
        roi, row = rois[i:i + 1], table[i:i + 1]
        scale, shift = row[0, 0], np.float32(0.5 if aligned else 0.0)
        side_w = (roi[0, 2] * scale - shift) - (roi[0, 0] * scale - shift)
        side_h = (roi[0, 3] * scale - shift) - (roi[0, 1] * scale - shift)
        if not aligned:
            side_w, side_h = max(side_w, np.float32(1)), max(side_h, np.float32(1))
        grid_h = int(np.ceil(side_h / np.float32(output_size)))
        grid_w = int(np.ceil(side_w / np.float32(output_size)))
        if grid_h > 0 and grid_w > 0:  # else no sample: 0, as torchvision's max(count, 1)
            out[i] = _pool_chunk(features, roi, image[i:i + 1], row, output_size, grid_h, grid_w, aligned)[0]
    return out


def _op(features: np.ndarray, rois: np.ndarray, levels: np.ndarray, **attrs: Any) -> np.ndarray:
    """The custom op's body: attributes as declared in :func:`register`."""
    return multilevel_roi_align(features, rois, levels, int(attrs["output_size"]), int(attrs["sampling_ratio"]),
                                bool(attrs["aligned"]))


def register() -> None:
    """Declare the twin op with onnxruntime-extensions (idempotent: the op table is per process)."""
    _registration(_declare)


def _declare() -> None:
    try:
        from onnxruntime_extensions import PyCustomOpDef, onnx_op
    except ImportError as exc:
        raise MissingDependencyError("the CPU twin of edgecv::MultiLevelRoIAlign needs onnxruntime-extensions: "
                                     "pip install 'edgecv[plugins]'") from exc
    string, integer, real = PyCustomOpDef.dt_string, PyCustomOpDef.dt_int64, PyCustomOpDef.dt_float
    onnx_op(op_type=OP_TYPE, inputs=[real, real, real], outputs=[real],
            attrs={"plugin_version": string, "plugin_namespace": string, "output_size": integer,
                   "sampling_ratio": integer, "aligned": integer})(_op)


def session_options() -> Any:
    """``onnxruntime.SessionOptions`` with this twin registered (the shared room registers all twins)."""
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    register()
    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    return options
