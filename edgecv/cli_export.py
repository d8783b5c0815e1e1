"""The ``edgecv export``, ``calibrate`` and ``build`` commands: a model becomes artifacts.

Registered on :data:`edgecv.cli.app` when :mod:`edgecv.cli` imports this module. Thin like the rest
of the CLI: :func:`edgecv.export.api.export_variants` exports (int8 / fp16 / engine beside it),
:func:`edgecv.calibration.quantize` quantizes an fp32 artifact, :func:`edgecv.export.tensorrt_build.build_engine`
builds a TensorRT engine.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from edgecv.cli import app, console, user_errors


@app.command()
@user_errors
def export(
    model: str = typer.Argument("yolo", help="Model family, e.g. 'yolo'."),
    weights: Optional[Path] = typer.Option(None, help="Checkpoint (.pt); default: the built-in demo weights."),
    imgsz: Optional[str] = typer.Option(None, help="Input size: N (square) or WIDTHxHEIGHT, e.g. 640x384 for a 16:9 "
                                        "camera (both multiples of 32); default: the training size."),
    batch: int = typer.Option(1, help="Batch size of the exported graph (ignored with --dynamic)."),
    dynamic: bool = typer.Option(False, help="Dynamic batch, height and width."),
    max_det: int = typer.Option(100, help="Maximum detections per image (K of the output contract), <= 3840."),
    max_candidates: int = typer.Option(3840, help="Candidates kept by best class score before NMS (<= 3840: "
                                       "TensorRT's TopK/NMS limits); 0 = no cap (ONNX Runtime/OpenVINO only)."),
    conf: float = typer.Option(0.25, help="Score threshold inside the graph."),
    iou: float = typer.Option(0.45, help="NMS IoU threshold."),
    opset: int = typer.Option(17, help="ONNX opset."),
    out: Optional[Path] = typer.Option(None, help="Output .onnx path; default exports/<model>/model.onnx."),
    names: Optional[str] = typer.Option(None, help="Comma-separated class names (needed for a plain state dict)."),
    size: str = typer.Option("n", help="Model size for a plain state dict (n, s, m)."),
    num_classes: Optional[int] = typer.Option(None, help="torchvision families: head size (torchvision's "
                                              "num_classes; SSD counts the background) when no --weights says it."),
    trust_weights: bool = typer.Option(False, "--trust-weights", help="Allow pickled code in the checkpoint (weights_only=False)."),
    check: bool = typer.Option(True, help="Run the PyTorch vs ONNX Runtime fidelity check."),
    fidelity_atol: Optional[float] = typer.Option(None, help="Fidelity check: absolute tolerance as a fraction of "
                                                  "each output's range (boxes: input size in px; scores: 1). Default 1e-4."),
    fidelity_rtol: Optional[float] = typer.Option(None, help="Fidelity check: relative tolerance, |onnx - torch| <= "
                                                  "atol*range + rtol*|torch|. Default 1e-4."),
    fidelity_match: Optional[float] = typer.Option(None, help="Fidelity check: share of detections that must match "
                                                   "(same class, IoU >= 0.99). Default 0.99."),
    check_images: Optional[Path] = typer.Option(None, help="Folder of your own images for the fidelity check "
                                                "(default: synthetic scenes; at most 32 are used)."),
    int8: bool = typer.Option(False, "--int8", help="Also write model_int8_<target>.onnx (calibrated int8 QDQ graph)."),
    calib_data: str = typer.Option("shapes", help="Calibration data: 'shapes', image folder, COCO folder or video."),
    calib_method: str = typer.Option("percentile", help="Range calibration: minmax, entropy or percentile."),
    calib_samples: int = typer.Option(256, help="Number of calibration images."),
    target: Optional[str] = typer.Option(None, help="int8 target: onnxruntime, tensorrt or openvino "
                                         "(default: tensorrt with --engine, else onnxruntime)."),
    max_drop: Optional[float] = typer.Option(None, min=0.0, help="Max mAP50-95 drop in points; keeps sensitive layers float."),
    eval_count: int = typer.Option(300, help="With --int8: synthetic images for the fp32 vs int8 comparison."),
    class_map: Optional[str] = typer.Option(None, help="With --int8: dataset category -> model class for the fp32 vs "
                                            "int8 comparison where names differ, e.g. 'circle=person,square=car' "
                                            "(a COCO-named head on the synthetic shapes) or a JSON file."),
    fp16: bool = typer.Option(False, "--fp16", help="Also write model_fp16.onnx (fp16 graph, fp32 I/O)."),
    probs: bool = typer.Option(False, "--probs", help="Semantic segmentation: also output probs [B,C,H,W] (softmax)."),
    input_kind: str = typer.Option("float", "--input", help="Input pixels: 'float' (float32 [B,3,H,W], normalised "
                                   "by the runtime) or 'uint8' (uint8 [B,H,W,3] BGR frames; cast, colours, "
                                   "scaling and layout inside the graph)."),
    frame: Optional[str] = typer.Option(None, help="With --input uint8: camera frame WIDTHxHEIGHT (e.g. 1280x720) "
                                        "letterboxed inside the graph too; the artifact then takes those frames as they are."),
    static_shapes: bool = typer.Option(False, "--static-shapes", help="Faster / Mask R-CNN: no data-dependent "
                                       "shape (RoI Align at every FPN level, masks on all --max-det rows): "
                                       "slower, a cost that does not follow the scene."),
    engine: bool = typer.Option(False, "--engine", help="Also build a TensorRT engine (GPU machine) from the "
                                "int8 graph with --int8, else the fp16 graph with --fp16, else fp32."),
    plugins: Optional[str] = typer.Option(None, "--plugins", help="Also write <graph>.trt.onnx with edgecv's "
                                          "TensorRT plugin nodes ('all' or names: BatchedNMS,MultiLevelRoIAlign); "
                                          "--engine then builds from it. Not yet run on a GPU."),
) -> None:
    """Export a trained model to ONNX with decode + NMS in the graph (optionally int8 / fp16 beside it)."""
    from edgecv.export.api import export_variants
    from edgecv.export.onnx_export import ExportOptions, parse_imgsz
    from edgecv.export.uint8_input import parse_frame

    opts = ExportOptions(imgsz=parse_imgsz(imgsz), batch=batch, dynamic=dynamic, max_det=max_det, conf=conf, iou=iou,
                         opset=opset, check=check)
    fidelity = {"fidelity_atol": fidelity_atol, "fidelity_rtol": fidelity_rtol, "fidelity_match": fidelity_match}
    opts = dataclasses.replace(opts, check_images=check_images, **{k: v for k, v in fidelity.items() if v is not None})
    opts.max_candidates = max_candidates or None
    opts.probs = probs
    opts.input = input_kind
    opts.frame = parse_frame(frame)
    opts.static_shapes = static_shapes
    class_names = [n.strip() for n in names.split(",")] if names else None
    calibration = {"data": calib_data, "method": calib_method, "samples": calib_samples, "max_drop": max_drop,
                   "eval_count": eval_count, **({"target": target} if target else {}),
                   **({"class_map": class_map} if class_map else {})}
    from edgecv.plugins import parse_plugin_option

    export_variants(model, weights, out, opts, int8=calibration if int8 else None, fp16=fp16, engine=engine,
                    plugins=parse_plugin_option(plugins), trust=trust_weights, class_names=class_names, size=size, console=console,
                    **({"num_classes": num_classes} if num_classes is not None else {}))


@app.command()
@user_errors
def calibrate(
    artifact: Path = typer.Argument(..., help="fp32 edgecv artifact (.onnx) to quantize."),
    data: str = typer.Option("shapes", help="Calibration data: 'shapes', image folder, COCO folder/json or video."),
    method: str = typer.Option("percentile", help="Range calibration: minmax, entropy or percentile."),
    target: str = typer.Option("onnxruntime", help="int8 target: onnxruntime (uint8 QDQ), tensorrt (int8 sym) or openvino (uint8, conv inputs)."),
    samples: int = typer.Option(256, help="Number of calibration images."),
    seed: int = typer.Option(0, help="Seed for picking calibration images."),
    every: int = typer.Option(10, help="With a video: use every n-th frame."),
    max_drop: Optional[float] = typer.Option(None, min=0.0, help="Max mAP50-95 drop in points; keeps sensitive layers float."),
    evaluate: bool = typer.Option(False, "--evaluate", help="Compare fp32 vs int8 (implied by --max-drop)."),
    eval_data: str = typer.Option("shapes", help="Held-out evaluation data: 'shapes' or a COCO folder."),
    eval_count: int = typer.Option(300, help="Synthetic evaluation images (with --eval-data shapes)."),
    exclude: Optional[str] = typer.Option(None, help="Comma-separated node names to keep float."),
    cache: Optional[Path] = typer.Option(None, help="Calibration cache JSON; default <model>.calib.json beside it."),
    out: Optional[Path] = typer.Option(None, help="Output .onnx; default <model>_int8_<target>.onnx beside the input."),
    class_map: Optional[str] = typer.Option(None, help="Dataset category -> model class for the fp32 vs int8 "
                                            "comparison where names differ: 'circle=person,...' or a JSON file."),
) -> None:
    """Calibrate and quantize an fp32 artifact to an int8 QDQ graph for a target backend."""
    from edgecv.calibration import quantize

    nodes = [n.strip() for n in exclude.split(",")] if exclude else None
    quantize(artifact, out, data=data, method=method, target=target, samples=samples, seed=seed, max_drop=max_drop,
             exclude=nodes, evaluate=evaluate, eval_data=eval_data, eval_count=eval_count,
             cache=cache if cache else True, every=every, class_map=class_map, console=console)


@app.command()
@user_errors
def build(
    onnx_path: Path = typer.Argument(..., help="edgecv ONNX artifact (fp32, fp16 or int8 QDQ)."),
    out: Optional[Path] = typer.Option(None, help="Engine path; default <model>.engine beside the ONNX."),
    min_shape: Optional[str] = typer.Option(None, help="Profile min shape, e.g. 1x3x640x640 (dynamic ONNX only)."),
    opt_shape: Optional[str] = typer.Option(None, help="Profile opt shape in the input's layout, e.g. 4x3x640x640 "
                                            "(a --input uint8 artifact: 4x640x640x3)."),
    max_shape: Optional[str] = typer.Option(None, help="Profile max shape, e.g. 8x3x640x640."),
    workspace: Optional[int] = typer.Option(None, help="Workspace limit in MiB."),
    timing_cache: Optional[Path] = typer.Option(None, help="Timing cache file (read if present, written after)."),
    plugin: Optional[list[Path]] = typer.Option(None, help="Plugin library to load before parsing (repeatable)."),
    verbose: bool = typer.Option(False, help="TensorRT verbose log."),
    plugins: Optional[str] = typer.Option(None, "--plugins", help="Build from <model>.trt.onnx (written now) with "
                                          "edgecv's plugin nodes ('all' or names); a .trt.onnx builds as it is."),
) -> None:
    """Build a TensorRT engine (strongly typed) + model.engine.json on this GPU machine."""
    from edgecv.export.tensorrt_build import build_engine, parse_shape
    from edgecv.plugins import parse_plugin_option
    from edgecv.plugins.passes import write_plugin_graph

    names = parse_plugin_option(plugins)
    if names is not None and not onnx_path.name.endswith(".trt.onnx"):
        onnx_path = write_plugin_graph(onnx_path, names or None)

    engine = build_engine(onnx_path, out or onnx_path.with_suffix(".engine"), min_shape=parse_shape(min_shape),
                          opt_shape=parse_shape(opt_shape), max_shape=parse_shape(max_shape), workspace_mb=workspace,
                          timing_cache=timing_cache, plugins=plugin or [], verbose=verbose)
    console.print(f"[green]wrote[/] {engine} (+ {engine.name}.json)")
