"""Two-stage graphs whose work follows the data (the default) vs ``--static-shapes``, side by side.

    python benchmarks/bench_twostage_shapes.py [--model maskrcnn_tiny] [--imgsz 256] [--max-det 100]
                                               [--runs 3] [--iters 10] [--warmup 2] [--threads 2]

Exports ``--model`` (default the shipped tiny Mask R-CNN, conf 0.25; a torchvision builder name runs
with seeded random weights) twice, each export passing its fidelity check against torchvision:

* **data** (default): each FPN level's RoI Align pools only its own RoIs, and the mask stage runs on
  the rows some image filled;
* **static** (``--static-shapes``): every RoI pooled at every level, masks on all ``--max-det`` rows.

On a grey frame and synthetic scenes of a few and many objects (640x480), it first checks that both
graphs give the same outputs (every output, bit for bit, ONNX Runtime and OpenVINO), then times,
interleaved (:mod:`interleave`):

* **ort** / **ov**: the ONNX Runtime session / OpenVINO compiled model on the ready float tensor;
* **whole**: :class:`edgecv.runtimes.Predictor` (ONNX Runtime) on the BGR frame (letterbox,
  normalisation, inference, boxes mapped back, masks pasted at the frame's size).

Prints per-row milliseconds, the data / static ratio of each (median of per-run ratios, with
their spread) and the CPU class.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from interleave import header, interleaved_runs, ratio  # noqa: E402

FORMS = ("data", "static")
SCENES = {"empty": 0, "few": 3, "many": 8}  # ShapesDataset max_objects (0: a plain grey frame)


def _export(model: str, imgsz: int, max_det: int, form: str, out: Path) -> Path:
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    opts = ExportOptions(imgsz=imgsz, max_det=max_det, static_shapes=form == "static")
    return export_model(model, out=out, opts=opts, warn_stale=False).path


def _same_outputs(predictors: dict, ov_models: dict, tensor: np.ndarray) -> tuple[int, bool]:
    """(detections, whether both forms' outputs are identical on ORT and on OpenVINO)."""
    same = True
    ort_out = {k: p.backend.session.run(None, {p.metadata.input_name: tensor}) for k, p in predictors.items()}
    ov_out = {k: [np.asarray(v) for v in m(tensor).values()] for k, m in ov_models.items()}
    for outs in (ort_out, ov_out):
        same &= all(np.array_equal(a, b) for a, b in zip(outs["data"], outs["static"]))
    return int(ort_out["static"][0][0, 0]), same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="maskrcnn_tiny", help="two-stage model name (edgecv export's)")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--max-det", type=int, default=100, help="K: static graphs run the mask stage on K rows")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import openvino as ov

    from edgecv.data.synthetic import ShapesDataset
    from edgecv.runtimes import Predictor
    from edgecv.runtimes.preprocess import preprocess_batch

    frames = {name: ShapesDataset("val", 1, (480, 640), seed=8, max_objects=count)[0].image if count
              else np.full((480, 640, 3), 114, np.uint8) for name, count in SCENES.items()}
    with tempfile.TemporaryDirectory(prefix="edgecv_twostage_shapes_") as tmp:
        paths = {form: _export(args.model, args.imgsz, args.max_det, form, Path(tmp) / f"{form}.onnx") for form in FORMS}
        predictors = {form: Predictor(path, backend="onnxruntime", threads=args.threads) for form, path in paths.items()}
        core = ov.Core()
        ov_models = {form: core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": args.threads})
                     for form, path in paths.items()}
        calls, found = {}, {}
        for scene, frame in frames.items():
            tensor, _ = preprocess_batch([frame], predictors["static"].metadata, batch_size=1)
            found[scene], same = _same_outputs(predictors, ov_models, tensor)
            if not same:
                raise SystemExit(f"{scene}: the two forms' outputs differ (expected identical)")
            for form in FORMS:
                session, name = predictors[form].backend.session, predictors[form].metadata.input_name
                calls[f"{scene} ort {form}"] = lambda s=session, n=name, t=tensor: s.run(None, {n: t})
                calls[f"{scene} ov {form}"] = lambda m=ov_models[form], t=tensor: m(t)
                calls[f"{scene} whole {form}"] = lambda p=predictors[form], f=frame: p(f)
        runs = interleaved_runs(calls, args.runs, args.iters, args.warmup)
        for predictor in predictors.values():
            predictor.close()
    print(header(f"{args.model} at {args.imgsz}, data-dependent vs --static-shapes, max_det {args.max_det}, "
                 f"fp32, frame 640x480", args.runs, args.iters, args.threads))
    print("outputs identical (ONNX Runtime and OpenVINO) on every scene")
    for scene in SCENES:
        for kind in ("ort", "ov", "whole"):
            a, b = runs[f"{scene} {kind} data"], runs[f"{scene} {kind} static"]
            print(f"{scene:5s} ({found[scene]:3d} dets) {kind:5s} data {np.median(a):7.1f} ms  static "
                  f"{np.median(b):7.1f} ms  data/static {ratio(a, b)}")


if __name__ == "__main__":
    main()
