"""Range statistics and methods."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.calibration.ranges import BINS, TensorStats, compute_range
from edgecv.errors import CalibrationError


def test_histogram_grows_without_losing_counts():
    stats = TensorStats()
    stats.update(np.linspace(-1, 1, 1000, dtype=np.float32))
    stats.update(np.array([7.5], np.float32))
    assert stats.edge == 8.0 and stats.hist.sum() == 1001 and stats.hist.shape == (BINS,)
    assert compute_range(stats, "minmax") == (-1.0, 7.5)


def test_entropy_and_percentile_clip_outliers():
    rng = np.random.default_rng(0)
    stats = TensorStats()
    for _ in range(4):
        stats.update(rng.normal(0, 1, 100_000).astype(np.float32))
    stats.update(np.array([60.0], np.float32))
    for method in ("entropy", "percentile"):
        lo, hi = compute_range(stats, method)
        assert 2.0 < hi < 20.0 and -20.0 < lo < -2.0, method
    with pytest.raises(CalibrationError, match="expected one of"):
        compute_range(stats, "kl")


def test_stats_round_trip():
    stats = TensorStats()
    stats.update(np.arange(10, dtype=np.float32))
    again = TensorStats.from_dict(stats.to_dict())
    assert again.lo == 0 and again.hi == 9 and np.array_equal(again.hist, stats.hist)
