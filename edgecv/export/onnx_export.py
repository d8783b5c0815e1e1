"""PyTorch detector → self-describing ONNX with decode + NMS inside the graph.

Steps: trace the decoded detector (raw_boxes, raw_scores) to ONNX, slim the graph, append
class-aware NMS (:func:`edgecv.export.nms.append_nms`), attach the metadata, check fidelity
against PyTorch on real images, save. Exported with the TorchScript-based exporter: it is three
times faster than the dynamo exporter on these models and has mature ``dynamic_axes`` support.
"""

from __future__ import annotations

import dataclasses
import io
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import onnx
import torch
from torch import nn

from edgecv import __version__
from edgecv.errors import ExportError, OptionError
from edgecv.export.nms import DEFAULT_MAX_CANDIDATES, append_nms, check_nms_options
from edgecv.export.uint8_input import check_export_input, frame_images, to_uint8_input
from edgecv.fileio import write_with
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.models.base import LoadedDetector

if TYPE_CHECKING:
    from rich.console import Console

RAW_OUTPUTS = ("raw_boxes", "raw_scores")


@dataclass
class ExportOptions:
    """Export settings. ``imgsz`` is the network input: an int (square) or ``(width, height)``
    (width first, like ``--imgsz 640x384`` and ``--frame``; :func:`export_hw` turns either into
    ``(h, w)``); None: the size the weights were trained at. ``dynamic`` makes batch, height and
    width symbolic (multiples of the stride)."""

    imgsz: int | tuple[int, int] | None = None
    batch: int = 1
    dynamic: bool = False
    max_det: int = 100
    conf: float = 0.25
    iou: float = 0.45
    opset: int = 17
    simplify: bool = True
    check: bool = True
    # Fidelity check criteria (edgecv.export.fidelity.Tolerance): |onnx - torch| <= atol * scale + rtol * |torch|,
    # scale = input size (px) for boxes, 1 for scores; share of detections matched at IoU 0.99, same class.
    fidelity_atol: float = 1e-4
    fidelity_rtol: float = 1e-4
    fidelity_match: float = 0.99
    check_images: str | Path | None = None  # folder of the user's images for the check (default: synthetic scenes)
    #: Candidates kept (by best class score) before NMS; <= 3840 keeps the graph within TensorRT's
    #: TopK / NMS limits; None = no cap (ONNX Runtime / OpenVINO only). See edgecv.export.nms.
    max_candidates: int | None = DEFAULT_MAX_CANDIDATES
    probs: bool = False  # task "semantic": also output probs [B,C,H,W] (softmax) beside labels (edgecv.export.semantic)
    #: "float": float32 [B,3,H,W] normalised input; "uint8": uint8 [B,H,W,3] BGR frames, pre-processing
    #: inside the graph (edgecv.export.uint8_input).
    input: str = "float"
    #: With input "uint8": camera frame (width, height) resized (letterbox / stretch) inside the graph too.
    frame: tuple[int, int] | None = None
    #: Two-stage families: no data-dependent shape (RoI Align of every RoI at every FPN level, the mask
    #: stage on all max_det rows): a cost that does not follow the scene (edgecv.models.tv_twostage).
    static_shapes: bool = False


@dataclass
class ExportResult:
    """What an export produced: the artifact, its metadata and the fidelity report."""

    path: Path
    metadata: ArtifactMetadata
    fidelity: dict = field(default_factory=dict)
    seconds: float = 0.0


def export_hw(imgsz: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """The network input ``(h, w)`` of an ``ExportOptions.imgsz``: ``640`` -> ``(640, 640)``,
    ``(640, 384)`` (width, height) -> ``(384, 640)``.

    Raises:
        ExportError: neither a positive int nor a pair of positive ints.
    """
    if isinstance(imgsz, int) and not isinstance(imgsz, bool) and imgsz > 0:
        return imgsz, imgsz
    if (isinstance(imgsz, (tuple, list)) and len(imgsz) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in imgsz)):
        return int(imgsz[1]), int(imgsz[0])
    raise ExportError(f"--imgsz: expected a positive int (square) or (width, height) of positive ints, found {imgsz!r}")


def size_text(imgsz: int | tuple[int, int]) -> str:
    """``"WxH"`` of an ``ExportOptions.imgsz`` (for status lines and messages)."""
    h, w = export_hw(imgsz)
    return f"{w}x{h}"


def check_imgsz(imgsz: int | tuple[int, int], multiple: int, family: str = "") -> tuple[int, int]:
    """``(h, w)`` of ``imgsz`` if both are multiples of ``multiple`` (the family's stride), else :class:`ExportError`."""
    h, w = export_hw(imgsz)
    if h % multiple or w % multiple:
        owner = f" for {family}" if family else ""
        found = imgsz if isinstance(imgsz, int) else f"{w}x{h}"
        raise ExportError(f"--imgsz: expected width and height each a multiple of {multiple}{owner}, found {found}")
    return h, w


