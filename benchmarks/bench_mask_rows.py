"""The Mask R-CNN mask stage on the detected rows (``--mask-rows detected``, the default) vs on all
``--max-det`` rows (``--mask-rows all``): the shipped tiny Mask R-CNN, side by side.

    python benchmarks/bench_mask_rows.py [--model maskrcnn_tiny] [--imgsz 256] [--max-det 100]
                                         [--runs 3] [--iters 10] [--warmup 2] [--threads 2]

Exports ``--model`` twice (the shipped demo weights, conf 0.25; each export passes its fidelity
check against torchvision) and, on synthetic scenes holding 0, a few and many objects
(a grey frame; :class:`~edgecv.data.synthetic.ShapesDataset` scenes of ``max_objects`` 3 / 8), first checks that both
graphs give the same outputs (every output, bit for bit, ONNX Runtime and OpenVINO), then times,
interleaved (:mod:`interleave`):

* **ort** / **ov**: the ONNX Runtime session / OpenVINO compiled model on the ready float tensor;
* **whole**: :class:`edgecv.runtimes.Predictor` (ONNX Runtime) on the BGR frame (letterbox,
  normalisation, inference, boxes mapped back, masks pasted at the frame's size).

Prints per-row milliseconds, the detected / all ratio of each (median of per-run ratios, with
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

FORMS = ("detected", "all")
SCENES = {"empty": 0, "few": 3, "many": 8}  # ShapesDataset max_objects (0: a plain grey frame)


def _export(model: str, imgsz: int, max_det: int, rows: str, out: Path) -> Path:
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    return export_model(model, out=out, opts=ExportOptions(imgsz=imgsz, max_det=max_det, mask_rows=rows),
                        warn_stale=False).path


def _same_outputs(predictors: dict, ov_models: dict, tensor: np.ndarray) -> tuple[int, bool]:
    """(detections, whether both forms' outputs are identical on ORT and on OpenVINO)."""
    same = True
    ort_out = {k: p.backend.session.run(None, {p.metadata.input_name: tensor}) for k, p in predictors.items()}
    ov_out = {k: [np.asarray(v) for v in m(tensor).values()] for k, m in ov_models.items()}
    for outs in (ort_out, ov_out):
        same &= all(np.array_equal(a, b) for a, b in zip(outs["detected"], outs["all"]))
    return int(ort_out["all"][0][0, 0]), same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="maskrcnn_tiny", help="Mask R-CNN model name (edgecv export's)")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--max-det", type=int, default=100, help="K: 'all' runs the mask stage on K rows")
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
    with tempfile.TemporaryDirectory(prefix="edgecv_mask_rows_") as tmp:
        paths = {rows: _export(args.model, args.imgsz, args.max_det, rows, Path(tmp) / f"{rows}.onnx") for rows in FORMS}
        predictors = {rows: Predictor(path, backend="onnxruntime", threads=args.threads) for rows, path in paths.items()}
        core = ov.Core()
        ov_models = {rows: core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": args.threads})
                     for rows, path in paths.items()}
        calls, found = {}, {}
        for scene, frame in frames.items():
            tensor, _ = preprocess_batch([frame], predictors["all"].metadata, batch_size=1)
            found[scene], same = _same_outputs(predictors, ov_models, tensor)
            if not same:
                raise SystemExit(f"{scene}: the two forms' outputs differ (expected identical)")
            for rows in FORMS:
                session, name = predictors[rows].backend.session, predictors[rows].metadata.input_name
                calls[f"{scene} ort {rows}"] = lambda s=session, n=name, t=tensor: s.run(None, {n: t})
                calls[f"{scene} ov {rows}"] = lambda m=ov_models[rows], t=tensor: m(t)
                calls[f"{scene} whole {rows}"] = lambda p=predictors[rows], f=frame: p(f)
        runs = interleaved_runs(calls, args.runs, args.iters, args.warmup)
        for predictor in predictors.values():
            predictor.close()
    print(header(f"{args.model} at {args.imgsz}, --mask-rows detected vs all, max_det {args.max_det}, "
                 f"fp32, frame 640x480", args.runs, args.iters, args.threads))
    print("outputs identical (ONNX Runtime and OpenVINO) on every scene")
    for scene in SCENES:
        for kind in ("ort", "ov", "whole"):
            a, b = runs[f"{scene} {kind} detected"], runs[f"{scene} {kind} all"]
            print(f"{scene:5s} ({found[scene]:2d} dets) {kind:5s} detected {np.median(a):7.1f} ms  all "
                  f"{np.median(b):7.1f} ms  detected/all {ratio(a, b)}")


if __name__ == "__main__":
    main()
