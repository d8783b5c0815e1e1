"""Activation range calibration: minmax, entropy (KL divergence) and percentile.

Statistics are gathered in one pass with bounded memory: per tensor the running min / max and a
histogram of ``|x|`` over ``[0, R]`` with :data:`BINS` bins. When a batch exceeds ``R``, ``R``
doubles and adjacent bins merge pairwise (bin edges stay aligned, nothing is re-read). Large
tensors are histogrammed on a strided subsample of at most :data:`HIST_SAMPLE` values (min / max
always use every value).

A method turns the statistics into a clipping threshold ``T``; the range is then
``[max(min, -T), min(max, T)]`` -- symmetric targets use ``max(|lo|, |hi|)`` of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgecv.errors import CalibrationError

if TYPE_CHECKING:
    import onnx

    from edgecv.metadata import ArtifactMetadata

BINS = 2048
HIST_SAMPLE = 1 << 18
METHODS = ("minmax", "entropy", "percentile")


@dataclass
class TensorStats:
    """Running statistics of one activation tensor (float64 bounds, int64 ``hist [BINS]`` of ``|x|``)."""

    lo: float = np.inf
    hi: float = -np.inf
    edge: float = 0.0  # histogram covers [0, edge]
    hist: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))

    def update(self, x: np.ndarray) -> None:
        """Fold a float array of any shape into the statistics."""
        if x.size == 0:
            return
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        flat = x.reshape(-1)
        if flat.size > HIST_SAMPLE:
            flat = flat[:: flat.size // HIST_SAMPLE + 1]
        absx = np.abs(flat)
        peak = max(abs(self.lo), abs(self.hi), 1e-12)
        if self.edge == 0.0:
            self.edge = peak
        while peak > self.edge:
            self.hist = self.hist.reshape(-1, 2).sum(axis=1)
            self.hist = np.concatenate([self.hist, np.zeros(BINS // 2, np.int64)])
            self.edge *= 2.0
        idx = np.minimum((absx * (BINS / self.edge)).astype(np.int64), BINS - 1)
        self.hist += np.bincount(idx, minlength=BINS)

    def to_dict(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "edge": self.edge, "hist": self.hist.tolist()}

    @classmethod
    def from_dict(cls, raw: dict) -> "TensorStats":
        return cls(float(raw["lo"]), float(raw["hi"]), float(raw["edge"]), np.asarray(raw["hist"], np.int64))


def percentile_threshold(stats: TensorStats, percentile: float = 99.999) -> float:
    """Smallest ``T`` such that ``percentile`` % of the ``|x|`` samples lie below it."""
    cdf = np.cumsum(stats.hist) / max(stats.hist.sum(), 1)
    index = int(np.searchsorted(cdf, percentile / 100.0))
    return (index + 1) * stats.edge / BINS


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


def entropy_threshold(stats: TensorStats, levels: int = 128, stride: int = 16) -> float:
    """TensorRT-style KL calibration: the threshold minimising KL(P || Q) where P is the clipped
    histogram and Q its ``levels``-level quantisation. Candidates every ``stride`` bins."""
    hist = stats.hist.astype(np.float64)
    last = int(np.nonzero(hist)[0].max()) + 1 if hist.any() else levels
    if last <= levels:
        return last * stats.edge / BINS
    best, best_kl = last, np.inf
    for i in range(levels, last + 1, stride):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()
        starts = np.linspace(0, i, levels + 1).astype(np.int64)
        used = (hist[:i] > 0).astype(np.float64)
        sums = np.add.reduceat(hist[:i], starts[:-1])
        counts = np.add.reduceat(used, starts[:-1])
        q = np.repeat(sums / np.maximum(counts, 1), np.diff(starts)) * used
        kl = _kl(p / p.sum(), q / max(q.sum(), 1e-12))
        if kl < best_kl:
            best, best_kl = i, kl
    return best * stats.edge / BINS


def compute_range(stats: TensorStats, method: str, percentile: float = 99.999) -> tuple[float, float]:
    """``(lo, hi)`` float range of one tensor for ``method`` (one of :data:`METHODS`); always contains 0."""
    if method not in METHODS:
        raise CalibrationError(f"calibration method: expected one of {METHODS}, found {method!r}")
    lo, hi = min(stats.lo, 0.0), max(stats.hi, 0.0)
    if method == "minmax" or stats.edge == 0.0:
        return lo, hi
    threshold = entropy_threshold(stats) if method == "entropy" else percentile_threshold(stats, percentile)
    return max(lo, -threshold), min(hi, threshold)


def pixel_range(model: "onnx.ModelProto", metadata: "ArtifactMetadata") -> dict[str, tuple[float, float]]:
    """``{network input tensor: (lo, hi)}``: the range every uint8 pixel 0..255 maps to after the
    artifact's normalisation (the lowest and highest over its channels).

    Why not calibrate it: the range is known. Percentile calibration would clip the brightest
    pixels, and minmax would depend on how bright the calibration images happened to be. For a
    ``[0, 1]`` input (``x / 255``, YOLO) the uint8 grid is then exactly the pixel grid: quantizing the
    input loses nothing. The tensor is the float graph input, or the ``edgecv_pre/`` prefix's output
    in a uint8-input artifact.
    """
    from edgecv.calibration.graph import network_input
    from edgecv.runtimes.preprocess import graph_normalisation, normalisation

    norm = normalisation(metadata) or graph_normalisation(metadata)
    lows = [-s for s in norm.sub]
    highs = [255.0 * m - s for m, s in zip(norm.mul, norm.sub)]
    return {network_input(model): (float(min(lows)), float(max(highs)))}