def parse_imgsz(text: str | None) -> int | tuple[int, int] | None:
    """``--imgsz`` text: ``"640"`` -> ``640`` (square), ``"640x384"`` -> ``(640, 384)`` (width, height),
    None -> None. Same grammar as ``benchmark --imgsz`` (:func:`edgecv.runtimes.benchmark.parse_frame_size`).

    Raises:
        ExportError: anything else (one line, expected vs found).
    """
    from edgecv.runtimes.benchmark import parse_frame_size

    try:
        return parse_frame_size(text)
    except OptionError:
        raise ExportError(f"--imgsz: expected N (square) or WIDTHxHEIGHT with positive integers, e.g. 640x384, "
                          f"found {text!r}") from None


def resolve_options(opts: ExportOptions | None, detector: LoadedDetector) -> ExportOptions:
    """A copy of ``opts`` (default: ``ExportOptions()``) with ``imgsz`` filled in from the weights.

    Raises:
        OptionError: ``static_shapes`` for a family whose graph has no data-dependent shape to fix.
    """
    from edgecv.models.tv_twostage import BUILDERS

    opts = opts or ExportOptions()
    if opts.static_shapes and detector.extra.get("builder") not in BUILDERS:
        raise OptionError(f"--static-shapes: expected a two-stage export (Faster / Mask R-CNN), found family "
                          f"{detector.family} (its graph is static already)")
    return dataclasses.replace(opts, imgsz=opts.imgsz or detector.imgsz)


