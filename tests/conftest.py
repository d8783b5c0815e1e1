"""Shared fixtures: artifacts exported once per session from the built-in demo weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# CLI output is asserted on: a wide console keeps messages with long temporary paths on one line.
os.environ["COLUMNS"] = "250"


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory) -> Path:
    """The demo YOLO exported at its training size, batch 1, default thresholds."""
    from edgecv.export.api import export_model

    out = tmp_path_factory.mktemp("demo") / "model.onnx"
    return export_model("yolo", out=out).path


@pytest.fixture(scope="session")
def demo_onnx_dynamic(tmp_path_factory) -> Path:
    """The demo YOLO exported with dynamic batch/size (fidelity checked at two sizes)."""
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    out = tmp_path_factory.mktemp("demo_dyn") / "model.onnx"
    return export_model("yolo", out=out, opts=ExportOptions(dynamic=True, conf=0.1)).path
