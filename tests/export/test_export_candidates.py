"""`edgecv export --max-candidates / --max-det` against TensorRT's limits: the option reaches the graph,
and out-of-range values are one line, exit 2, before any tracing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.export.nms import DEFAULT_MAX_CANDIDATES
from edgecv.export.onnx_export import ExportOptions


def run(*args: object):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, [str(a) for a in args])


def preselect_k(path: Path) -> int | None:
    """The constant k of the candidate pre-selection TopK (the one feeding NMS), or None without one."""
    model = onnx.load(str(path))
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
              if n.op_type == "Constant"}
    topks = [n for n in model.graph.node if n.op_type == "TopK" and n.name.startswith("edgecv_nms/pre/")]
    return int(np.asarray(consts[topks[0].input[1]]).max()) if topks else None


def test_default_options_stay_within_tensorrt_limits() -> None:
    assert ExportOptions().max_candidates == DEFAULT_MAX_CANDIDATES == 3840


def test_export_max_candidates_reaches_the_graph(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    result = run("export", "yolo", "--imgsz", 256, "--max-candidates", 500, "--no-check", "--out", out)
    assert result.exit_code == 0, result.output
    assert preselect_k(out) == 500  # 1,344 candidates at 256 > 500: the cap is in the graph


@pytest.mark.parametrize(("args", "message"), [
    (["--max-det", 5000], "expected max_det <= 3840 (TensorRT's TopK limit"),
    (["--max-candidates", 5000], "expected max_candidates <= 3840"),
    (["--max-candidates", -3], "expected max_candidates to be None or an integer >= 1, found -3"),
])
def test_export_refuses_values_beyond_tensorrt_limits(tmp_path: Path, args: list, message: str) -> None:
    out = tmp_path / "m.onnx"
    result = run("export", "yolo", "--imgsz", 320, "--out", out, *args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert not out.exists()