def torch_to_onnx(module: nn.Module, opts: ExportOptions, input_name: str = "images") -> onnx.ModelProto:
    """Trace ``module`` (images → raw_boxes, raw_scores) to an in-memory ONNX model."""
    dummy = torch.zeros(opts.batch, 3, *export_hw(opts.imgsz))
    axes = None
    if opts.dynamic:
        axes = {input_name: {0: "batch", 2: "height", 3: "width"},
                RAW_OUTPUTS[0]: {0: "batch", 1: "anchors"}, RAW_OUTPUTS[1]: {0: "batch", 1: "anchors"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; failures still raise
        torch.onnx.export(module.eval(), (dummy,), buffer, dynamo=False, input_names=[input_name],
                          output_names=list(RAW_OUTPUTS), opset_version=opts.opset, dynamic_axes=axes,
                          do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def slim(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold and fuse with onnxslim (keeps I/O names); returns the input if it fails."""
    try:
        import onnxslim
    except ImportError:
        return model
    try:
        return onnxslim.slim(model)
    except Exception as exc:  # onnxslim is best-effort graph cleanup, never a reason to fail
        warnings.warn(f"onnxslim could not simplify the graph ({exc}); keeping it as traced")
        return model


def build_metadata(detector: LoadedDetector, opts: ExportOptions, input_name: str = "images") -> ArtifactMetadata:
    """The artifact's self-description (architecture brief, contract 1)."""
    import onnxruntime

    h, w = export_hw(opts.imgsz)
    spatial = [-1, -1] if opts.dynamic else [h, w]
    return ArtifactMetadata(
        task="detect", class_names=list(detector.class_names), input_name=input_name,
        input_shape=[-1 if opts.dynamic else opts.batch, 3, *spatial], mean=list(detector.mean),
        std=list(detector.std), letterbox_size=[h, w], stride=32, max_det=opts.max_det,
        color_order=detector.color_order, resize=detector.resize, pad_value=detector.pad_value,
        conf_threshold=opts.conf, iou_threshold=opts.iou, precision="fp32", dynamic=opts.dynamic,
        model_family=detector.family, source_weights=detector.source, source_weights_sha256=detector.sha256,
        training=dict(detector.training),
        versions={"edgecv": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                  "onnxruntime": onnxruntime.__version__, "opset": str(opts.opset)},
    )


def set_metadata(model: onnx.ModelProto, metadata: ArtifactMetadata) -> None:
    """Store the metadata JSON in ``metadata_props`` (replacing an older edgecv entry)."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in kept}, METADATA_KEY: metadata.to_json()})


def _check_images(opts: ExportOptions, given: list | None) -> tuple[list | None, str]:
    """The images for the fidelity check and where they came from (``opts.check_images`` loaded here)."""
    from edgecv.export.fidelity import load_check_images

    if given is not None:
        return given, "caller's images"
    if opts.check_images is None:
        return None, "synthetic shapes"
    if not opts.check:
        raise ExportError("--check-images: expected the fidelity check to run, found --no-check")
    images = load_check_images(opts.check_images)
    return images, str(opts.check_images)


def _export_semantic(detector: LoadedDetector, out: str | Path, opts: ExportOptions | None = None,
                     fidelity_images: list | None = None, console=None) -> ExportResult:
    from edgecv.export.semantic import export_semantic  # label map in the graph, no NMS

    return export_semantic(detector, out, opts, fidelity_images, console)


#: The one export dispatch table, by the artifact's task: exporters of graphs that do not end in
#: trace + ``append_nms``. A family can bring its own instead (``LoadedDetector.extra["export"]``:
#: two-stage graphs end in the detection contract themselves); both take ``export_detector``'s arguments.
TASK_EXPORTERS: dict[str, Callable[..., ExportResult]] = {"semantic": _export_semantic}


def export_detector(detector: LoadedDetector, out: str | Path, opts: ExportOptions | None = None,
                    fidelity_images: list | None = None, console=None) -> ExportResult:
    """Export a loaded detector to ``out`` (.onnx) with NMS in the graph and a fidelity check.

    ``fidelity_images`` are BGR uint8 images; default: synthetic validation scenes. A failed
    check raises :class:`ExportError` listing every failed criterion; the file is still written
    so it can be inspected.
    """
    from edgecv.export.fidelity import Tolerance, check_fidelity, default_images, mixed_images, print_report

    exporter = detector.extra.get("export") or TASK_EXPORTERS.get(detector.task)  # see TASK_EXPORTERS
    if exporter is not None:
        return exporter(detector, out, opts, fidelity_images=fidelity_images, console=console)
    opts = resolve_options(opts, detector)
    start = time.time()
    out = Path(out)
    hw = check_imgsz(opts.imgsz, detector.size_multiple, detector.family)
    if opts.dynamic and not detector.supports_dynamic:
        raise ExportError(f"--dynamic: expected a family with size-independent graphs, found {detector.family}, "
                          "whose anchors are constants of the export size (export one graph per --imgsz)")
    # Check criteria and the user's images are validated before the (slow) trace.
    tolerance = Tolerance(opts.fidelity_atol, opts.fidelity_rtol, opts.fidelity_match)
    fidelity_images, images_source = _check_images(opts, fidelity_images)
    check_nms_options(opts.max_det, opts.iou, opts.conf, opts.max_candidates)  # before seconds of tracing
    check_export_input(opts.input, opts.frame, opts.dynamic)
    raw = torch_to_onnx(detector.module, opts)
    if opts.simplify:
        raw = slim(raw)
    model = append_nms(raw, boxes_output=RAW_OUTPUTS[0], scores_output=RAW_OUTPUTS[1], max_det=opts.max_det,
                       iou_threshold=opts.iou, conf_threshold=opts.conf, max_candidates=opts.max_candidates)
    metadata = build_metadata(detector, opts)
    if opts.input == "uint8":
        raw, model, metadata = to_uint8_input(raw, model, metadata, opts.frame)
    report: dict = {}
    if opts.check:
        if fidelity_images is not None:
            images = fidelity_images
        else:  # a family with an upstream reference is also checked on scenes with one object and with none
            images = default_images(hw) if detector.reference is None else mixed_images(hw)
            images_source = images_source if detector.reference is None else "synthetic shapes (many, one, none)"
        images = frame_images(images, opts.frame)  # a --frame graph takes frames of exactly that size
        report = check_fidelity(detector.module, raw, model, metadata, images, tolerance, images_source,
                                reference=detector.reference)
    return save_checked(model, metadata, report, out, start, console, print_report)


def save_checked(model: onnx.ModelProto, metadata: ArtifactMetadata, report: dict, out: Path, start: float,
                 console: Console | None, print_fn: Callable[[dict, Console], None]) -> ExportResult:
    """Finish an export: the fidelity ``report`` (empty: not checked) into the metadata and printed
    (or warned without a console), the graph written atomically (a failed write keeps the old file),
    then :class:`ExportError` if the check failed — after writing, so the failed graph can be inspected."""
    if report:
        metadata.fidelity = report
        if console is not None:
            print_fn(report, console)
        else:
            for line in report["warnings"]:
                warnings.warn(f"fidelity check: {line}", stacklevel=3)
    set_metadata(model, metadata)
    write_with(out, lambda tmp: onnx.save(model, str(tmp)))
    if report and not report["passed"]:
        raise ExportError(f"fidelity check failed for {out}: " + "; ".join(report["failures"]))
    return ExportResult(path=out, metadata=metadata, fidelity=report, seconds=time.time() - start)
