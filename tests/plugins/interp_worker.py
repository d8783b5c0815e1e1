"""Run the BatchedNMS Triton kernel interpreted (TRITON_INTERPRET=1) on every case; save the outputs.

    TRITON_INTERPRET=1 python interp_worker.py OUT_DIR

Writes ``OUT_DIR/<case>.npz`` (inputs and the kernel's four outputs) for :mod:`nms_cases`, and
``OUT_DIR/onnx_cases.npz`` (the NMS core's indices for every ONNX NonMaxSuppression case that fits,
keyed by case name). A subprocess so that TRITON_INTERPRET never leaks into the test process.
"""

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

if os.environ.get("TRITON_INTERPRET") != "1":
    raise SystemExit("expected TRITON_INTERPRET=1 in the environment")

import torch  # noqa: E402
from nms_cases import cases  # noqa: E402
from onnx_nms_cases import fitting_cases, kernel_core_indices  # noqa: E402

from edgecv.plugins.batched_nms.kernel import batched_nms  # noqa: E402


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, case in cases().items():
        start = time.process_time()
        outs = batched_nms(torch.from_numpy(case["boxes"]), torch.from_numpy(case["scores"]), **case["attrs"],
                          block=case.get("block"))
        np.savez(out_dir / f"{name}.npz", *(o.numpy() for o in outs), seconds=time.process_time() - start)
    onnx_results = {}
    for name, case in fitting_cases().items():
        onnx_results[name] = kernel_core_indices(case)
    np.savez(out_dir / "onnx_cases.npz", **onnx_results)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
