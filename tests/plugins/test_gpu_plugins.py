"""GPU-only checks of edgecv's plugins (``gpu`` marker; skipped where there is no CUDA device / TensorRT).

* The BatchedNMS Triton kernel compiled and run on the GPU vs the numpy twin, every case of nms_cases.py.
* An engine built from the demo's TensorRT-flavoured graph vs the portable graph in ONNX Runtime.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from nms_cases import cases

from edgecv.plugins.batched_nms.twin import batched_nms_numpy


def cuda_device() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def tensorrt_gpu() -> bool:
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart
    except Exception:  # the bindings raise ImportError / OSError without libnvinfer or a driver
        return False
    error, count = cudart.cudaGetDeviceCount()
    return int(error) == 0 and count > 0


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_device(), reason="gpu test: no CUDA device")
@pytest.mark.parametrize("name", sorted(cases()))
def test_kernel_on_gpu_matches_twin(name: str) -> None:
    import torch

    from edgecv.plugins.batched_nms.kernel import batched_nms

    case = cases()[name]
    outs = batched_nms(torch.from_numpy(case["boxes"]).cuda(), torch.from_numpy(case["scores"]).cuda(),
                       **case["attrs"])
    for found, want in zip(outs, batched_nms_numpy(case["boxes"], case["scores"], **case["attrs"])):
        np.testing.assert_allclose(found.cpu().numpy(), want, atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not tensorrt_gpu(), reason="gpu test: TensorRT + a CUDA device needed")
def test_engine_with_plugins_matches_portable(demo_onnx: Path, tmp_path: Path) -> None:
    from edgecv.data.synthetic import draw_scene
    from edgecv.export.tensorrt_build import build_engine
    from edgecv.plugins.passes import write_plugin_graph
    from edgecv.runtimes import Predictor

    portable = Path(shutil.copy(demo_onnx, tmp_path / "model.onnx"))
    engine = build_engine(write_plugin_graph(portable), tmp_path / "model.trt.engine")
    rng = np.random.default_rng(3)
    with Predictor(engine) as gpu, Predictor(portable) as cpu:
        for _ in range(8):
            frame = draw_scene(rng, (320, 320)).image
            a, b = gpu(frame), cpu(frame)
            assert len(a) == len(b)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)
