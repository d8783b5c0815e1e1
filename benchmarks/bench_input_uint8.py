"""Whole predictor vs bare session, float-input vs uint8-input artifact, side by side in one run.

    python benchmarks/bench_input_uint8.py --imgsz 640 --frame 1280x720 --iters 30 --runs 3

Exports the demo YOLO (fp32, float input, no fidelity check: speed only) and converts it to a
uint8-input artifact (:func:`edgecv.export.uint8_input.export_uint8_input`: the same network with
the ``edgecv_pre/`` prefix). For each backend (ONNX Runtime, OpenVINO when installed) and each
artifact it times, interleaved in one loop so every configuration sees the same machine state:

* ``bare``: ``backend.infer`` on a ready input tensor (float32 NCHW, or uint8 NHWC);
* ``whole``: ``predictor(frame)`` = letterbox (+ normalise for float) -> infer -> post-process,
  with the predictor's reused input buffers;
* ``whole, new buffers``: the same with a new input tensor per frame (the path before buffer
  reuse): ``preprocess_batch`` without ``allocate`` + ``run_tensor``;
* ``pre``: the pre-processing alone (pooled buffer).

Artifacts (``--kinds``): ``float``, ``uint8`` (``--input uint8``) and ``uint8+frame`` (``--input uint8
--frame WxH``: the letterbox in the graph too; the predictor only copies the frame in).

``onnxruntime-iobinding`` is ONNX Runtime with IO binding on the CPU (does binding pay there?).

The reference is the issue's "bare": the ONNX Runtime fp32 session of the float artifact on a
ready float tensor. Printed: per configuration the median over ``--runs`` of each run's median
(ms) and the spread (max - min of the run medians), the ratio to the reference, and the
whole-vs-bare gap of the same backend and artifact (ms and % of the whole call). The CPU class
(:func:`edgecv.runtimes.cpu.cpu_features`) is printed with the figures. ONNX Runtime runs with
``spinning=False`` (idle threads sleep) in every configuration, so a shared machine is not starved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from edgecv.errors import MissingDependencyError  # noqa: E402
from edgecv.runtimes import Predictor  # noqa: E402
from edgecv.runtimes.cpu import cpu_features  # noqa: E402
from edgecv.runtimes.preprocess import preprocess_batch  # noqa: E402

REFERENCE = "onnxruntime float bare"
#: Benchmark backend name -> (edgecv backend, backend options).
BACKENDS = {"onnxruntime": ("onnxruntime", {"spinning": False}),
            "onnxruntime-iobinding": ("onnxruntime", {"spinning": False, "io_binding": True})}


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)`` (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1280x720, found {text!r}") from None
    return width, height


def make_frame(size: tuple[int, int]) -> np.ndarray:
    """skimage's astronaut (bundled, no download) as a BGR uint8 frame of ``size`` (w, h)."""
    from skimage import data

    return cv2.resize(np.ascontiguousarray(data.astronaut()[:, :, ::-1]), size, interpolation=cv2.INTER_AREA)


def artifacts(folder: Path, imgsz: int, frame: tuple[int, int]) -> dict[str, Path]:
    """The demo YOLO at ``imgsz`` as float-input and uint8-input artifacts, and uint8 with the
    letterbox of ``frame`` (w, h) in the graph too (``export --frame``)."""
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions
    from edgecv.export.uint8_input import export_uint8_input

    float_path = export_model("yolo", out=folder / "model.onnx", opts=ExportOptions(imgsz=imgsz, check=False),
                              warn_stale=False).path
    return {"float": float_path, "uint8": export_uint8_input(float_path, folder / "model_uint8.onnx"),
            "uint8+frame": export_uint8_input(float_path, folder / "model_uint8_frame.onnx", frame_wh=frame)}


def configurations(predictors: dict[tuple[str, str], Predictor], frame: np.ndarray) -> dict[str, Callable[[], object]]:
    """Name -> zero-argument callable, for every (backend, artifact) pair."""
    calls: dict[str, Callable[[], object]] = {}
    for (backend, kind), predictor in predictors.items():
        meta, batch = predictor.metadata, predictor.batch_size
        ready, _ = preprocess_batch([frame], meta, batch)

        def fresh(p: Predictor = predictor, m=meta, b=batch) -> object:  # noqa: ANN001
            tensor, infos = preprocess_batch([frame], m, b)  # a new tensor per frame
            return p.run_tensor(tensor, infos)

        def pre(p: Predictor = predictor) -> None:
            tensor, _ = p.prepare_tensor([frame])
            p.buffers.release(tensor)

        calls[f"{backend} {kind} bare"] = lambda infer=predictor.backend.infer, t=ready: infer(t)
        calls[f"{backend} {kind} whole"] = lambda p=predictor: p(frame)
        calls[f"{backend} {kind} whole, new buffers"] = fresh
        calls[f"{backend} {kind} pre"] = pre
    return calls


