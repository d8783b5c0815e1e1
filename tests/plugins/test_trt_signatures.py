"""edgecv's tensorrt.plugin ``register`` / ``aot_impl`` definitions against NVIDIA's own validation code,
for TensorRT 10.13 and 11.x.

The ``tensorrt-cu12-bindings`` wheels (fetched and unpacked by tools/fetch_trt_bindings.py, which
.ci/run calls) ship ``tensorrt/plugin/*.py``. trt_sources.py imports that real package in a child
process with a stand-in for the compiled C extension only, runs edgecv's ``trt.register()`` for
every plugin (the decorators run NVIDIA's ``_validate.py``) and reports what TensorRT recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tools"))
from fetch_trt_bindings import VERSIONS, cache_dir  # noqa: E402


def bindings(version: str) -> Path:
    folder = cache_dir() / version
    if not (folder / "tensorrt_bindings" / "plugin" / "_validate.py").is_file():
        pytest.skip(f"tensorrt-cu12-bindings {version} not unpacked in {cache_dir()}: "
                    "run python tools/fetch_trt_bindings.py (.ci/run does)")
    return folder


@pytest.mark.parametrize("version", VERSIONS)
def test_signatures_pass_tensorrt_plugin_validation(version: str) -> None:
    folder = bindings(version)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(HERE / "trt_sources.py"), str(folder)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["version"] == version
    assert "does not match the expected input arg schema" in report["negative_control"]  # the checker is live
    assert report["validate_file"].startswith(str(folder))  # NVIDIA's sources from the wheel, not a copy
    by_id = {p["plugin"]: p for p in report["plugins"]}
    nms = by_id["edgecv::BatchedNMS"]
    assert nms == {"plugin": "edgecv::BatchedNMS", "inputs": ["boxes", "scores"],
                   "attrs": ["max_det", "iou_threshold", "conf_threshold", "max_candidates", "class_agnostic"],
                   "num_outputs": 4, "aot_attrs": ["max_det", "iou_threshold", "conf_threshold", "max_candidates",
                                                   "class_agnostic"], "has_aot": True}
    assert by_id["edgecv::MultiLevelRoIAlign"] == {
        "plugin": "edgecv::MultiLevelRoIAlign", "inputs": ["features", "rois", "levels"],
        "attrs": ["output_size", "sampling_ratio", "aligned"], "num_outputs": 1,
        "aot_attrs": ["output_size", "sampling_ratio", "aligned"], "has_aot": True}
    from edgecv.plugins import PLUGINS, available

    assert sorted(by_id) == sorted(f"edgecv::{n}" for n in PLUGINS if available(n))  # every shipped plugin checked
