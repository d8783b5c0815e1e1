"""One-call export API: ``export_model("yolo")`` does what ``edgecv export yolo`` does."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from edgecv.export.onnx_export import ExportOptions, ExportResult, export_detector, resolve_options
from edgecv.models import load_for_export


def export_model(name: str = "yolo", weights: str | Path | None = None, out: str | Path | None = None,
                 opts: ExportOptions | None = None, *, trust: bool = False, class_names: list[str] | None = None,
                 size: str = "n", console: Console | None = None) -> ExportResult:
    """Load model family ``name`` with ``weights`` (None: the built-in demo weights) and export it.

    ``opts.imgsz`` None takes the size the weights were trained at; ``out`` defaults to
    ``exports/<name>/model.onnx``. Returns the :class:`ExportResult` (path, metadata, fidelity).
    """
    console = console or Console()
    options = {"trust": trust, "class_names": class_names, "size": size}
    detector = load_for_export(name, weights, **options)
    if detector.is_demo:
        console.print(f"[yellow]no --weights given: using the built-in demo weights[/] {detector.source} "
                      f"({len(detector.class_names)} classes: {', '.join(detector.class_names)})")
    opts = resolve_options(opts, detector)
    out = Path(out) if out is not None else Path("exports") / name / "model.onnx"
    with console.status(f"exporting {detector.family} at {opts.imgsz}x{opts.imgsz} → {out}"):
        result = export_detector(detector, out, opts, console=console)
    console.print(f"[green]exported[/] {result.path} in {result.seconds:.1f}s")
    return result
