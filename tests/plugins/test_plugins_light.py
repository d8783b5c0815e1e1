"""edgecv.plugins is light at import (like the runtime): no torch, triton, tensorrt or onnxruntime_extensions
until a function needs them; the TensorRT backend's registration path imports tensorrt only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

MODULES = ["edgecv.plugins", "edgecv.plugins.compile", "edgecv.plugins.twins", "edgecv.plugins.passes",
           "edgecv.plugins.engine", "edgecv.plugins.batched_nms", "edgecv.plugins.batched_nms.twin",
           "edgecv.plugins.batched_nms.graph", "edgecv.plugins.batched_nms.trt",
           "edgecv.plugins.roi_align", "edgecv.plugins.roi_align.twin", "edgecv.plugins.roi_align.trt"]
# edgecv.plugins.roi_align.graph is an export-side ONNX pass and imports onnx at module level.


def test_plugin_modules_import_without_heavy_dependencies() -> None:
    code = ("import importlib, json, sys\n"
            f"for m in {MODULES!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(k for k in ('torch', 'triton', 'tensorrt', 'onnxruntime_extensions', "
            "'onnx', 'onnxruntime') if k in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
