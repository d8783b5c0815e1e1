"""What reading a channel-first head's source (instead of its final Transposes) saves in the NMS subgraph.

    python benchmarks/bench_nms_layout.py [--imgsz 640] [--iters 100] [--threads 2] [--ultralytics]

edgecv.export.nms drops a raw output's ``Transpose(perm=[0,2,1])`` and reads the ``[B,4,N]`` /
``[B,C,N]`` tensor behind it. This traces the demo YOLO (and, with ``--ultralytics``, a YOLOv8n
built from Ultralytics' yaml, random weights, 80 classes: nothing downloads) once, appends NMS to
that raw graph twice -- as is (channel-first) and with an Identity behind each output Transpose
(the row-major form every graph had before) -- and runs both in OpenVINO (CPU, fp32, batch 1),
interleaved call by call with per-layer profiling. It prints, per graph, the median per-call time
of the data-movement layers (Transpose, Gather, GatherND) and of the whole call, and their ratios
channel-first / row-major, with the CPU. Same model, same weights, same detections (the tests
check bit-equality in ONNX Runtime): only the layout differs. The demo's own decode is
channel-first either way, so its row-major graph still has no pre-DFL Transpose.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from edgecv.export.nms import append_nms
from edgecv.export.onnx_export import ExportOptions, slim, torch_to_onnx
from edgecv.models import load_for_export
from edgecv.runtimes.cpu import cpu_features

MOVES = ("Transpose", "Gather", "GatherND", "GatherElements")


def row_major(raw: onnx.ModelProto) -> onnx.ModelProto:
    """``raw`` with an Identity behind each Transpose making a graph output: NMS then reads ``[B,N,X]``."""
    model = onnx.ModelProto()
    model.CopyFrom(raw)
    outputs = {o.name for o in model.graph.output}
    for node in list(model.graph.node):
        if node.op_type == "Transpose" and node.output[0] in outputs:
            name, node.output[0] = node.output[0], f"{node.output[0]}_bnx"
            model.graph.node.append(helper.make_node("Identity", [node.output[0]], [name], name=f"{name}_id"))
    return model


def ultralytics_detector(folder: Path):
    """A YOLOv8n from Ultralytics' yaml (random weights, 80 classes) loaded for export."""
    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics import YOLO

    path = folder / "yolov8n.pt"
    YOLO("yolov8n.yaml").save(str(path))
    return load_for_export("yolo", path, trust=True, class_names=[str(i) for i in range(80)])


def profile(graphs: dict[str, onnx.ModelProto], iters: int, threads: int) -> dict[str, dict[str, float]]:
    """Per graph: median ms per call of each data-movement layer type and of the call ('wall')."""
    import openvino as ov

    core, requests = ov.Core(), {}
    for name, model in graphs.items():
        compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU", {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads), "PERF_COUNT": "YES",
            "INFERENCE_PRECISION_HINT": "f32"})
        requests[name] = compiled.create_infer_request()
    image = np.random.default_rng(0).random(_input_shape(next(iter(graphs.values()))), np.float32)
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in graphs}
    for _ in range(5):
        for request in requests.values():
            request.infer({0: image})
    for _ in range(iters):
        for name, request in requests.items():  # interleaved: both graphs see the same load
            start = time.perf_counter()
            request.infer({0: image})
            wall = (time.perf_counter() - start) * 1e3
            layers = Counter()
            for info in request.profiling_info:
                if info.node_type in MOVES:
                    layers[info.node_type] += info.real_time.total_seconds() * 1e3
            for key, value in [("wall", wall), *((m, layers[m]) for m in MOVES)]:
                samples[name].setdefault(key, []).append(value)
    return {name: {key: float(np.median(v)) for key, v in s.items()} for name, s in samples.items()}


def _input_shape(model: onnx.ModelProto) -> list[int]:
    return [1] + [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ultralytics", action="store_true", help="also a YOLOv8n from Ultralytics' yaml")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_features().summary()}")
    with tempfile.TemporaryDirectory() as tmp:
        detectors = {"demo": load_for_export("yolo")}
        if args.ultralytics:
            detectors["yolov8n"] = ultralytics_detector(Path(tmp))
        for label, detector in detectors.items():
            raw = slim(torch_to_onnx(detector.module, ExportOptions(imgsz=args.imgsz)))
            graphs = {"channel-first": append_nms(raw), "row-major": append_nms(row_major(raw))}
            result = profile(graphs, args.iters, args.threads)
            cf, rm = result["channel-first"], result["row-major"]
            moved = {name: sum(r[m] for m in MOVES) for name, r in result.items()}
            print(f"{label} @ {args.imgsz}, fp32, batch 1, {args.threads} threads, {args.iters} interleaved calls (medians):")
            for name, r in result.items():
                parts = ", ".join(f"{m} {r[m]:.3f}" for m in MOVES if r[m] > 0)
                print(f"  {name:13s} call {r['wall']:8.2f} ms | data movement {moved[name]:.3f} ms ({parts})")
            print(f"  ratio channel-first / row-major: data movement {moved['channel-first'] / moved['row-major']:.2f}x, "
                  f"call {cf['wall'] / rm['wall']:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
