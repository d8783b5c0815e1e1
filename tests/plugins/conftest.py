"""Fixtures for the plugin tests: the Triton kernel's interpreted outputs, computed once in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))  # tests/ is not a package (pytest importlib mode): nms_cases, onnx_nms_cases


def run_interpreted(script: Path, out_dir: Path, timeout: float = 300.0) -> None:
    """Run ``script OUT_DIR`` with TRITON_INTERPRET=1 in a child process (the variable never reaches this one)."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run([sys.executable, str(script), str(out_dir)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="session")
def nms_kernel_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    """case name -> the interpreted kernel's outputs (``outs``: four arrays) / ONNX core indices (``onnx``)."""
    out = tmp_path_factory.mktemp("nms_interp")
    run_interpreted(HERE / "interp_worker.py", out)
    results = {}
    for file in out.glob("*.npz"):
        with np.load(file) as data:
            results[file.stem] = {k: data[k] for k in data.files}
    return results
