"""edgecv's CPU backends vs ONNX Runtime fp32, the fair race against Ultralytics, and the light-import budget.

    nice -n 19 python benchmarks/bench_backends.py --out /tmp/bench_backends --runs 5 --iters 10
    python benchmarks/bench_backends.py --artifact mine=exports/model.onnx   # another artifact as extra rows

Every figure is the median of ``--runs`` interleaved runs (A,B,C,A,B,C,...: every row once per run
as a block of ``--warmup`` + ``--iters`` calls; :mod:`interleave`), every ratio the median of the
per-run ratios with their min-max; each table names the CPU class (``cpu_features()``).
``--clock cpu --threads 1``: process CPU time per call instead of wall time, the figure that
survives a machine shared with other jobs (it measures work, not waiting for a core). Sections:

1. **demo**: the demo YOLO at 640 (``edgecv export yolo --imgsz 640``). The baseline ("bare") is a
   default ONNX Runtime fp32 session on a ready float tensor; every edgecv path is timed as a
   *whole predictor call* (letterbox + normalise + infer + post-process -> Detections) and as its
   *backend alone* on the ready tensor (``predictor.backend.infer``); the gap is the predictor's
   overhead. Paths: onnxruntime fp32, openvino f32, openvino device precision (bf16 on
   AVX512-BF16/AMX), int8 QDQ graphs (onnxruntime target on ONNX Runtime and OpenVINO, openvino
   target on OpenVINO), the ``--input uint8`` export (ONNX Runtime fp32, OpenVINO f32 and its
   openvino-target int8 graph) and, per ``--artifact LABEL=PATH``, another artifact on ONNX Runtime
   and OpenVINO. Every artifact is re-made by each run (the code under test). Targets (AVX512-VNNI/AMX): best <= 0.36x bare, overhead
   <= 5 % of the best path.
2. **ultralytics**: :mod:`bench_ultralytics_race` (YOLOv8n, edgecv vs Ultralytics at equal
   precision and best vs best, Ultralytics' own NNCF int8 export included).
3. **rect**: a ``--dynamic`` export letterboxed to 480x640 (``rect=True``), and a static
   ``--imgsz 640x480`` export, against the same square baseline: 25 % fewer pixels, a user-facing win for 4:3 cameras, not a like-for-like figure.
4. **import**: ``import edgecv.runtimes`` + open an ONNX predictor in a fresh interpreter: seconds,
   and that no torch module was imported.

Needs the export extra, openvino, and for section 2 the bench extra (ultralytics, nncf).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # helpers beside this file; edgecv from a checkout

from interleave import header, interleaved_runs, ratio  # noqa: E402

THREADS = 2


def frame_640() -> np.ndarray:
    from edgecv.data.synthetic import ShapesDataset

    return np.ascontiguousarray(ShapesDataset("val", length=1, imgsz=(480, 640), seed=5)[0].image)


def bare_session(path: Path):
    """The baseline: a default ONNX Runtime CPU session (all graph optimisations) with THREADS threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def demo_artifacts(out: Path, extra: dict[str, Path]) -> dict[str, Path]:
    """The demo 640 fp32 export, its int8 graphs, the ``--input uint8`` export and its openvino-target
    int8 graph, all re-made under ``out/demo640`` by every run (the code under test), plus ``extra``."""
    import shutil

    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    folder = out / "demo640"
    if folder.exists():
        shutil.rmtree(folder)
    artifacts = {"fp32": folder / "float" / "model.onnx", "uint8": folder / "uint8" / "model.onnx"}
    for key, kind in (("fp32", "float"), ("uint8", "uint8")):
        export_model("yolo", out=artifacts[key], opts=ExportOptions(imgsz=640, input=kind))
    try:
        from edgecv.calibration import quantize
    except ImportError as exc:
        print(f"(int8 rows skipped: edgecv.calibration not importable: {exc})")
        return {**artifacts, **extra}
    for key, target in (("fp32", "onnxruntime"), ("fp32", "openvino"), ("uint8", "openvino")):
        name = f"int8-{target}" if key == "fp32" else f"uint8 int8-{target}"
        path = artifacts[name] = artifacts[key].with_name(f"model_int8_{target}.onnx")
        quantize(artifacts[key], path, samples=64, target=target, cache=artifacts[key].with_name("calib.json"))
    return {**artifacts, **extra}


