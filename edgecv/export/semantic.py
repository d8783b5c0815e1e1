"""Semantic segmentation export: PyTorch segmenter → self-describing ONNX with the label map in the graph.

The segmenter (``LoadedDetector`` with ``task="semantic"``) maps images float32 [B,3,H,W] to
per-class logits float32 [B,C,H,W] at the input size. Steps: trace it to a *raw* graph whose one
output is ``logits``; slim it; append the post-processing nodes (prefix :data:`SEMANTIC_PREFIX`):

* ``labels`` int32 [B,H,W] = ``Cast(ArgMax(logits, axis=1, keepdims=0))`` -- the arg-max class per
  network-input pixel (first index on ties, as ``torch.argmax``);
* with ``ExportOptions.probs``: ``probs`` float32 [B,C,H,W] = ``Softmax(logits, axis=1)``.

No NMS, no ``num_dets``. The two nodes work on whole tensors, so the node count does not depend on
the batch size, and with ``dynamic`` batch, height and width stay symbolic. Then the metadata
(task ``semantic``, outputs) and the fidelity check (:mod:`edgecv.export.fidelity_semantic`).
"""

from __future__ import annotations

import dataclasses
import io
import time
import warnings
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from edgecv.errors import ExportError
from edgecv.export.onnx_export import (ExportOptions, ExportResult, _check_images, build_metadata, check_imgsz,
                                       export_hw, resolve_options, save_checked, slim)
from edgecv.export.uint8_input import check_export_input, frame_images, to_uint8_input
from edgecv.metadata import ArtifactMetadata
from edgecv.models.base import LoadedDetector

SEMANTIC_PREFIX = "edgecv_semantic/"
RAW_OUTPUT = "logits"
LABELS, PROBS = "labels", "probs"


def semantic_to_onnx(module: nn.Module, opts: ExportOptions, input_name: str = "images") -> onnx.ModelProto:
    """Trace ``module`` (images → logits [B,C,H,W]) to an in-memory ONNX model with output ``logits``."""
    dummy = torch.zeros(opts.batch, 3, *export_hw(opts.imgsz))
    axes = None
    if opts.dynamic:
        spatial = {0: "batch", 2: "height", 3: "width"}
        axes = {input_name: spatial, RAW_OUTPUT: spatial}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; failures still raise
        torch.onnx.export(module.eval(), (dummy,), buffer, dynamo=False, input_names=[input_name],
                          output_names=[RAW_OUTPUT], opset_version=opts.opset, dynamic_axes=axes,
                          do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def _dims(value: onnx.ValueInfoProto) -> list:
    """The shape of a graph value as ints / symbolic names (None where unknown)."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value.type.tensor_type.shape.dim]


def append_label_map(raw: onnx.ModelProto, probs: bool = False) -> onnx.ModelProto:
    """A copy of ``raw`` whose outputs are ``labels`` int32 [B,H,W] (and ``probs`` float32 [B,C,H,W])."""
    model = onnx.ModelProto()
    model.CopyFrom(raw)
    graph = model.graph
    logits = next(o for o in graph.output if o.name == RAW_OUTPUT)
    b, c, h, w = _dims(logits)
    graph.node.extend([
        helper.make_node("ArgMax", [RAW_OUTPUT], [SEMANTIC_PREFIX + "argmax"], name=SEMANTIC_PREFIX + "ArgMax",
                         axis=1, keepdims=0, select_last_index=0),
        helper.make_node("Cast", [SEMANTIC_PREFIX + "argmax"], [LABELS], name=SEMANTIC_PREFIX + "Cast",
                         to=TensorProto.INT32),
    ])
    outputs = [helper.make_tensor_value_info(LABELS, TensorProto.INT32, [b, h, w])]
    if probs:
        graph.node.append(helper.make_node("Softmax", [RAW_OUTPUT], [PROBS], name=SEMANTIC_PREFIX + "Softmax", axis=1))
        outputs.append(helper.make_tensor_value_info(PROBS, TensorProto.FLOAT, [b, c, h, w]))
    del graph.output[:]
    graph.output.extend(outputs)
    onnx.checker.check_model(model)
    return model


def semantic_metadata(segmenter: LoadedDetector, opts: ExportOptions) -> ArtifactMetadata:
    """The detection metadata with task ``semantic`` and the label-map outputs."""
    meta = build_metadata(segmenter, opts)
    return dataclasses.replace(meta, task="semantic", outputs=[LABELS, PROBS] if opts.probs else [LABELS])


def export_semantic(segmenter: LoadedDetector, out: str | Path, opts: ExportOptions | None = None,
                    fidelity_images: list | None = None, console=None) -> ExportResult:
    """Export a semantic segmenter to ``out`` (.onnx) with the label map in the graph and a fidelity check.

    ``fidelity_images`` are BGR uint8 images; default: synthetic validation scenes. A failed check
    raises :class:`ExportError` listing every failed criterion; the file is still written.
    """
    from edgecv.export.fidelity import Tolerance, default_images
    from edgecv.export.fidelity_semantic import check_semantic_fidelity, print_semantic_report

    opts = resolve_options(opts, segmenter)
    start = time.time()
    out = Path(out)
    hw = check_imgsz(opts.imgsz, 32, segmenter.family)
    tolerance = Tolerance(opts.fidelity_atol, opts.fidelity_rtol, opts.fidelity_match)
    fidelity_images, images_source = _check_images(opts, fidelity_images)
    if console is not None and segmenter.extra.get("random_weights"):
        console.print(f"[yellow]no --weights given: {segmenter.family} with random weights[/] (an export / "
                      "benchmark check; pass --weights state_dict.pt for a trained model)")
    check_export_input(opts.input, opts.frame, opts.dynamic)
    raw = semantic_to_onnx(segmenter.module, opts)
    if opts.simplify:
        raw = slim(raw)
    model = append_label_map(raw, probs=opts.probs)
    metadata = semantic_metadata(segmenter, opts)
    if opts.input == "uint8":
        raw, model, metadata = to_uint8_input(raw, model, metadata, opts.frame)
    report: dict = {}
    if opts.check:
        images = fidelity_images if fidelity_images is not None else default_images(hw)
        images = frame_images(images, opts.frame)  # a --frame graph takes frames of exactly that size
        report = check_semantic_fidelity(segmenter.module, raw, model, metadata, images, tolerance, images_source)
    return save_checked(model, metadata, report, out, start, console, print_semantic_report)
