"""The ``edgecv`` command line: a thin layer over the Python API.

Each command parses options, calls one API function and prints the result. User mistakes
(:class:`~edgecv.errors.EdgecvError`) print one red line and exit with code 2, no traceback.
Heavy modules are imported inside the commands so ``edgecv --help`` starts fast without torch.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
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
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
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
    max_det: int = typer.Option(100, help="Maximum detections per image (K of the output contract)."),
    conf: float = typer.Option(0.25, help="Score threshold inside the graph."),
    iou: float = typer.Option(0.45, help="NMS IoU threshold."),
    opset: int = typer.Option(17, help="ONNX opset."),
    out: Optional[Path] = typer.Option(None, help="Output .onnx path; default exports/<model>/model.onnx."),
    names: Optional[str] = typer.Option(None, help="Comma-separated class names (needed for a plain state dict)."),
    size: str = typer.Option("n", help="Model size for a plain state dict (n, s, m)."),
    trust_weights: bool = typer.Option(False, "--trust-weights", help="Allow pickled code in the checkpoint (weights_only=False)."),
    check: bool = typer.Option(True, help="Run the PyTorch vs ONNX Runtime fidelity check."),
) -> None:
    """Export a trained model to ONNX with decode + NMS in the graph."""
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    opts = ExportOptions(imgsz=imgsz, batch=batch, dynamic=dynamic, max_det=max_det, conf=conf, iou=iou,
                         opset=opset, check=check)
    class_names = [n.strip() for n in names.split(",")] if names else None
    export_model(model, weights, out, opts, trust=trust_weights, class_names=class_names, size=size, console=console)


@app.command()
@user_errors
def predict(
    artifact: Path = typer.Argument(..., help="Exported model (.onnx)."),
    source: str = typer.Option(..., help="Image, folder of images, video file, camera index or stream URL."),
    save: Optional[Path] = typer.Option(None, help="Folder for annotated images/video and predictions.jsonl."),
    conf: Optional[float] = typer.Option(None, help="Extra score threshold above the artifact's."),
    threads: Optional[int] = typer.Option(None, help="Inference threads."),
) -> None:
    """Run an exported model over images, a folder or a video; save annotated output."""
    from edgecv.runtimes import Predictor, predict_source

    with Predictor(artifact, threads=threads) as predictor:
        summary = predict_source(predictor, int(source) if source.isdigit() else source, save, conf=conf)
    console.print(summary)


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
) -> None:
    """COCO mAP (pycocotools) of an artifact or PyTorch weights."""
    from edgecv.evaluation import evaluate_model

    result = evaluate_model(model, data, count=count, imgsz=imgsz, conf=conf, iou=iou, family=family,
                            trust=trust_weights, console=console)
    table = Table(title=f"COCO box mAP of {model} ({result.images} images)")
    table.add_column("class")
    table.add_column("AP50-95", justify="right")
    for name, ap in result.per_class.items():
        table.add_row(name, f"{ap:.4f}")
    table.add_row("[bold]all[/]", f"[bold]{result.map50_95:.4f}[/]")
    console.print(table)
    console.print(f"mAP50-95 {result.map50_95:.4f}   mAP50 {result.map50:.4f}   {result.ms_per_image:.1f} ms/image")
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2))


@app.command()
@user_errors
def train(
    model: str = typer.Argument("yolo", help="Model family (only 'yolo' trains here)."),
    data: str = typer.Option("shapes", help="Training data: 'shapes', the built-in synthetic set."),
    size: str = typer.Option("n", help="Model size: n, s or m."),
    imgsz: int = typer.Option(320, help="Training image size."),
    epochs: int = typer.Option(20),
    epoch_size: int = typer.Option(1600, help="Fresh synthetic images per epoch."),
    batch: int = typer.Option(16),
    lr: float = typer.Option(2e-3),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2),
    out: Path = typer.Option(Path("runs/yolo.pt"), help="Output checkpoint (written every epoch)."),
) -> None:
    """Train edgecv's YOLO on the built-in synthetic shapes set."""
    import sys

    from edgecv.errors import DatasetError, UnknownModelError
    from edgecv.models.yolo_train import TrainOptions, train_yolo

    if model != "yolo":
        raise UnknownModelError(f"training is available for 'yolo', got {model!r}")
    if data != "shapes":
        raise DatasetError(f"training data: expected 'shapes' (the built-in set), got {data!r}")
    opts = TrainOptions(size=size, imgsz=imgsz, epochs=epochs, epoch_size=epoch_size, batch=batch, lr=lr,
                        seed=seed, threads=threads)
    path = train_yolo(out, opts, console, command="edgecv " + " ".join(sys.argv[1:]))
    console.print(f"[green]saved[/] {path}")


@app.command()
@user_errors
def info(artifact: Path = typer.Argument(..., help="Exported model (.onnx).")) -> None:
    """Print an artifact's metadata: task, classes, input, outputs, precision, fidelity."""
    from edgecv.runtimes import Predictor

    with Predictor(artifact) as predictor:
        meta = predictor.metadata
    console.print_json(meta.to_json())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