def demo_rows(artifacts: dict[str, Path], extra: dict[str, Path]) -> list[tuple[str, str, str, dict]]:
    """``(label, artifact key, backend, backend_options)`` of every demo path."""
    rows = [("onnxruntime fp32", "fp32", "onnxruntime", {}),
            ("openvino f32", "fp32", "openvino", {"precision": "f32"}),
            ("openvino device precision", "fp32", "openvino", {})]
    if "int8-onnxruntime" in artifacts:
        rows += [("onnxruntime int8 (ort target)", "int8-onnxruntime", "onnxruntime", {}),
                 ("openvino int8 (openvino target)", "int8-openvino", "openvino", {}),
                 ("openvino int8 (ort target)", "int8-onnxruntime", "openvino", {})]
    rows += [("uint8 input onnxruntime fp32", "uint8", "onnxruntime", {}),
             ("uint8 input openvino f32", "uint8", "openvino", {"precision": "f32"})]
    if "uint8 int8-openvino" in artifacts:
        rows.append(("uint8 input openvino int8 (openvino target)", "uint8 int8-openvino", "openvino", {}))
    for label in extra:
        rows += [(f"{label} onnxruntime", label, "onnxruntime", {}), (f"{label} openvino", label, "openvino", {})]
    return rows


def demo_section(out: Path, runs: int, iters: int, warmup: int, extra: dict[str, Path], clock: str = "wall") -> None:
    from edgecv.runtimes import Predictor
    from edgecv.runtimes.preprocess import preprocess_batch

    artifacts = demo_artifacts(out, extra)
    frame = frame_640()
    session = bare_session(artifacts["fp32"])
    predictors = {label: Predictor(artifacts[key], backend=backend, threads=THREADS, backend_options=opts)
                  for label, key, backend, opts in demo_rows(artifacts, extra)}
    fp32_tensor, _ = preprocess_batch([frame], predictors["onnxruntime fp32"].metadata, 1)
    calls: dict[str, Callable[[], object]] = {"BARE ort fp32 session": lambda: session.run(None, {"images": fp32_tensor})}
    in_call: dict[str, list[float]] = {label: [] for label in predictors}  # per call: share outside infer
    for label, predictor in predictors.items():
        tensor, _ = preprocess_batch([frame], predictor.metadata, 1)  # what this artifact's input takes
        calls[label] = lambda p=predictor, shares=in_call[label]: _timed_call(p, frame, shares)
        calls[f"{label} | backend alone"] = lambda p=predictor, t=tensor: p.backend.infer(t)
    timed = interleaved_runs(calls, runs, iters, warmup, clock)
    demo_table(timed, predictors, frame, runs, iters, clock, in_call)
    for predictor in predictors.values():
        predictor.close()


def _timed_call(predictor: Any, frame: np.ndarray, shares: list[float]) -> object:
    """One whole predictor call (what ``predictor(frame)`` runs), keeping the share of it spent outside
    the backend's ``infer``: measured inside the call, so no other call's noise enters it."""
    results, timing = predictor.predict_timed([frame])
    shares.append((timing["total_ms"] - timing["infer_ms"]) / timing["total_ms"])
    return results


