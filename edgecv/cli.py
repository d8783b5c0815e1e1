"""The ``edgecv`` command line: a thin layer over the Python API.

Each command parses options, calls one API function and prints the result. User mistakes
(:class:`~edgecv.errors.EdgecvError`) print one red line and exit with code 2, no traceback.
Heavy modules are imported inside the commands so ``edgecv --help`` starts fast without torch.

This module holds the app, the consoles, :func:`user_errors` and the commands that inspect and
train (eval, train, info, benchmark); command groups with a concern of their own live in sibling
modules that register on :data:`app` when imported at the end of this one: ``cli_export`` (export,
calibrate, build), ``cli_predict`` (predict), ``cli_serving`` (serve, export-triton).
"""

from __future__ import annotations

import functools
import importlib
import json
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from edgecv.errors import EdgecvError

#: ``edgecv --help`` lists the commands in this order (a model's way from training to serving),
#: whichever module registered them; commands not listed follow in registration order.
COMMAND_ORDER = ("export", "predict", "eval", "calibrate", "train", "info", "benchmark", "build", "serve",
                 "export-triton")


class _OrderedCommands(TyperGroup):
    """The command group, listing commands in :data:`COMMAND_ORDER` (help, completion)."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(cls=_OrderedCommands, add_completion=False, no_args_is_help=True,
                  help="Take trained PyTorch vision models to the edge.")
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


# The other command groups live in their own modules (cli.py stays one screen per concern);
# importing them registers their commands on ``app``.
for _module in ("edgecv.cli_export", "edgecv.cli_predict", "edgecv.cli_serving"):
    importlib.import_module(_module)


def main() -> None:
    app()


if __name__ == "__main__":
    # ``python -m edgecv.cli`` runs this file as __main__: use the importable edgecv.cli, whose app
    # the sibling modules' commands registered on.
    from edgecv.cli import main as _main

    _main()