def pre_only(paths: dict[str, Path], frame: np.ndarray, iters: int, runs: int) -> dict[str, list[float]]:
    """``--pre-only``: the runtime's pre-processing alone per artifact (no backend: reads only the
    metadata), with a new input tensor per frame and with a pooled one, interleaved."""
    import onnx

    from edgecv.metadata import METADATA_KEY, ArtifactMetadata
    from edgecv.runtimes.buffers import TensorPool

    pool, calls = TensorPool(), {}
    for kind, path in paths.items():
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        meta = ArtifactMetadata.from_json(props[METADATA_KEY])

        def pooled(m: ArtifactMetadata = meta) -> None:
            pool.release(preprocess_batch([frame], m, 1, allocate=pool.acquire)[0])
        calls[f"{kind} pre, new tensor"] = lambda m=meta: preprocess_batch([frame], m, 1)
        calls[f"{kind} pre, pooled tensor"] = pooled
    return timed_runs(calls, iters, runs, warmup=3)


def timed_runs(calls: dict[str, Callable[[], object]], iters: int, runs: int, warmup: int) -> dict[str, list[float]]:
    """Per configuration, the median (ms) of each run; configurations interleaved, order rotated per iteration."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    medians: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(runs):
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(iters):
            for name in names[i % len(names):] + names[:i % len(names)]:
                start = time.perf_counter()
                calls[name]()
                times[name].append((time.perf_counter() - start) * 1e3)
        for name in names:
            medians[name].append(statistics.median(times[name]))
    return medians


def report(medians: dict[str, list[float]]) -> None:
    """The table: median of run medians, spread, ratio to the reference, gap to the same pair's bare."""
    reference = statistics.median(medians[REFERENCE])
    print(f"{'configuration':44s} {'median ms':>10s} {'spread':>8s} {'vs ref':>7s} {'gap ms':>8s} {'gap %':>6s}")
    for name, values in medians.items():
        mid = statistics.median(values)
        line = f"{name:44s} {mid:10.2f} {max(values) - min(values):8.2f} {mid / reference:6.3f}x"
        if " whole" in name:
            bare = statistics.median(medians[name.split(" whole")[0] + " bare"])
            line += f" {mid - bare:8.2f} {100 * (mid - bare) / mid:5.1f}%"
        print(line)
    print(f"reference: {REFERENCE} = {reference:.2f} ms; gap = whole - bare of the same backend and artifact")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imgsz", type=int, default=640, help="network input size (square)")
    parser.add_argument("--frame", type=parse_size, default=(1280, 720), help="camera frame WxH")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads per backend")
    parser.add_argument("--backends", default="onnxruntime,onnxruntime-iobinding,openvino",
                        help="onnxruntime-iobinding: ONNX Runtime with IO binding (CPU-bound inputs and outputs)")
    parser.add_argument("--pre-only", action="store_true", help="time the pre-processing alone (no inference)")
    parser.add_argument("--kinds", default="float,uint8,uint8+frame", help="artifacts to time")
    parser.add_argument("--out", type=Path, default=None, help="folder for the artifacts (default: a temp folder)")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if "onnxruntime" not in backends:
        backends.insert(0, "onnxruntime")  # the reference
    with tempfile.TemporaryDirectory() as tmp:
        paths = artifacts(args.out or Path(tmp), args.imgsz, args.frame)
        paths = {kind: path for kind, path in paths.items() if kind in args.kinds.split(",")}
        frame = make_frame(args.frame)
        if args.pre_only:
            for name, values in pre_only(paths, frame, args.iters, args.runs).items():
                print(f"{name:36s} median {statistics.median(values):7.3f} ms, spread {max(values) - min(values):.3f}")
            print(f"frame {args.frame[0]}x{args.frame[1]} -> {args.imgsz}; CPU: {cpu_features().summary()}")
            return
        predictors: dict[tuple[str, str], Predictor] = {}
        try:
            for backend in backends:
                for kind, path in paths.items():
                    name, options = BACKENDS.get(backend, (backend, {}))
                    try:
                        predictors[(backend, kind)] = Predictor(path, backend=name, threads=args.threads,
                                                                backend_options=options)
                    except MissingDependencyError as exc:  # e.g. openvino not installed: say so, measure the rest
                        print(f"skipping {backend}: {exc}")
                        break
            medians = timed_runs(configurations(predictors, frame), args.iters, args.runs, args.warmup)
            allocations = {f"{b} {k}": p.buffers.allocations for (b, k), p in predictors.items()}
        finally:
            for predictor in predictors.values():
                predictor.close()
    print(f"demo YOLO fp32 at {args.imgsz}x{args.imgsz}, frame {args.frame[0]}x{args.frame[1]}, threads "
          f"{args.threads or 'default'}, {args.runs} runs x {args.iters} interleaved iterations")
    report(medians)
    print(f"input tensors allocated per predictor over the whole run: {allocations}")
    print(f"CPU: {cpu_features().summary()}")


if __name__ == "__main__":
    main()