def demo_table(timed: dict[str, list[float]], predictors: dict[str, Any], frame: np.ndarray, runs: int,
               iters: int, clock: str = "wall", in_call: dict[str, list[float]] | None = None) -> None:
    """The demo table. "overhead" = (whole - backend alone) / whole from separate blocks; "in-call" = the
    median share of each whole call spent outside ``backend.infer`` (pre- and post-processing)."""
    bare = timed["BARE ort fp32 session"]
    print(header("demo YOLO 640x640, frame 640x480: whole predictor vs bare", runs, iters, THREADS, clock))
    print(f"{'path [runs at]':46s} {'whole ms':>9s} {'x bare [min-max]':>24s} {'backend ms':>11s} "
          f"{'overhead':>9s} {'in-call':>8s}  dets")
    in_call = in_call or {}
    print(f"{'BARE ort fp32 session':46s} {statistics.median(bare):9.2f} {'1.000x':>24s}")
    for label, predictor in predictors.items():
        whole, alone = timed[label], timed[f"{label} | backend alone"]
        precision = getattr(predictor.backend, "inference_precision", "")
        gap = ratio([w - a for w, a in zip(whole, alone)], whole)  # overhead as a share of the whole call
        name = label + (f" [{precision}]" if precision else "")
        share = f"{statistics.median(in_call[label]):.1%}" if in_call.get(label) else "-"
        print(f"{name:46s} {statistics.median(whole):9.2f} {str(ratio(whole, bare)):>24s} "
              f"{statistics.median(alone):11.2f} {gap.median:8.1%} {share:>8s}  {len(predictor(frame))}")
    best = min(predictors, key=lambda label: statistics.median(timed[label]))
    gap = ratio([w - a for w, a in zip(timed[best], timed[f"{best} | backend alone"])], timed[best])
    print(f"best whole-predictor path: {best} = {ratio(timed[best], bare)} bare (target <= 0.36x on "
          f"AVX512-VNNI/AMX); its overhead {gap.median:.1%} [{gap.low:.1%}-{gap.high:.1%}] of its time "
          f"between blocks, {statistics.median(in_call[best]) if in_call.get(best) else float('nan'):.1%} "
          f"measured inside each call (target <= 5 %)")


def rect_section(out: Path, runs: int, iters: int, warmup: int, clock: str = "wall") -> None:
    """Kept apart from the square figure: a ``--dynamic`` export letterboxed to the smallest
    stride-multiple rectangle (the 640x480 frame runs at 480x640, 25 % fewer pixels), and a static
    ``--imgsz 640x480`` export of the frame's own shape, vs the same baseline (the bare fp32 session
    on the full 640x640 square)."""

    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions
    from edgecv.runtimes import Predictor
    from edgecv.runtimes.preprocess import preprocess_batch

    square, dynamic = out / "demo640" / "float" / "model.onnx", out / "demo640_dynamic" / "model.onnx"
    if not square.is_file():
        export_model("yolo", out=square, opts=ExportOptions(imgsz=640))
    export_model("yolo", out=dynamic, opts=ExportOptions(imgsz=640, dynamic=True))  # re-made: the code under test
    static = out / "demo640x480" / "model.onnx"  # a static non-square export (--imgsz 640x480): the frame's shape
    export_model("yolo", out=static, opts=ExportOptions(imgsz=(640, 480)))
    artifacts = {"fp32": dynamic, "static": static}
    try:
        from edgecv.calibration import quantize

        artifacts["int8"] = dynamic.with_name("model_int8_openvino.onnx")
        quantize(dynamic, artifacts["int8"], samples=64, target="openvino", cache=False)
        artifacts["static int8"] = static.with_name("model_int8_openvino.onnx")
        quantize(static, artifacts["static int8"], samples=64, target="openvino", cache=False)
    except ImportError as exc:
        print(f"(int8 rect row skipped: edgecv.calibration not importable: {exc})")
    frame = frame_640()
    session = bare_session(square)
    rows = [("onnxruntime fp32, square", "fp32", "onnxruntime", False),
            ("onnxruntime fp32, rect", "fp32", "onnxruntime", True),
            ("openvino device precision, rect", "fp32", "openvino", True)]
    rows.append(("onnxruntime fp32, static 640x480 export", "static", "onnxruntime", False))
    if "int8" in artifacts:
        rows += [("openvino int8 (openvino target), rect", "int8", "openvino", True),
                 ("openvino int8, static 640x480 export", "static int8", "openvino", False)]
    predictors = {label: Predictor(artifacts[art], backend=backend, threads=THREADS, rect=rect)
                  for label, art, backend, rect in rows}
    tensor, _ = preprocess_batch([frame], predictors["onnxruntime fp32, square"].metadata, 1)
    calls: dict[str, Callable[[], object]] = {"BARE ort fp32 session (square)":
                                              lambda: session.run(None, {"images": tensor})}
    calls.update({label: (lambda p=p: p(frame)) for label, p in predictors.items()})
    timed = interleaved_runs(calls, runs, iters, warmup, clock)
    bare = timed["BARE ort fp32 session (square)"]
    print(header("rect letterbox (dynamic export, frame 640x480 -> 480x640 input); NOT the square figure",
                 runs, iters, THREADS, clock))
    for label, values in timed.items():
        dets = "" if label.startswith("BARE") else str(len(predictors[label](frame)))
        print(f"{label:44s} {statistics.median(values):8.2f} ms  {str(ratio(values, bare)):>24s}  {dets}")
    for predictor in predictors.values():
        predictor.close()


