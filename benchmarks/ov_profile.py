"""OpenVINO per-layer profile of one or more graphs: milliseconds per layer type (and exec kernel).

    python benchmarks/ov_profile.py a.onnx b/model.xml --threads 2 --iters 20
    python benchmarks/ov_profile.py a.onnx --nodes Subgraph,Transpose   # the costliest nodes of those types

How the int8 race's gap was found (README, issue 14): ``PERF_COUNT`` per-layer times, summed per
``node_type/exec_type`` and averaged over ``--iters`` calls on a random input of the graph's shape
(uint8 in 0..255 for a uint8 input), after 5 warm-up calls. Names the CPU class: an ``I8`` kernel
against an ``f32`` one is what to look for, and the per-layer times only compare within one run.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from interleave import cpu_class  # noqa: E402


def profile(path: str, threads: int, iters: int, kinds: set[str] | None = None) -> tuple[float, collections.Counter]:
    """``(median wall ms, ms per key)``; keys are ``type/exec`` or, with ``kinds``, the nodes of those types."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": "YES",
                                                                 "INFERENCE_NUM_THREADS": str(threads)})
    request = compiled.create_infer_request()
    port = compiled.inputs[0]
    shape = list(port.get_partial_shape().get_min_shape())
    uint8 = "u8" in port.get_element_type().to_string()
    x = np.random.default_rng(0).random(shape) * (255 if uint8 else 1)
    x = x.astype(np.uint8 if uint8 else np.float32)
    for _ in range(5):
        request.infer({0: x})
    totals: collections.Counter = collections.Counter()
    walls = []
    for _ in range(iters):
        start = time.perf_counter()
        request.infer({0: x})
        walls.append((time.perf_counter() - start) * 1e3)
        for layer in request.profiling_info:
            if kinds is None:
                key = f"{layer.node_type}/{layer.exec_type}"
            elif layer.node_type in kinds:
                key = f"{layer.node_type} {layer.node_name} [{layer.exec_type}]"
            else:
                continue
            totals[key] += layer.real_time.total_seconds() * 1e3 / iters
    return statistics.median(walls), totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graphs", nargs="+", help=".onnx or OpenVINO .xml files")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--top", type=int, default=20, help="rows per graph")
    parser.add_argument("--nodes", help="comma-separated node types: list their costliest nodes instead")
    args = parser.parse_args(argv)
    kinds = set(args.nodes.split(",")) if args.nodes else None
    name, summary = cpu_class()
    print(f"[CPU class: {name}] {summary}; {args.threads} threads, mean of {args.iters} calls per layer")
    for path in args.graphs:
        wall, totals = profile(path, args.threads, args.iters, kinds)
        print(f"\n== {path}: call {wall:.2f} ms (median), layers listed {sum(totals.values()):.2f} ms")
        for key, ms in totals.most_common(args.top):
            print(f"  {key:60s} {ms:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
