"""``edgecv::BatchedNMS``: the detector NMS plugin (Triton kernel, CPU twin, TensorRT registration, graph pass).

The node form (one form, resolved by both the ONNX Runtime twin and TensorRT's ONNX parser)::

    op_type  "BatchedNMS"            TensorRT: plugin name;  ORT: the Python custom op's type
    domain   "ai.onnx.contrib"       where onnxruntime-extensions' Python ops live; TensorRT's parser
                                     looks a node that is no ONNX op up by op_type alone
    inputs   boxes  [B,N,4] float32  x1, y1, x2, y2 (network-input pixels)
             scores [B,N,C] float32  per-class probabilities
    outputs  num_dets [B,1] int32, boxes [B,K,4] float32, scores [B,K] float32, classes [B,K] int32
    attributes
      plugin_namespace  "edgecv"     TensorRT's plugin registry namespace
      plugin_version    "1"          TensorRT's plugin version (QDP plugins are version "1")
      max_det           int          K, rows per image (>= 1)
      iou_threshold     string       suppress when IoU > this (strict), compared in float32
      conf_threshold    string       a (box, class) pair is a candidate when score > this (strict)
      max_candidates    int          pre-select the top boxes by best-class score; 0 = no cap
      class_agnostic    int          1: suppression across classes; 0: per class (default)

The thresholds are *string* attributes holding the exact float32 value (``repr`` of it, see
:func:`threshold_text`): onnxruntime-extensions hands float attributes to Python ops printed with
six decimals (``0.142857`` for 1/7, which then suppresses a box at IoU exactly 1/7 that ONNX keeps),
and TensorRT's plugin attributes take ``str`` as readily as ``float``.

Semantics: those of :mod:`edgecv.export.nms` (multi-label, strict thresholds, rows sorted by score
descending, then class, then box index, zero-padded), with one documented difference: ties in the
walk order compare the *original* box index, where the portable graph, after its ``TopK``
pre-selection, compares the position in the pre-selected list. The two differ only for two
candidates of one class with bit-identical scores for that class but different best-class scores.

This module is light (no triton, torch, onnx or tensorrt at import).
"""

from __future__ import annotations

from typing import Any

OP_TYPE = "BatchedNMS"
NAMESPACE = "edgecv"
VERSION = "1"
DOMAIN = "ai.onnx.contrib"
PLUGIN_ID = f"{NAMESPACE}::{OP_TYPE}"
#: Node attributes besides plugin_namespace / plugin_version, with their Python types (TensorRT's too).
ATTRIBUTES: dict[str, type] = {"max_det": int, "iou_threshold": str, "conf_threshold": str,
                               "max_candidates": int, "class_agnostic": int}


def threshold_text(value: float) -> str:
    """A threshold as the node stores it: the shortest text that reads back as the same float32."""
    import numpy as np

    return str(np.float32(value))  # numpy prints a float32 as its shortest round-tripping decimal


#: Representative node attributes (edgecv export defaults): what benchmarks/bench_plugin_compile.py compiles.
DEFAULT_ATTRS: dict[str, Any] = {"max_det": 100, "iou_threshold": "0.45", "conf_threshold": "0.25",
                                 "max_candidates": 3840, "class_agnostic": 0}


def kernel_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Node attributes -> keyword arguments of the kernel's host function / constexprs."""
    return {"max_det": int(attrs["max_det"]), "iou_threshold": float(attrs["iou_threshold"]),
            "conf_threshold": float(attrs["conf_threshold"]), "max_candidates": int(attrs["max_candidates"]),
            "class_agnostic": bool(int(attrs["class_agnostic"]))}


def compile_node(attrs: dict[str, Any], capability: str | int, *, ptx_version: int | None = None) -> list:
    """The kernels a node with these attributes runs, compiled for ``capability`` (list of CompiledKernel)."""
    from edgecv.plugins.batched_nms.kernel import KERNEL_SIGNATURE, NUM_WARPS, batched_nms_kernel, kernel_constexprs
    from edgecv.plugins.compile import compile_kernel

    constexprs = kernel_constexprs(**kernel_attrs(attrs))
    return [compile_kernel(batched_nms_kernel, KERNEL_SIGNATURE, constexprs, capability, num_warps=NUM_WARPS,
                           ptx_version=ptx_version)]
