"""A corrupt calibration cache is set aside and rebuilt, never a permanent error (issue 8, section 1).

Before: a truncated ``model.calib.json`` made every ``quantize`` / ``edgecv calibrate`` fail with
"not a readable calibration cache" until someone deleted the file by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecv.calibration import quantize
from edgecv.calibration.cache import CalibrationCache, CalibrationCacheWarning, default_cache_path, model_sha256
from edgecv.calibration.ranges import BINS, TensorStats
from edgecv.errors import CalibrationError


def test_truncated_cache_beside_the_model_is_set_aside_and_rebuilt(model_copy: Path) -> None:
    cache = default_cache_path(model_copy)
    stats = {"t": TensorStats(0.0, 1.0, 1.0, np.ones(BINS, np.int64))}
    good = CalibrationCache(model_sha256(model_copy), "x", 8, "shapes", stats).save(cache).read_bytes()
    torn = good[: len(good) // 2]  # cut in half, as a full disk or a kill left it before atomic writes
    cache.write_bytes(torn)
    with pytest.warns(CalibrationCacheWarning, match=r"model\.calib\.json is unusable .*model\.calib\.json\.corrupt"):
        result = quantize(model_copy, samples=8)
    assert result.path.is_file() and not result.cache_hit
    assert (cache.parent / "model.calib.json.corrupt").read_bytes() == torn  # kept as evidence
    rebuilt = CalibrationCache.load(cache)
    assert rebuilt.matches(model_sha256(model_copy), None) and rebuilt.samples == 8 and len(rebuilt.tensors) > 1


@pytest.mark.parametrize("content", [b"", b"\xff\xfe garbage", b"[1, 2]", b'{"version": 1}', b'{"version": 99}',
                                     b'{"version": 1, "model_sha256": "a", "data_hash": "b", "samples": "x", '
                                     b'"data": "d", "tensors": {}}'])
def test_unusable_cache_gives_an_empty_cache_and_keeps_the_bytes(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.calib.json"
    path.write_bytes(content)
    with pytest.warns(CalibrationCacheWarning, match="calibrating again"):
        cache = CalibrationCache.load(path)
    assert cache.tensors == {} and not cache.matches("", None) and not cache.matches("a", None)
    assert not path.exists() and (tmp_path / "model.calib.json.corrupt").read_bytes() == content


def test_second_corrupt_cache_does_not_overwrite_the_first(tmp_path: Path) -> None:
    path = tmp_path / "model.calib.json"
    for content in (b"first", b"second"):
        path.write_bytes(content)
        with pytest.warns(CalibrationCacheWarning):
            CalibrationCache.load(path)
    aside = sorted(p.name for p in tmp_path.iterdir())
    assert aside[0] == "model.calib.json.corrupt" and aside[1].startswith("model.calib.json.corrupt-")
    assert [(tmp_path / name).read_bytes() for name in aside] == [b"first", b"second"]


def test_save_load_round_trip(tmp_path: Path) -> None:
    stats = TensorStats(-1.0, 2.0, 2.0, np.arange(BINS, dtype=np.int64))
    path = CalibrationCache("abc", "def", 4, "shapes", {"t": stats}).save(tmp_path / "c.calib.json")
    assert json.loads(path.read_text())["version"] == 1
    loaded = CalibrationCache.load(path)
    assert loaded.matches("abc", "def") and not loaded.matches("abc", "other")
    np.testing.assert_array_equal(loaded.tensors["t"].hist, stats.hist)
    assert [p.name for p in tmp_path.iterdir()] == ["c.calib.json"]


def test_unreadable_cache_path_is_still_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "model.calib.json"
    folder.mkdir()
    with pytest.raises(CalibrationError, match="cannot read the calibration cache"):
        CalibrationCache.load(folder)
