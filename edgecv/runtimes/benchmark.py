"""Latency, throughput and memory of an artifact on one or more backends (torch-free).

    from edgecv.runtimes.benchmark import benchmark, compare
    result = benchmark("model.onnx", backend="openvino", batch=1, iters=50)   # BenchmarkResult
    results = compare("model.onnx", ["onnxruntime", "openvino"])              # same frame, one run

What is timed, after ``warmup`` untimed calls, ``iters`` times, alternating the order of the
two in every iteration so both see the same machine state:

* **whole**: ``predictor(frames)`` = letterbox + normalise -> backend -> post-process -> Detections;
* **bare**: ``predictor.backend.infer(tensor)`` on the pre-made input tensor (the same opened
  backend, so thread pools and caches are shared).

Reported per path: p50 / p90 / p99 / mean latency in ms and throughput in images/s
(``batch / mean``). Memory: the process's peak resident set size while the backend was open,
and that peak minus the RSS before opening (what the backend + model cost). The frame is a
deterministic synthetic image (smooth gradients and solid shapes) of ``imgsz`` pixels, so runs
compare across machines. ``edgecv benchmark`` is a thin wrapper over :func:`compare`.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
from rich.table import Table

from edgecv import fileio
from edgecv.errors import OptionError
from edgecv.runtimes.cpu import cpu_features
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.preprocess import input_hw, preprocess_batch


@dataclass
class LatencyStats:
    """Latency percentiles in milliseconds over the timed iterations, and images per second."""

    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    throughput: float  # images / s at the mean latency

    @classmethod
    def from_times(cls, times_ms: Sequence[float], images_per_call: int) -> LatencyStats:
        values = np.asarray(times_ms, np.float64)
        p50, p90, p99 = (float(np.percentile(values, q)) for q in (50, 90, 99))
        mean = float(values.mean())
        return cls(p50, p90, p99, mean, float(values.min()), images_per_call * 1e3 / mean)


@dataclass
class BenchmarkResult:
    """One backend's figures; ``to_dict`` / ``to_json`` for ``--json``."""

    artifact: str
    backend: str
    device: str
    batch: int
    frame_size: list[int]  # [w, h]
    input_size: list[int]  # [h, w] network input
    threads: int | None
    warmup: int
    iters: int
    whole: LatencyStats
    bare: LatencyStats
    open_s: float
    peak_rss_mb: float
    rss_increase_mb: float
    detections: int
    options: dict[str, Any] = field(default_factory=dict)
    precision: str = ""
    cpu: str = ""  # CpuFeatures.summary(): what int8 / bf16 can gain on this CPU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_rss_mb() -> float:
    """Resident set size of this process now (Linux ``/proc``; the peak on other systems)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def synthetic_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic BGR uint8 frame: smooth gradients with a few solid shapes on top."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack([x / max(width, 1) * 255, y / max(height, 1) * 255, (x + y) / max(width + height, 1) * 255],
                     axis=2).astype(np.uint8)
    rng = np.random.default_rng(seed)
    for _ in range(6):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(max(4, min(width, height) // 20), max(8, min(width, height) // 6)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            cv2.circle(frame, (cx, cy), r, colour, -1)
        else:
            cv2.rectangle(frame, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    return frame


def _input_hw(predictor: Any) -> tuple[int, int]:
    return input_hw(predictor.metadata)  # follows the layout (uint8 artifacts are NHWC)


def benchmark(artifact: str | os.PathLike[str], *, backend: str = "auto", device: str | None = None,
              batch: int = 1, imgsz: int | tuple[int, int] | None = None, warmup: int = 5, iters: int = 50,
              threads: int | None = None, backend_options: dict[str, Any] | None = None,
              frame: np.ndarray | None = None, rect: bool = False) -> BenchmarkResult:
    """Time one backend on ``artifact`` (see the module docstring).

    Args:
        batch: images per call (a fixed-batch artifact runs in its own batch size chunks).
        imgsz: frame size, an int (square) or ``(w, h)``; default the artifact's input size.
        frame: use this BGR frame instead of the synthetic one.
        rect: rect letterbox (``Predictor(rect=True)``, dynamic artifacts): the network input is the
            smallest stride-multiple rectangle holding the frame; ``input_size`` reports it.
    """
    from edgecv.runtimes.predictor import Predictor

    if batch < 1 or iters < 1 or warmup < 0:
        raise OptionError(f"expected batch >= 1, iters >= 1, warmup >= 0, found {batch}, {iters}, {warmup}")
    before = current_rss_mb()
    start = time.perf_counter()
    predictor = Predictor(artifact, backend=backend, device=device, threads=threads, backend_options=backend_options,
                          rect=rect)
    open_s = time.perf_counter() - start
    peak = current_rss_mb()
    try:
        if frame is None:
            net_h, net_w = _input_hw(predictor)
            w, h = (imgsz, imgsz) if isinstance(imgsz, int) else (imgsz or (net_w, net_h))
            frame = synthetic_frame(int(w), int(h))
        frames = [frame] * batch
        tensor, _ = preprocess_batch(frames, predictor.metadata, predictor.batch_size, rect=rect)
        net_h, net_w = (tensor.shape[axis] for axis in predictor.metadata.hw_axes)
        infer = predictor.backend.infer
        for _ in range(warmup):
            predictor(frames)
            infer(tensor)
        times: dict[str, list[float]] = {"whole": [], "bare": []}
        detections = 0
        for i in range(iters):
            for which in (("whole", "bare") if i % 2 == 0 else ("bare", "whole")):
                t0 = time.perf_counter()
                if which == "whole":
                    # a semantic artifact's SemanticMap has no detections to count
                    detections = sum(len(d) for d in predictor(frames) if isinstance(d, Detections))
                else:
                    infer(tensor)
                times[which].append((time.perf_counter() - t0) * 1e3)
            peak = max(peak, current_rss_mb())
        precision = str(getattr(predictor.backend, "inference_precision", "") or predictor.metadata.precision)
        return BenchmarkResult(
            artifact=str(artifact), backend=predictor.backend.name, device=device or "default", batch=batch,
            frame_size=[int(frame.shape[1]), int(frame.shape[0])], input_size=[int(net_h), int(net_w)], threads=threads,
            warmup=warmup, iters=iters, whole=LatencyStats.from_times(times["whole"], batch),
            bare=LatencyStats.from_times(times["bare"], tensor.shape[0]), open_s=open_s, peak_rss_mb=peak,
            rss_increase_mb=peak - before, detections=detections, options=dict(backend_options or {}),
            precision=precision, cpu=cpu_features().summary(),
        )
    finally:
        predictor.close()


def parse_frame_size(text: str | None) -> int | tuple[int, int] | None:
    """``"640"`` -> ``640``; ``"640x480"`` -> ``(640, 480)`` (w, h); ``None`` -> ``None``.

    Raises:
        OptionError: anything else, or a size below 1.
    """
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise OptionError(f"frame size: expected N or WxH with positive integers (e.g. 640x480), found {text!r}")
    return int(parts[0]) if len(parts) == 1 else (int(parts[0]), int(parts[1]))


def parse_backend_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"openvino"`` -> ``("openvino", {})``; ``"openvino:precision=f32"`` -> ``("openvino", {"precision": "f32"})``."""
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",") if rest else []):
        key, sep, value = item.partition("=")
        if not sep:
            raise OptionError(f"backend spec {spec!r}: expected name[:key=value[,key=value]], found {item!r}")
        options[key.strip()] = {"true": True, "false": False}.get(value.strip().lower(), value.strip())
    return name.strip(), options


