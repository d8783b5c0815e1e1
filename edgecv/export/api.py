"""One-call export API: ``export_variants("yolo", int8={...}, fp16=True)`` does what
``edgecv export yolo --int8 --fp16`` does (``export_model`` is the fp32 part alone);
``export_torch_detector(module, names, out)`` exports any PyTorch detector."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console
from rich.markup import escape
from torch import nn

from edgecv.errors import ExportError
from edgecv.models.base import LoadedDetector

from edgecv.export.onnx_export import ExportOptions, ExportResult, export_detector, resolve_options, size_text
from edgecv.models import load_for_export


def export_model(name: str = "yolo", weights: str | Path | None = None, out: str | Path | None = None,
                 opts: ExportOptions | None = None, *, trust: bool = False, class_names: list[str] | None = None,
                 size: str = "n", console: Console | None = None, warn_stale: bool = True,
                 num_classes: int | None = None) -> ExportResult:
    """Load model family ``name`` with ``weights`` (None: the built-in demo weights) and export it.

    ``num_classes``: a torchvision family's head size (``--num-classes``) when no state dict says it.
    ``opts.imgsz`` None takes the size the weights were trained at; ``out`` defaults to
    ``exports/<name>/model.onnx``. Returns the :class:`ExportResult` (path, metadata, fidelity).
    ``warn_stale``: afterwards, warn about int8/fp16 graphs beside ``out`` made from its
    previous content (:func:`warn_stale_derivatives`).
    """
    console = console or Console()
    options = {"trust": trust, "class_names": class_names, "size": size}
    if num_classes is not None:  # torchvision families only (--num-classes)
        options["num_classes"] = num_classes
    detector = load_for_export(name, weights, **options)
    if detector.notice:
        console.print(f"[yellow]{escape(detector.notice)}[/]", highlight=False)
    if detector.is_demo:
        console.print(f"[yellow]no --weights given: using the built-in demo weights[/] {detector.source} "
                      f"({len(detector.class_names)} classes: {', '.join(detector.class_names)})")
    opts = resolve_options(opts, detector)
    out = Path(out) if out is not None else Path("exports") / name / "model.onnx"
    with console.status(f"exporting {detector.family} at {size_text(opts.imgsz)} → {out}"):
        result = export_detector(detector, out, opts, console=console)  # dispatches by family / task
    console.print(f"[green]exported[/] {result.path} in {result.seconds:.1f}s")
    if warn_stale:
        warn_stale_derivatives(result.path, console)
    return result


def warn_stale_derivatives(fp32_path: Path, console: Console) -> list[Path]:
    """Print one warning per derived graph beside ``fp32_path`` whose recorded parent hash no longer
    matches it (see :mod:`edgecv.runtimes.lineage`); returns their paths."""
    from edgecv.runtimes.lineage import stale_derivatives

    stale = stale_derivatives(fp32_path)
    for _, message in stale:
        console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)  # one line
    return [path for path, _ in stale]


@dataclass
class ExportedVariants:
    """Paths written by :func:`export_variants` (None where a variant was not asked for)."""

    fp32: ExportResult
    fp16: Path | None = None
    int8: Any = None  # edgecv.calibration.QuantizeResult
    engine: Path | None = None
    plugin_graph: Path | None = None  # <graph>.trt.onnx with edgecv's plugin nodes (plugins=...)


def export_variants(name: str = "yolo", weights: str | Path | None = None, out: str | Path | None = None,
                    opts: ExportOptions | None = None, *, int8: dict[str, Any] | None = None, fp16: bool = False,
                    engine: bool = False, console: Console | None = None, plugins: list[str] | None = None,
                    **load: Any) -> ExportedVariants:
    """fp32 export (:func:`export_model`, ``load`` = trust / class_names / size / num_classes), then optionally
    ``model_fp16.onnx``, ``model_int8_<target>.onnx`` (``int8`` = keyword arguments of
    :func:`edgecv.calibration.quantize`, which compares fp32 vs int8 unless ``evaluate=False``;
    target tensorrt with ``engine``, else onnxruntime) and a TensorRT engine built from the int8
    graph if any, else the fp16 one, else fp32 (GPU machine). With ``engine``, TensorRT must be
    importable: checked before the fp32 export and calibration.

    ``plugins`` (names from :data:`edgecv.plugins.PLUGINS`; ``[]`` = all): also write the
    TensorRT-flavoured ``<graph>.trt.onnx`` of the graph the engine would be built from (edgecv's
    plugin nodes in place of the portable subgraphs, :func:`edgecv.plugins.passes.write_plugin_graph`);
    with ``engine`` the engine is built from it. The portable graph stays the artifact.
    """
    console = console or Console()
    if plugins:  # an unknown name is the user's to fix before minutes of export
        from edgecv.plugins import plugin_names

        plugin_names(plugins)
    if int8 is not None:  # seconds to check here, instead of failing after the whole fp32 export
        from edgecv.calibration.api import check_quantize_options
        from edgecv.calibration.sources import check_calibration_data
        from edgecv.evaluation import parse_class_map

        class_map = parse_class_map(int8.get("class_map"))  # a bad --class-map fails before the export
        if str(int8.get("eval_data", "shapes")) == "shapes":
            from edgecv.data.synthetic import CLASS_NAMES
            from edgecv.errors import OptionError

            unknown = sorted(set(class_map) - set(CLASS_NAMES))
            if unknown:
                raise OptionError(f"class map: expected the synthetic shapes' names on the left "
                                  f"({', '.join(CLASS_NAMES)}), found {', '.join(unknown)}")
        check_quantize_options(int8.get("method", "percentile"), int8.get("target", "onnxruntime"))
        check_calibration_data(int8.get("data", "shapes"), samples=int8.get("samples", 256),
                               seed=int8.get("seed", 0), every=int8.get("every", 10))
    if engine:  # fail before the export and calibration, not after them
        from edgecv.export.tensorrt_build import check_build_dependencies

        check_build_dependencies()
    result = ExportedVariants(export_model(name, weights, out, opts, console=console, warn_stale=False, **load))
    for_engine = result.fp32.path
    if fp16:
        from edgecv.export.fp16 import export_fp16

        result.fp16 = for_engine = export_fp16(result.fp32.path)
        console.print(f"[green]wrote[/] {result.fp16} (fp16)")
    if int8 is not None:
        from edgecv.calibration import quantize

        int8 = {"evaluate": True, "target": "tensorrt" if engine else "onnxruntime", **int8}
        result.int8 = quantize(result.fp32.path, console=console, **int8)
        for_engine = result.int8.path
    if plugins is not None:
        from edgecv.plugins.passes import write_plugin_graph

        result.plugin_graph = for_engine = write_plugin_graph(for_engine, plugins or None)
        console.print(f"[green]wrote[/] {result.plugin_graph} (TensorRT-flavoured: edgecv plugin nodes)")
    if engine:
        from edgecv.export.tensorrt_build import build_engine

        result.engine = build_engine(for_engine, for_engine.with_suffix(".engine"))  # model.trt.onnx -> model.trt.engine
        console.print(f"[green]wrote[/] {result.engine} (+ {result.engine.name}.json)")
    warn_stale_derivatives(result.fp32.path, console)  # only those this run did not re-create
    return result


BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


class DetectorAdapter(nn.Module):
    """Bring any detector's output to edgecv's raw contract.

    ``module(images)`` (optionally followed by ``decode``) must return ``(boxes [B,N,4], scores [B,N,C])``
    with boxes in input pixels in ``box_format``; scores are probabilities, or logits when
    ``scores_are_logits`` (a sigmoid is added inside the graph).
    """

    def __init__(self, module: nn.Module, decode: Callable | None = None, box_format: str = "xyxy",
                 scores_are_logits: bool = False) -> None:
        super().__init__()
        if box_format not in BOX_FORMATS:
            raise ExportError(f"box_format: expected one of {BOX_FORMATS}, found {box_format!r}")
        self.module, self.decode = module, decode
        self.box_format, self.scores_are_logits = box_format, scores_are_logits

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.module(images)
        boxes, scores = self.decode(out) if self.decode is not None else out
        if self.box_format == "xywh":
            boxes = torch.cat((boxes[..., :2], boxes[..., :2] + boxes[..., 2:]), -1)
        elif self.box_format == "cxcywh":
            half = boxes[..., 2:] / 2
            boxes = torch.cat((boxes[..., :2] - half, boxes[..., :2] + half), -1)
        return boxes, scores.sigmoid() if self.scores_are_logits else scores


def export_torch_detector(module: nn.Module, class_names: list[str], out: str | Path,
                          opts: ExportOptions | None = None, *, decode: Callable | None = None,
                          box_format: str = "xyxy", scores_are_logits: bool = False,
                          mean: list[float] | None = None, std: list[float] | None = None,
                          color_order: str = "RGB", resize: str = "letterbox", pad_value: int = 114,
                          imgsz: int = 640, console: Console | None = None) -> ExportResult:
    """Export any ``torch.nn.Module`` detector: edgecv adds NMS, metadata and the fidelity check.

    ``module`` takes float32 [B,3,H,W] in [0,1] (then ``(x - mean) / std`` per channel if given),
    channels in ``color_order`` (``"RGB"`` or ``"BGR"``), the image resized the way the model was
    trained: ``resize="letterbox"`` (aspect kept, borders filled with ``pad_value``, 0-255) or
    ``"stretch"`` (each axis resized to ``imgsz``, as SSD-style and many OpenCV-trained models do).
    It returns boxes and per-class scores (see :class:`DetectorAdapter`). The convention is
    recorded in the artifact and every edgecv predictor honours it.

    Raises:
        OptionError: a convention value outside its domain (every problem listed).
    """
    adapter = DetectorAdapter(module.eval(), decode, box_format, scores_are_logits).eval()
    detector = LoadedDetector(module=adapter, class_names=class_names, imgsz=imgsz, family="custom",
                              mean=[0.0, 0.0, 0.0] if mean is None else mean,
                              std=[1.0, 1.0, 1.0] if std is None else std,
                              color_order=color_order, resize=resize, pad_value=pad_value)
    return export_detector(detector, out, opts, console=console)
