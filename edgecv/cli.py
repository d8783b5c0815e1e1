"""The ``edgecv`` command line: a thin layer over the Python API.

Each command parses options, calls one API function and prints the result. User mistakes
(:class:`~edgecv.errors.EdgecvError`) print one red line and exit with code 2, no traceback.
Heavy modules are imported inside the commands so ``edgecv --help`` starts fast without torch.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgecv.errors import EdgecvError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Take trained PyTorch vision models to the edge.")
console = Console()
err_console = Console(stderr=True)


def user_errors(command: Callable) -> Callable:
    """Turn EdgecvError into a one-line message and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EdgecvError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@user_errors
def export(
    model: str = typer.Argument("yolo", help="Model family, e.g. 'yolo'."),
    weights: Optional[Path] = typer.Option(None, help="Checkpoint (.pt); default: the built-in demo weights."),
    imgsz: Optional[int] = typer.Option(None, help="Square input size (multiple of 32); default: the training size."),
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
    engine: bool = typer.Option(False, "--engine", help="Also build a TensorRT engine (GPU machine) from the "
                                "int8 graph with --int8, else the fp16 graph with --fp16, else fp32."),
    plugins: Optional[str] = typer.Option(None, "--plugins", help="Also write <graph>.trt.onnx with edgecv's "
                                          "TensorRT plugin nodes ('all' or names: BatchedNMS,MultiLevelRoIAlign); "
                                          "--engine then builds from it. Not yet run on a GPU."),
) -> None:
    """Export a trained model to ONNX with decode + NMS in the graph (optionally int8 / fp16 beside it)."""
    from edgecv.export.api import export_variants
    from edgecv.export.onnx_export import ExportOptions
    from edgecv.export.uint8_input import parse_frame

    opts = ExportOptions(imgsz=imgsz, batch=batch, dynamic=dynamic, max_det=max_det, conf=conf, iou=iou,
                         opset=opset, check=check)
    fidelity = {"fidelity_atol": fidelity_atol, "fidelity_rtol": fidelity_rtol, "fidelity_match": fidelity_match}
    opts = dataclasses.replace(opts, check_images=check_images, **{k: v for k, v in fidelity.items() if v is not None})
    opts.max_candidates = max_candidates or None
    opts.probs = probs
    opts.input = input_kind
    opts.frame = parse_frame(frame)
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
def predict(
    artifact: str = typer.Argument(..., help="Exported model (.onnx, or .engine with its .json), or a model on a "
                                   "Triton server: grpc://HOST:8001/NAME (backend triton)."),
    source: str = typer.Option(..., help="Image, folder of images, video file, camera index or stream URL."),
    save: Optional[Path] = typer.Option(None, help="Folder for annotated images/video and predictions.jsonl."),
    conf: Optional[float] = typer.Option(None, help="Extra score threshold above the artifact's."),
    threads: Optional[int] = typer.Option(None, help="Inference threads."),
    backend: str = typer.Option("auto", help="auto (by suffix), onnxruntime, openvino, tensorrt or triton."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N; default: the backend's own."),
    rect: bool = typer.Option(False, "--rect", help="Letterbox to the smallest stride-multiple rectangle "
                              "(a 640x480 frame runs at 480x640); needs an artifact exported with --dynamic."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Refuse images (and video frames) larger "
                                             "than this many pixels, before decoding; default 100000000; 0: no limit."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many frames."),
    policy: Optional[str] = typer.Option(None, help="latest (keep only the newest frame; default for cameras and "
                                         "streams) or every (every frame in order; default for files)."),
    track: bool = typer.Option(False, "--track", help="Persistent track ids (needs the 'track' extra)."),
    quiet: bool = typer.Option(False, "--quiet", help="Without --save: do not print one line per frame."),
    show: bool = typer.Option(False, "--show", help="Show the annotated stream in a window (needs a display "
                              "and a GUI OpenCV; says what is missing)."),
    stall_timeout: float = typer.Option(2.0, help="Cameras / streams: seconds without a frame before the "
                                        "source is reopened (with backoff up to 1 s)."),
    give_up_after: Optional[float] = typer.Option(None, help="Cameras / streams: end with an error after this "
                                                  "many seconds without frames; default: keep reconnecting."),
    serve: Optional[str] = typer.Option(None, help="Serve the annotated stream + stats to a browser at HOST:PORT "
                                        "(e.g. 127.0.0.1:8080; needs the 'serve-view' extra)."),
    topic: Optional[str] = typer.Option(None, help="ROS bag sources (.bag, .db3, .mcap, a folder with "
                                        "metadata.yaml): the sensor_msgs/Image or CompressedImage topic to read."),
    save_bag: Optional[Path] = typer.Option(None, "--save-bag", help="Write ROS 2 detections to this .mcap "
                                            "(vision_msgs/Detection2DArray + Foxglove ImageAnnotations per frame; "
                                            "needs the 'ros' extra)."),
    save_bag_images: bool = typer.Option(True, "--save-bag-images/--no-save-bag-images",
                                         help="With --save-bag: also write each frame as a JPEG CompressedImage."),
    foxglove: Optional[str] = typer.Option(None, help="Serve image, box annotations, detections and stats to "
                                           "Foxglove at HOST:PORT (e.g. 127.0.0.1:8765; needs the 'ros' extra)."),
) -> None:
    """Run an exported model over images, a folder, a video, a camera or a stream; save annotated output.

    Ctrl-C / SIGTERM end the run normally (outputs finalised, summary printed, exit 0); a source
    error prints the summary and the files written, then exits 2.
    """
    from edgecv.runtimes import Predictor, predict_source
    from edgecv.runtimes.backends.triton import is_server_url
    from edgecv.runtimes.image import DEFAULT_MAX_PIXELS
    from edgecv.runtimes.streams.sinks.views import open_views

    model = artifact if is_server_url(artifact) else Path(artifact)  # a URL stays a string: Path folds its "//"

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else (max_pixels or None)
    per_frame = None if save or quiet or show or serve or foxglove else _print_result
    # checked (display, free port, paths) before the model is opened
    views = open_views(show=show, serve=serve, save_bag=save_bag, bag_images=save_bag_images, foxglove=foxglove)
    for view in views:
        if getattr(view, "url", None):  # the browser view (http://) or the Foxglove server (ws://)
            where = "Foxglove: open a WebSocket connection to" if view.url.startswith("ws") else "watch at"
            console.print(f"[green]{where}[/] {view.url}")
    try:
        # A stream decodes, draws and encodes beside inference: ONNX Runtime's spinning threads would
        # take those cores (measured 1.00x -> 1.14x pipelined vs naive on a 1080p clip, bench_stream.py).
        on_ort = backend == "onnxruntime" or (backend == "auto" and artifact.endswith(".onnx"))
        quiet_ort = {"spinning": False} if on_ort else {}
        with Predictor(model, backend=backend, device=device, threads=threads, rect=rect,
                       max_pixels=limit, backend_options=quiet_ort) as predictor:
            try:
                summary = predict_source(predictor, int(source) if source.isdigit() else source, save, conf=conf,
                                         max_frames=max_frames, policy=policy, track=track, sinks=views,
                                         capture={"stall_timeout": stall_timeout, "give_up_after": give_up_after},
                                         show_progress=per_frame is None, on_result=per_frame, topic=topic)
            except EdgecvError as exc:
                if getattr(exc, "summary", None) is not None:  # what ran and what was written, then the error
                    console.print(escape(str(exc.summary)), highlight=False)
                raise
    finally:
        for view in views:  # idempotent: the stream closes them too when it ran
            view.close()
    console.print(escape(str(summary)), highlight=False)
    for view in views:
        if getattr(view, "messages", None) is not None:  # the --save-bag sink
            console.print(escape(f"wrote {view.path} ({view.messages} Detection2DArray messages)"), highlight=False)


def _print_result(result) -> None:
    """One short line per frame: name, detections per class (label maps: share of pixels per class), latency."""
    counts: dict[str, int] = {}
    for label in result.detections.labels:
        counts[label] = counts.get(label, 0) + 1
    found = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "nothing"
    if result.semantic is not None:
        pixels = max(1, result.semantic.labels.size)
        found = ", ".join(f"{name} {n / pixels:.0%}" for name, n in result.semantic.counts().items())
    ms = sum(result.timing.get(k, 0.0) for k in ("pre", "infer", "post"))
    dropped = f", {result.dropped} dropped" if result.dropped else ""
    console.print(escape(f"{result.name}: {found} ({ms:.1f} ms{dropped})"), highlight=False)


@app.command("eval")
@user_errors
def evaluate_cmd(
    model: str = typer.Argument(..., help="An artifact (.onnx), a checkpoint (.pt) or a family name for its demo weights."),
    data: str = typer.Option("shapes", help="'shapes' (built-in validation split) or a COCO folder / annotations json."),
    count: int = typer.Option(500, help="Number of synthetic validation images (with --data shapes)."),
    imgsz: Optional[int] = typer.Option(None, help="PyTorch evaluation size; default: the training size."),
    conf: float = typer.Option(0.001, help="Score threshold for PyTorch evaluation (artifacts use their own)."),
    iou: float = typer.Option(0.6, help="NMS IoU for PyTorch evaluation (artifacts use their own)."),
    family: str = typer.Option("yolo", help="Model family of a .pt checkpoint."),
    trust_weights: bool = typer.Option(False, "--trust-weights", help="Allow pickled code in the checkpoint."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the figures as JSON."),
    class_map: Optional[str] = typer.Option(None, help="Dataset category -> model class where names differ: "
                                            "'person=circle,car=square' or a JSON file {\"person\": \"circle\"}."),
) -> None:
    """COCO mAP (pycocotools) of an artifact or PyTorch weights (dataset categories matched by name);
    mIoU of the label maps for a semantic segmentation artifact."""
    from edgecv.evaluation import evaluate_model, is_semantic_artifact

    if is_semantic_artifact(model):
        return _print_miou(model, data, count, imgsz, json_out)

    result = evaluate_model(model, data, count=count, imgsz=imgsz, conf=conf, iou=iou, family=family,
                            trust=trust_weights, class_map=class_map, console=console)
    masks = result.mask_map50_95 is not None  # a segment model: box and mask (pycocotools segm) figures
    table = Table(title=f"COCO {'box and mask' if masks else 'box'} mAP of {model} ({result.images} images)")
    table.add_column("class")
    table.add_column("box AP50-95" if masks else "AP50-95", justify="right")
    if masks:
        table.add_column("mask AP50-95", justify="right")
    for name, ap in result.per_class.items():
        table.add_row(name, f"{ap:.4f}", *([f"{result.mask_per_class.get(name, 0.0):.4f}"] if masks else []))
    table.add_row("[bold]all[/]", f"[bold]{result.map50_95:.4f}[/]", *([f"[bold]{result.mask_map50_95:.4f}[/]"]
                                                                      if masks else []))
    console.print(table)
    console.print(f"mAP50-95 {result.map50_95:.4f}   mAP50 {result.map50:.4f}   {result.ms_per_image:.1f} ms/image")
    if masks:
        console.print(f"mask mAP50-95 {result.mask_map50_95:.4f}   mask mAP50 {result.mask_map50:.4f}")
    from edgecv.calibration.report import print_comparison, stored_comparison

    stored = stored_comparison(model)
    if stored:
        print_comparison(stored, console, title=f"fp32 vs int8 recorded in {Path(model).name}")
    if json_out:
        from edgecv.fileio import write_json

        console.print(f"[green]wrote[/] {write_json(json_out, result.to_dict(), indent=2)}")


def _print_miou(model: str, data: str, count: int, imgsz: int | None, json_out: Path | None) -> None:
    """mIoU table of a semantic artifact on the synthetic validation split."""
    from edgecv.errors import DatasetError
    from edgecv.evaluation import evaluate_semantic_artifact
    from edgecv.fileio import write_json

    if data != "shapes":
        raise DatasetError(f"semantic evaluation data: expected 'shapes' (synthetic label maps), found {data!r}")
    result = evaluate_semantic_artifact(model, count=count, imgsz=imgsz)
    table = Table(title=f"mIoU of {model} ({result.images} images)")
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for name, iou in result.per_class.items():
        table.add_row(name, f"{iou:.4f}")
    table.add_row("[bold]mean[/]", f"[bold]{result.miou:.4f}[/]")
    console.print(table)
    console.print(f"mIoU {result.miou:.4f}   pixel accuracy {result.pixel_accuracy:.4f}   "
                  f"{result.ms_per_image:.1f} ms/image")
    if json_out:
        write_json(json_out, result.to_dict(), indent=2)


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
def train(
    model: str = typer.Argument("yolo", help="Model family: 'yolo' (detection), 'unet' (semantic segmentation) "
                                "or 'maskrcnn' (instance segmentation, tiny backbone)."),
    data: str = typer.Option("shapes", help="Training data: 'shapes', the built-in synthetic set."),
    size: str = typer.Option("n", help="Model size: n, s or m."),
    imgsz: Optional[int] = typer.Option(None, help="Training image size; default 320 (yolo), 128 (unet)."),
    width: int = typer.Option(8, help="unet: channels of the first level (doubled per level)."),
    init: Optional[Path] = typer.Option(None, help="unet: start from this U-Net checkpoint (same width)."),
    epochs: int = typer.Option(20),
    epoch_size: int = typer.Option(1600, help="Fresh synthetic images per epoch."),
    batch: int = typer.Option(16),
    lr: float = typer.Option(2e-3, help="Peak learning rate (unet: 3e-3 works well)."),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2),
    out: Path = typer.Option(Path("runs/yolo.pt"), help="Output checkpoint (written every epoch)."),
    resume: bool = typer.Option(False, "--continue", help="maskrcnn: continue the run saved in --out."),
    max_minutes: float = typer.Option(0.0, help="maskrcnn: stop after the epoch that passes this many minutes."),
    val_count: int = typer.Option(100, help="maskrcnn: synthetic val images per evaluation."),
    eval_every: int = typer.Option(1, help="maskrcnn: evaluate box and mask mAP every N epochs."),
) -> None:
    """Train edgecv's YOLO, U-Net or tiny Mask R-CNN on the built-in synthetic shapes set."""
    import sys

    from edgecv.errors import DatasetError, UnknownModelError
    from edgecv.models.yolo_train import TrainOptions, train_yolo

    if model not in ("yolo", "unet", "maskrcnn"):
        raise UnknownModelError(f"training is available for 'yolo', 'unet' and 'maskrcnn', got {model!r}")
    if data != "shapes":
        raise DatasetError(f"training data: expected 'shapes' (the built-in set), got {data!r}")
    if model == "maskrcnn":
        from edgecv.models.maskrcnn_train import MaskRCNNTrainOptions, train_maskrcnn

        opts_m = MaskRCNNTrainOptions(imgsz=imgsz or 256, epochs=epochs, epoch_size=epoch_size, batch=batch, lr=lr,
                                      seed=seed, threads=threads, max_minutes=max_minutes,
                                      val_count=val_count, eval_every=eval_every)
        out = out if out != Path("runs/yolo.pt") else Path("runs/maskrcnn.pt")
        path = train_maskrcnn(out, opts_m, console, command="edgecv " + " ".join(sys.argv[1:]), resume=resume)
        console.print(f"[green]saved[/] {path} (best evaluation: {path.with_name(path.stem + '_best' + path.suffix)})")
        return
    if model == "unet":
        from edgecv.models.unet_train import UNetTrainOptions, train_unet

        unet = UNetTrainOptions(width=width, imgsz=imgsz or 128, epochs=epochs, epoch_size=epoch_size, batch=batch,
                                lr=lr, seed=seed, threads=threads, init=str(init or ""))
        out = out if out != Path("runs/yolo.pt") else Path("runs/unet.pt")
        console.print(f"[green]saved[/] {train_unet(out, unet, console, command='edgecv ' + ' '.join(sys.argv[1:]))}")
        return
    opts = TrainOptions(size=size, imgsz=imgsz or 320, epochs=epochs, epoch_size=epoch_size, batch=batch, lr=lr,
                        seed=seed, threads=threads)
    path = train_yolo(out, opts, console, command="edgecv " + " ".join(sys.argv[1:]))
    console.print(f"[green]saved[/] {path}")


@app.command()
@user_errors
def info(
    artifact: Path = typer.Argument(..., help="Exported model (.onnx, or .engine / .plan with its .json)."),
    json_out: bool = typer.Option(False, "--json", help="Print everything as JSON instead of tables."),
) -> None:
    """Print an artifact's metadata: task, classes, inputs/outputs, precision, calibration, fidelity."""
    from edgecv.runtimes.info import artifact_info, render

    details = artifact_info(artifact)
    if json_out:
        console.print_json(json.dumps(details.to_dict(), default=str))
        return
    for table in render(details):
        console.print(table)


@app.command()
@user_errors
def benchmark(
    artifact: Path = typer.Argument(..., help="Exported model (.onnx, or .engine with its .json)."),
    backend: str = typer.Option("auto", help="auto, onnxruntime, openvino or tensorrt (name:key=value for options)."),
    compare: Optional[str] = typer.Option(None, help="Comma-separated backends to run side by side, "
                                          "e.g. onnxruntime,openvino,openvino:precision=f32 (overrides --backend)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N; default: the backend's own."),
    batch: int = typer.Option(1, help="Images per call."),
    imgsz: Optional[str] = typer.Option(None, help="Frame size: N (square) or WxH, e.g. 640x480; "
                                        "default: the artifact's input size."),
    rect: bool = typer.Option(False, "--rect", help="Rect letterbox (dynamic artifacts): see `predict --rect`."),
    warmup: int = typer.Option(5, help="Untimed calls first."),
    iters: int = typer.Option(50, help="Timed calls (whole predictor and bare backend each)."),
    threads: Optional[int] = typer.Option(None, help="Inference threads."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the figures as JSON."),
) -> None:
    """Latency p50/p90/p99, throughput and peak memory: whole predictor and bare backend call."""
    from edgecv.runtimes.benchmark import compare as run_compare, parse_frame_size, results_table, write_json

    specs = [s.strip() for s in compare.split(",") if s.strip()] if compare else [backend]
    results = run_compare(artifact, specs, device=device, batch=batch, imgsz=parse_frame_size(imgsz),
                          warmup=warmup, iters=iters, threads=threads, rect=rect)
    w, h = results[0].frame_size
    console.print(results_table(specs, results, title=f"{artifact.name}: frame {w}x{h} -> input "
                                f"{'x'.join(map(str, results[0].input_size))}, batch {batch}, {iters} iters after "
                                f"{warmup} warm-up"))
    console.print("ms; whole = predictor call (pre + infer + post), bare = backend call on a ready tensor; "
                  "vs 1st = p50 / the first backend's p50")
    console.print(f"[dim]{escape(results[0].cpu)}[/]")
    if json_out:
        console.print(f"[green]wrote[/] {write_json(results, json_out)}")


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


# The serving commands live in their own module (cli.py stays one screen per concern); importing it
# registers them on ``app``.
importlib.import_module("edgecv.cli_serving")


def main() -> None:
    app()


if __name__ == "__main__":
    # ``python -m edgecv.cli`` runs this file as __main__: use the importable edgecv.cli, whose app
    # the serving commands registered on.
    from edgecv.cli import main as _main

    _main()
