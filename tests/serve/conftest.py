"""The artifact the serving tests deploy: the demo YOLO at 320 with a dynamic batch axis."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_320(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo YOLO at 320, dynamic batch (export without the fidelity check: tested elsewhere)."""
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    out = tmp_path_factory.mktemp("serve320") / "model.onnx"
    return export_model("yolo", out=out, opts=ExportOptions(imgsz=320, dynamic=True, conf=0.2, check=False)).path