IMPORT_SCRIPT = """
import sys, time
start = time.perf_counter()
import edgecv.runtimes
from edgecv.runtimes import Predictor
predictor = Predictor(sys.argv[1])
print(time.perf_counter() - start, any(m.split('.')[0] == 'torch' for m in sys.modules))
"""


def import_section(out: Path) -> None:
    artifact = out / "demo640" / "float" / "model.onnx"
    if not artifact.is_file():
        print("(import section needs the demo section's artifact)")
        return
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    runs = []
    for _ in range(5):
        result = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT, str(artifact)], capture_output=True, text=True,
                                env=env, check=True)
        seconds, torch_loaded = result.stdout.split()
        runs.append(float(seconds))
    print("\n== import edgecv.runtimes + open the 640 ONNX predictor, fresh interpreter, 5 runs ==")
    print(f"median {statistics.median(runs):.3f} s, min {min(runs):.3f} s (target < 0.5 s); "
          f"torch in sys.modules: {torch_loaded}")


def parse_artifacts(values: list[str]) -> dict[str, Path]:
    """``--artifact LABEL=PATH`` values -> ``{label: path}`` (one-line errors on bad input)."""
    extra = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not label or not Path(path).is_file():
            raise SystemExit(f"--artifact: expected LABEL=PATH of an existing file, found {value!r}")
        extra[label] = Path(path)
    return extra


def main(argv: list[str] | None = None) -> int:
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/edgecv_bench_backends"))
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs, >= 3")
    parser.add_argument("--iters", type=int, default=10, help="timed calls per row per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per row per run")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every runtime (default 2)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time (a shared machine's work figure; use with --threads 1)")
    parser.add_argument("--artifact", action="append", default=[], metavar="LABEL=PATH",
                        help="extra demo-section artifact (your own export), run on ORT and OpenVINO")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: demo,rect,ultralytics,import")
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error(f"--runs: at least 3 interleaved runs expected, found {args.runs}")
    extra = parse_artifacts(args.artifact)
    THREADS = args.threads  # read by every section
    args.out.mkdir(parents=True, exist_ok=True)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if "demo" not in skip:
        demo_section(args.out, args.runs, args.iters, args.warmup, extra, args.clock)
    if "ultralytics" not in skip:
        from bench_ultralytics_race import run_race

        run_race(args.out / "race", args.runs, args.iters, args.warmup, THREADS, args.clock)
    if "rect" not in skip:
        rect_section(args.out, args.runs, args.iters, args.warmup, args.clock)
    if "import" not in skip:
        import_section(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
