"""Re-exporting over a good model.onnx under a file-size limit keeps the good file (issue 8, section 1).

Measured before the fix: ``ulimit -f`` during ``edgecv export`` left an 8 MB corrupt model.onnx and a
raw OSError traceback. The child process lowers RLIMIT_FSIZE itself (and ignores SIGXFSZ, so the
write fails with EFBIG instead of killing it), exactly what a shell's ``ulimit -f`` does.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIMIT = 1 << 20  # 1 MiB: far below the 12 MB demo graph, far above anything else the export writes


def limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.mark.slow  # a real `edgecv export` in a child process (torch import + trace)
def test_export_under_file_size_limit_keeps_the_previous_model(demo_onnx: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(demo_onnx, model)
    good = model.read_bytes()
    assert len(good) > LIMIT
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "400"}
    run = subprocess.run([sys.executable, "-m", "edgecv.cli", "export", "yolo", "--imgsz", "160", "--no-check",
                          "--out", str(model)], capture_output=True, text=True, env=env, timeout=300,
                         preexec_fn=limit_file_size)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr + run.stdout
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), run.stderr
    assert str(model) in errors[0] and "File too large" in errors[0]
    assert model.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left