def compare(artifact: str | os.PathLike[str], backends: Sequence[str], **kwargs: Any) -> list[BenchmarkResult]:
    """:func:`benchmark` for every backend in ``backends`` (same frame, one after the other).

    Each entry is a name or ``name:key=value`` (backend options, e.g. ``openvino:precision=f32``).
    """
    results = []
    common = dict(kwargs.pop("backend_options", None) or {})
    for spec in backends:
        name, options = parse_backend_spec(spec)
        merged = {**common, **options}
        results.append(benchmark(artifact, backend=name, backend_options=merged or None, **kwargs))
    return results


def ratios(results: Sequence[BenchmarkResult]) -> list[dict[str, float]]:
    """Median latency of every result relative to the first one's (whole and bare)."""
    base = results[0]
    return [{"whole_p50": r.whole.p50 / base.whole.p50, "bare_p50": r.bare.p50 / base.bare.p50,
             "whole_vs_first_bare": r.whole.p50 / base.bare.p50} for r in results]


def results_table(specs: Sequence[str], results: Sequence[BenchmarkResult], title: str = "") -> Table:
    """A rich table: per backend spec, whole-predictor and bare-call p50/p90/p99 (ms), img/s, peak RSS, ratio."""
    table = Table(title=title)
    for column in ("backend", "call", "p50", "p90", "p99", "img/s", "peak RSS", "vs 1st"):
        table.add_column(column, justify="left" if column in ("backend", "call") else "right")
    for spec, result, ratio in zip(specs, results, ratios(results)):
        for call, stats, key in (("whole", result.whole, "whole_p50"), ("bare", result.bare, "bare_p50")):
            table.add_row(f"{spec} ({result.precision})" if call == "whole" else "", call, f"{stats.p50:.1f}",
                          f"{stats.p90:.1f}", f"{stats.p99:.1f}", f"{stats.throughput:.1f}",
                          f"{result.peak_rss_mb:.0f} MB" if call == "whole" else "", f"{ratio[key]:.2f}x")
    return table


def write_json(results: Sequence[BenchmarkResult], path: str | os.PathLike[str]) -> Path:
    doc = {"results": [r.to_dict() for r in results], "ratios": ratios(results)}
    return fileio.write_json(path, doc, indent=2)  # atomic: a failed write keeps the previous report
