"""Architecture contract 5: the runtime never imports torch (nor the onnx package), directly or indirectly."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import numpy as np
import edgecv.runtimes as runtimes
from edgecv.runtimes import Predictor, Detections, predict_source, iter_source, annotate
import edgecv.runtimes.backends.onnxruntime, edgecv.runtimes.predict, edgecv.runtimes.draw
with Predictor(sys.argv[1]) as predictor:
    dets = predictor(np.zeros((48, 64, 3), np.uint8))
    annotate(np.zeros((48, 64, 3), np.uint8), dets)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "onnx", "onnxslim"))
print("HEAVY", heavy)
"""


def test_runtime_imports_neither_torch_nor_onnx(toy_artifact: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(toy_artifact)], capture_output=True, text=True,
                            env=env, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
