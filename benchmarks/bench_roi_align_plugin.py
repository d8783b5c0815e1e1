"""edgecv::MultiLevelRoIAlign: plugin-flavoured two-stage graphs (ORT + CPU twin) vs the portable ones,
and the kernel's ahead-of-time compile per claimed GPU target.

    python benchmarks/bench_roi_align_plugin.py [--builders maskrcnn_mobilenet_v3_large_fpn] [--imgsz 320]
                                                [--images 5] [--no-compile]

For each builder (seeded random weights, no download): the portable graph and its
``graph.replace`` copy, run side by side in ONNX Runtime (CPU; the plugin graph with the numpy twin
as an onnxruntime-extensions Python op) on the fidelity check's images: detections, share matched
(same class, IoU >= 0.999), max score / mask difference, median ms per image of each and their
ratio. The twin is a correctness reference, not a fast CPU path (Python op, outputs copied through
a list); the ratio says what it costs. Then the kernel (torchvision's box-head attributes) compiled
for sm_87 / sm_89 / sm_90 with a fresh Triton cache: seconds, PTX / cubin KiB, PTX ISA, minimum
driver. Names the CPU class; figures on a shared machine are "loaded".
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from edgecv.export.twostage import trace_graph
from edgecv.export.twostage_fidelity import check_images
from edgecv.models.tv_twostage import IMAGENET_MEAN, IMAGENET_STD, TwoStageConfig, TwoStageGraph, seeded_random_model
from edgecv.plugins.roi_align import DEFAULT_ATTRS, compile_node, graph, twin
from edgecv.runtimes.cpu import cpu_features


def _run(session: ort.InferenceSession, tensor: np.ndarray) -> tuple[list, float]:
    start = time.perf_counter()
    out = session.run(None, {"images": tensor})
    return out, (time.perf_counter() - start) * 1000


def compare(builder: str, imgsz: int, count: int) -> list[str]:
    """One table row: portable vs plugin graph of ``builder`` on ``count`` check images."""
    cfg = TwoStageConfig(imgsz=imgsz, max_det=50, conf=0.05, iou=0.5)
    portable = trace_graph(TwoStageGraph(seeded_random_model(builder, cfg), cfg).eval(), 1)
    plugged = graph.replace(portable)
    base = ort.InferenceSession(portable.SerializeToString(), providers=["CPUExecutionProvider"])
    plug = ort.InferenceSession(plugged.SerializeToString(), twin.session_options(), providers=["CPUExecutionProvider"])
    total = matched = 0
    score_diff = mask_diff = 0.0
    times: tuple[list[float], list[float]] = ([], [])
    for image in check_images(imgsz, count=count):
        rgb = image[:, :, ::-1].astype(np.float32) / 255
        tensor = ((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32)
        want, ms_a = _run(base, tensor)
        got, ms_b = _run(plug, tensor)
        times[0].append(ms_a)
        times[1].append(ms_b)
        n = int(want[0][0, 0])
        total += n
        same = (want[3][0, :n, None] == got[3][0, None, :n]) & (_iou(want[1][0, :n], got[1][0, :n]) >= 0.999)
        matched += int(same.any(1).sum())
        if n:
            score_diff = max(score_diff, float(np.abs(want[2][0, :n] - got[2][0, :n]).max()))
            if len(want) == 5:
                mask_diff = max(mask_diff, float(np.abs(want[4][0, :n] - got[4][0, :n]).max()))
    ms_a, ms_b = statistics.median(times[0]), statistics.median(times[1])
    nodes = (len(portable.graph.node), len(plugged.graph.node))
    return [builder, f"{nodes[0]} / {nodes[1]}", str(total), f"{100 * matched / max(total, 1):.1f} %",
            f"{score_diff:.1e}", f"{mask_diff:.1e}" if len(want) == 5 else "", f"{ms_a:.0f}", f"{ms_b:.0f}",
            f"{ms_b / ms_a:.2f}"]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], -1), np.prod(b[:, 2:] - b[:, :2], -1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def compile_rows() -> list[list[str]]:
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRITON_CACHE_DIR"] = cache  # fresh: every figure is a real LLVM + ptxas run
        for target in (87, 89, 90):
            (kernel,) = compile_node(DEFAULT_ATTRS, target)
            rows.append([kernel.target, f"{kernel.compile_seconds:.2f}", f"{len(kernel.ptx) / 1024:.1f}",
                         f"{len(kernel.cubin) / 1024:.1f}", kernel.ptx_isa, kernel.min_driver])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builders", default="maskrcnn_mobilenet_v3_large_fpn,fasterrcnn_mobilenet_v3_large_320_fpn")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args(argv)
    console = Console(width=160)
    console.print(f"{cpu_features().summary()} ({os.cpu_count()} logical cores)")
    table = Table("builder", "nodes portable / plugin", "dets", "matched @0.999", "max score diff", "max mask diff",
                  "portable ms", "plugin+twin ms", "ratio")
    for builder in args.builders.split(","):
        table.add_row(*compare(builder.strip(), args.imgsz, args.images))
    console.print(table)
    if not args.no_compile:
        kernels = Table("target", "compile s", "PTX KiB", "cubin KiB", "PTX ISA", "min driver")
        for row in compile_rows():
            kernels.add_row(*row)
        console.print(kernels)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
