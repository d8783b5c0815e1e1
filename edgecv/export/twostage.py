"""Export torchvision's two-stage detectors (Faster R-CNN FPN, Mask R-CNN) as one batched ONNX graph.

The graph is :class:`edgecv.models.tv_twostage.TwoStageGraph` traced as a whole: it already ends in
edgecv's detection contract (``num_dets, boxes, scores, classes``; + ``masks [B, K, 28, 28]`` for
Mask R-CNN, task ``segment``), so :func:`edgecv.export.nms.append_nms` is not appended: the second
stage has per-class boxes (each of the ``R * (C - 1)`` (proposal, class) pairs is a candidate with
its own box), which the class-agnostic-box pass cannot take without a ``[B, R*(C-1), C-1]`` score
matrix. Its NMS is the same ONNX ``NonMaxSuppression`` semantics (strict ``score > conf``, strict
``IoU > iou``, class-aware), run on the candidates with classes offset apart
(:mod:`edgecv.export.rcnn_ops`). torchvision's ``GeneralizedRCNNTransform`` is stripped: the
metadata states ImageNet mean / std, RGB, letterbox to the export size (square, or ``H x W`` for
``--imgsz WxH``: anchors, clipping and the check images follow H and W).
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import onnx
import torch
from rich.console import Console

from edgecv import __version__
from edgecv.errors import ExportError
from edgecv.export.onnx_export import ExportResult, _check_images, check_imgsz, set_metadata
from edgecv.export.twostage_fidelity import fidelity_images as default_check_images
from edgecv.export.twostage_uint8 import to_uint8_input
from edgecv.export.uint8_input import check_export_input, uint8_metadata
from edgecv.fileio import write_with
from edgecv.metadata import ArtifactMetadata
from edgecv.models.tv_twostage import (
    DEFAULT_SIZE, IMAGENET_MEAN, IMAGENET_STD, MASK_SIZE, TwoStageConfig, TwoStageGraph, class_names_for, has_masks,
    resolve_builder,
)

DETECT_OUTPUTS = ["num_dets", "boxes", "scores", "classes"]


def trace_graph(graph: TwoStageGraph, batch: int, opset: int = 17) -> onnx.ModelProto:
    """``graph`` traced (TorchScript exporter) at a static ``[batch, 3, H, W]`` input (``graph.cfg.hw``)."""
    names = DETECT_OUTPUTS + (["masks"] if graph.with_masks else [])
    dummy = torch.rand(batch, 3, *graph.cfg.hw)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer chatter about Python ints: every shape here is fixed on purpose
        torch.onnx.export(graph.eval(), (dummy,), buffer, dynamo=False, input_names=["images"], output_names=names,
                          opset_version=opset, do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    loops = [n.op_type for n in model.graph.node if n.op_type in ("Loop", "If", "Scan")]
    if loops:
        raise ExportError(f"two-stage graph: expected no control-flow nodes, found {sorted(set(loops))}")
    # The exporter cannot follow shapes through NonMaxSuppression and leaves every output dim symbolic;
    # they are fixed by the options, and stated so (edgecv info, TensorRT, serving configs read them).
    k, side = graph.cfg.max_det, MASK_SIZE
    static = {"num_dets": [batch, 1], "boxes": [batch, k, 4], "scores": [batch, k], "classes": [batch, k],
              "masks": [batch, k, side, side]}
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        for dim, value in zip(dims, static[output.name]):
            dim.Clear()
            dim.dim_value = value
    return model


def twostage_metadata(builder: str, cfg: TwoStageConfig, batch: int, class_names: list[str], source: str,
                      sha256: str = "") -> ArtifactMetadata:
    """The artifact's self-description: GeneralizedRCNNTransform's normalisation, letterbox to ``cfg.hw``
    (``input_shape [batch, 3, H, W]``, ``letterbox_size [H, W]``)."""
    import onnxruntime

    masks = has_masks(builder)
    h, w = cfg.hw
    return ArtifactMetadata(
        task="segment" if masks else "detect", class_names=list(class_names), input_shape=[batch, 3, h, w],
        mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), color_order="RGB", resize="letterbox",
        letterbox_size=[h, w], stride=32, outputs=DETECT_OUTPUTS + (["masks"] if masks else []),
        max_det=cfg.max_det, conf_threshold=cfg.conf, iou_threshold=cfg.iou, model_family=builder,
        source_weights=source, source_weights_sha256=sha256,
        versions={"edgecv": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                  "onnxruntime": onnxruntime.__version__, "opset": "17"},
    )


def export_twostage(name: str, out: str | Path, cfg: TwoStageConfig | None = None, *, batch: int = 1,
                    state: dict | None = None, source: str = "", class_names: list[str] | None = None,
                    check: bool = True, seed: int = 0, console: Console | None = None,
                    images: list | None = None) -> ExportResult:
    """Export two-stage builder ``name`` (or ``fasterrcnn`` / ``maskrcnn``) to ``out``.

    ``state``: a torchvision state dict of that builder (None: seeded random weights, BatchNorm
    statistics measured, class logits spread -- enough for the fidelity check to have detections).
    ``check``: compare with torchvision's own model (:mod:`edgecv.export.twostage_fidelity`, on ``images``,
    default :func:`~edgecv.export.twostage_fidelity.fidelity_images`) and
    store the report in the metadata; a failed check raises :class:`ExportError` after writing.
    """
    from edgecv.export.twostage_fidelity import check_twostage, print_twostage_report
    from edgecv.models.tv_twostage import build_torchvision, num_classes_of, seeded_random_model

    builder = resolve_builder(name)
    cfg = cfg or TwoStageConfig(imgsz=DEFAULT_SIZE.get(builder, 800))
    h, w = cfg.hw
    check_imgsz(h if h == w else (w, h), 32, builder)  # ExportError naming WxH: the FPN's coarsest stride
    start = time.time()
    if state is None:
        model, source = seeded_random_model(builder, cfg, seed), source or f"random (seed {seed})"
    else:
        model = build_torchvision(builder, cfg, num_classes_of(state, source))
        model.load_state_dict(state)
    num_classes = model.roi_heads.box_predictor.cls_score.out_features
    names = class_names or class_names_for(num_classes)
    if len(names) != num_classes:
        raise ExportError(f"class names: expected {num_classes} (background included), found {len(names)}")
    graph = TwoStageGraph(model, cfg).eval()
    onnx_model = trace_graph(graph, batch)
    metadata = twostage_metadata(builder, cfg, batch, names, source)
    out = Path(out)
    set_metadata(onnx_model, metadata)
    write_with(out, lambda tmp: onnx.save(onnx_model, str(tmp)))
    report: dict = {}
    if check:
        report = check_twostage(model, out, cfg, images)
        report["graph"] = {"builder": builder, **asdict(cfg)}
        metadata.fidelity = report
        set_metadata(onnx_model, metadata)
        write_with(out, lambda tmp: onnx.save(onnx_model, str(tmp)))
        if console is not None:
            print_twostage_report(report, console)
        if not report["passed"]:
            raise ExportError(f"fidelity check failed for {out}: " + "; ".join(report["failures"]))
    return ExportResult(path=out, metadata=metadata, fidelity=report, seconds=time.time() - start)


def export_loaded(detector, out: str | Path, opts, fidelity_images: list | None = None,  # noqa: ANN001
                  console: Console | None = None) -> ExportResult:
    """``edgecv export <two-stage name>``: :func:`export_twostage` with the CLI's
    :class:`~edgecv.export.onnx_export.ExportOptions` (imgsz, batch, max_det, conf, iou,
    max_candidates, check); ``fidelity_images`` (BGR uint8) replace the default check images.
    Random weights (no ``--weights``) get ``conf <= 0.05``: their scores are
    spread thin and the fidelity check needs detections to compare."""
    if opts.dynamic:
        raise ExportError("--dynamic: expected a static input for two-stage graphs (anchors are fixed at the "
                          "export size), found --dynamic")
    h, w = check_imgsz(opts.imgsz or detector.imgsz, 32, detector.family)  # width-first in, (h, w) out
    conf = opts.conf if detector.extra["state"] is not None else min(opts.conf, 0.05)
    if console is not None and conf != opts.conf:
        console.print(f"[yellow]random weights (no --weights): score threshold lowered to {conf}[/]")
    cfg = TwoStageConfig(imgsz=(h, w), max_det=opts.max_det, conf=conf, iou=opts.iou,
                         max_candidates=opts.max_candidates, static_shapes=opts.static_shapes)
    check_export_input(opts.input, opts.frame, dynamic=False)
    fidelity_images, _ = _check_images(opts, fidelity_images)  # --check-images: the user's own photos
    result = export_twostage(detector.extra["builder"], out, cfg, batch=opts.batch, state=detector.extra["state"],
                             source=detector.source, class_names=detector.class_names, check=opts.check,
                             console=console, images=fidelity_images)
    if opts.input == "uint8":  # prefix in front of the checked float graph, then checked against it
        frames = fidelity_images if fidelity_images is not None else default_check_images(cfg.hw)
        record = to_uint8_input(result.path, frames, opts.frame, opts.fidelity_match)
        result.metadata = uint8_metadata(result.metadata, None if opts.frame is None else opts.frame[::-1])
        result.metadata.fidelity = result.fidelity = {**result.fidelity, "uint8_input": record}
        if console is not None:
            console.print(f"uint8 input: {record['matched']}/{record['total']} of the float graph's detections "
                          f"matched (IoU >= 0.99)")
    return result
