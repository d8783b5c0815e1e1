"""The DFL (box-side expectation over 16 bins) in the three forms a YOLO graph can hold, side by side.

    python benchmarks/bench_dfl.py [--anchors 8400] [--runs 5] [--iters 30] [--threads 2]

A YOLOv8-style head turns ``[B, 4*16, N]`` box logits into ``[B, 4, N]`` distances as the expected
bin under a softmax over the 16 bins. Three exports of that one computation:

* **ultralytics**: Ultralytics' own ``DFL`` module (``view(b, 4, 16, a).transpose(2, 1).softmax(1)``
  then a fixed 1x1 conv): ``Transpose`` + ``Softmax(axis=1)`` of ``[1, 16, 4, N]`` in ONNX. Skipped
  without the ``ultralytics`` package.
* **softmax axis 2**: edgecv's decode before this change: ``Softmax(axis=2)`` of ``[1, 4, 16, N]``,
  ``Mul`` by the bins, ``ReduceSum``.
* **written out** (:func:`edgecv.models.yolo.expected_bin`, what every edgecv YOLO export holds now,
  Ultralytics checkpoints included): ``ReduceMax`` / ``Sub`` / ``Exp`` / ``Mul`` / ``ReduceSum`` / ``Div``.

Each is exported by ``torch.onnx`` at ``N = --anchors`` (8,400 = 640 px) and run in ONNX Runtime and
OpenVINO (CPU, fp32, batch 1), all rows interleaved (:mod:`interleave`). It prints per-row
milliseconds, the ratio of each form to the written-out one, and the largest difference from it
(the forms compute the same values), with the CPU class.
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from interleave import header, interleaved_runs, ratio  # noqa: E402

from edgecv.models.yolo import expected_bin  # noqa: E402

BINS = 16


class SoftmaxAxis2(nn.Module):
    """``[B, 64, N]`` → ``[B, 4, N]`` through ``Softmax(axis=2)`` of ``[B, 4, 16, N]`` (edgecv's old decode)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bins", torch.arange(BINS, dtype=torch.float32).reshape(BINS, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], 4, BINS, -1).softmax(2) * self.bins).sum(2)


class WrittenOut(SoftmaxAxis2):
    """The same through :func:`expected_bin`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return expected_bin(x.reshape(x.shape[0], 4, BINS, -1), self.bins)


def forms() -> dict[str, nn.Module]:
    """The modules to export, written-out first (the reference of every ratio)."""
    found: dict[str, nn.Module] = {"written out": WrittenOut(), "softmax axis 2": SoftmaxAxis2()}
    try:
        from ultralytics.nn.modules.block import DFL
    except ImportError:
        print("(ultralytics not installed: its DFL row is skipped)")
    else:
        found["ultralytics"] = DFL(BINS)
    return found


def onnx_bytes(module: nn.Module, anchors: int) -> bytes:
    """``module`` exported at ``[1, 64, anchors]`` (opset 17, static shapes)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice (edgecv exports the same way)
        torch.onnx.export(module.eval(), (torch.zeros(1, 4 * BINS, anchors),), buffer, input_names=["x"],
                          output_names=["y"], opset_version=17, dynamo=False)
    return buffer.getvalue()


def sessions(graphs: dict[str, bytes], x: np.ndarray, threads: int) -> tuple[dict[str, Callable[[], object]],
                                                                              dict[str, np.ndarray]]:
    """``({"<form> / <runtime>": call}, {same key: output})`` for ONNX Runtime and OpenVINO."""
    import onnxruntime as ort
    import openvino as ov

    calls: dict[str, Callable[[], object]] = {}
    outputs: dict[str, np.ndarray] = {}
    core = ov.Core()
    for name, data in graphs.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        request = core.compile_model(core.read_model(data, b""), "CPU", {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads),
            "INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
        calls[f"{name} / onnxruntime"] = lambda s=session: s.run(None, {"x": x})
        calls[f"{name} / openvino"] = lambda r=request: r.infer({0: x})
        outputs[f"{name} / onnxruntime"] = session.run(None, {"x": x})[0]
        outputs[f"{name} / openvino"] = next(iter(request.infer({0: x}).values()))
    return calls, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=int, default=8400)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    graphs = {name: onnx_bytes(module, args.anchors) for name, module in forms().items()}
    # logits spread like a trained head's (a few units), so the softmax is neither flat nor one-hot
    x = (np.random.default_rng(0).standard_normal((1, 4 * BINS, args.anchors)) * 4).astype(np.float32)
    calls, outputs = sessions(graphs, x, args.threads)
    times = interleaved_runs(calls, args.runs, args.iters, args.warmup)
    print(header(f"DFL forms, [1, 64, {args.anchors}] -> [1, 4, {args.anchors}], fp32", args.runs, args.iters,
                 args.threads))
    print(f"{'form / runtime':34s} {'ms':>8s}  {'x written out [min-max]':26s} max |diff|")
    for key, runs in times.items():
        runtime = key.split(" / ")[1]
        reference = f"written out / {runtime}"
        diff = float(np.abs(outputs[key] - outputs[reference]).max())
        print(f"{key:34s} {np.median(runs):8.3f}  {str(ratio(runs, times[reference])):26s} {diff:.1e}")


if __name__ == "__main__":
    main()
