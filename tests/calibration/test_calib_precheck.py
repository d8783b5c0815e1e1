"""Calibration data is checked before the fp32 export: a wrong --calib-data fails in seconds, writing nothing."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from edgecv.cli import app


@pytest.mark.parametrize("make_data", [
    lambda tmp: tmp / "missing_folder",
    lambda tmp: (tmp / "notes.txt").write_text("x") and tmp,  # a folder without images
    lambda tmp: (tmp / "clip.mp4").write_bytes(b"not a video") and tmp / "clip.mp4",
])
def test_bad_calib_data_fails_before_the_export(tmp_path, make_data) -> None:
    data = make_data(tmp_path)
    out = tmp_path / "out" / "model.onnx"
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["export", "yolo", "--int8", "--calib-data", str(data), "--out", str(out)])
    seconds = time.perf_counter() - start
    assert result.exit_code == 2, result.output
    assert "expected" in result.output and "Traceback" not in result.output
    assert not out.exists()  # the fp32 export never ran (it takes 15-25 s here)
    assert seconds < 10, f"took {seconds:.1f} s: the check must come before the export"
