"""Class-aware NMS appended to an ONNX detector graph (its PyTorch reference: :mod:`edgecv.export.nms_reference`).

:func:`append_nms` is a pure ONNX -> ONNX pass. It takes a graph whose outputs are raw
decoded candidates

* ``raw_boxes  [B, N, 4] float32`` -- x1, y1, x2, y2 in network-input pixels,
* ``raw_scores [B, N, C] float32`` -- per-class probabilities in [0, 1],

(``B`` and ``N`` may be symbolic) and replaces the graph outputs with edgecv's detection
output contract, in this order:

* ``num_dets [B, 1]          int32``   -- number of valid rows per image (<= max_det),
* ``boxes    [B, max_det, 4] float32`` -- x1, y1, x2, y2 in network-input pixels,
* ``scores   [B, max_det]    float32``,
* ``classes  [B, max_det]    int32``,

rows sorted by descending score, the first ``num_dets`` rows valid, the rest zero.

Only standard ONNX ops (opset >= 13) are used: ``Transpose``, ``NonMaxSuppression``,
``GatherND``, ``Gather``, ``Shape``, ``Range``, ``Unsqueeze``, ``Equal``, ``Where``, ``Cast``,
``ReduceSum``, ``Min``, ``Pad``, ``TopK``, ``Less``, ``Constant``, ``Identity`` (plus ``ReduceMax``,
``Add``, ``Reshape`` and, for symbolic shapes, ``Slice``, ``Concat``, ``Mul`` for the
candidate pre-selection). Every appended node and tensor is named with the prefix
:data:`NMS_PREFIX` so a later pass can cut the subgraph out and put a TensorRT plugin in
its place; the ``NonMaxSuppression`` node's ``doc_string`` holds the parameters as JSON. The
pre-selection and the channel-first read are built in :mod:`edgecv.export.nms_preselect`.

Layout: ``NonMaxSuppression`` takes scores channel-first, ``[B, C, N]``, while models whose head
is channel-first (Ultralytics' ``[B, 4+C, N]``) end with ``Transpose(perm=[0, 2, 1])`` to give the
``[B, N, C]`` raw outputs. Transposing 80 x 8,400 floats there and the selected scores back costs
~0.9 ms of pure data movement per frame on a CPU (OpenVINO's per-layer profile). So when a raw
output is produced by such a Transpose and nothing else in the graph reads it, that Transpose is
dropped and the subgraph reads its channel-first source instead: the pre-selection takes
``ReduceMax`` over the class axis 1 and gathers the ``K`` kept columns of ``[B, C, N]`` with ``Gather``
(along axis 2 when ``B = 1``, else of the flattened tensor at ``(b*C + c)*N + idx``; OpenVINO runs
``Gather`` in a JIT kernel, ``GatherElements`` only in a slow reference one), which is already NMS's
layout; only the ``[B, 4, K]``
boxes get a (small) Transpose. Without pre-selection NMS reads the source scores directly. Any
other raw output (a plain ``[B, N, C]`` tensor) is read as is, with the selected scores transposed
for NMS (``edgecv_nms/scores_bcn``). Both forms give the same detections, bit for bit.

Semantics shared with :func:`edgecv.export.nms_reference.nms_reference` (and with ONNX Runtime's ``NonMaxSuppression``,
checked by the tests):

* a (box, class) pair is a candidate when ``score > conf_threshold`` (strict; multi-label:
  one box can be kept for several classes);
* within a class, a box is suppressed by a kept box when ``IoU > iou_threshold`` (strict);
  boxes of different classes never suppress each other;
* the kept detections of an image are ordered by descending score; equal scores are ordered
  by class index, then by candidate index;
* thresholds are compared in float32;
* boxes must be well-formed (x1 <= x2, y1 <= y2). ONNX's ``NonMaxSuppression`` documents its
  corner format as y1, x1, y2, x2, but IoU is symmetric in x and y, so x1, y1, x2, y2 is
  equivalent. Boxes of zero area never suppress anything, in both implementations.

TensorRT limits (checked here so an export never builds into a silently truncating engine):
its ``TopK`` accepts ``k <= 3840`` (:data:`TENSORRT_TOPK_MAX`), and its NMS layer considers at
most 5,000 boxes per image (:data:`TENSORRT_NMS_MAX_BOXES`; 2,000 on SM 5.3 / 6.2, which
TensorRT 10 no longer supports), dropping the rest in an unspecified order among equal scores.
A 640 px YOLO has 8,400 candidates. So, by default, the ``max_candidates`` =
:data:`DEFAULT_MAX_CANDIDATES` (3840) candidates with the highest best-class score are
pre-selected *inside the graph* (``ReduceMax`` + ``TopK`` + ``GatherND`` / ``Gather``) before NMS, and
``max_det`` above 3840 is refused. The pre-selection is skipped when the graph's candidate
count is static and within the cap (nothing to drop); with a symbolic count it keeps
``min(N, max_candidates)``. ``max_candidates=None`` removes the cap (a graph for ONNX Runtime /
OpenVINO only: TensorRT would truncate).

The per-image top-``max_det`` selection concatenates a block of ``max_det`` sentinel
columns (score -1) to the ``[B, S]`` score matrix of the ``S`` NMS survivors before
``TopK``. So ``TopK`` always has ``k = max_det`` (no dynamic ``Pad`` after it, output
shapes known statically, and ``S = 0`` needs no special case).

This module imports neither onnx nor torch at import time (a runtime-only install can
import it); they are imported by the functions that need them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecv.errors import ExportError, MissingDependencyError
from edgecv.export.nms_preselect import channel_first_source, drop_producers, preselect

if TYPE_CHECKING:
    import onnx

#: Name prefix of every node and tensor appended by :func:`append_nms`.
NMS_PREFIX = "edgecv_nms/"
#: Output names of the detection contract, in output order.
NMS_OUTPUTS = ("num_dets", "boxes", "scores", "classes")
#: Lowest default-domain opset the appended subgraph supports.
MIN_OPSET = 13

_SENTINEL_SCORE = -1.0  # below every candidate score (candidates have score > conf >= 0)
#: Largest ``k`` TensorRT's TopK layer accepts (TensorRT 10 / 11 operator docs).
TENSORRT_TOPK_MAX = 3840
#: Most boxes per image TensorRT's NMS layer considers (its TopK box limit, SM >= 7.x).
TENSORRT_NMS_MAX_BOXES = 5000
#: Default candidate cap before NMS: within both limits above.
DEFAULT_MAX_CANDIDATES = min(TENSORRT_TOPK_MAX, TENSORRT_NMS_MAX_BOXES)


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError(
            "appending NMS to an ONNX graph needs the 'onnx' package; "
            "install the export extra: pip install 'edgecv[export]'"
        ) from exc
    return onnx


class _GraphBuilder:
    """Collects prefixed nodes; ``op`` returns the output tensor name(s)."""

    def __init__(self, onnx_mod: Any, opset: int, prefix: str = NMS_PREFIX):
        self.onnx = onnx_mod
        self.opset = opset
        self.prefix = prefix
        self.nodes: list = []
        self.names: set[str] = set()

    def op(self, op_type: str, inputs: list[str], name: str, n_out: int = 1, **attrs: Any) -> Any:
        full = self.prefix + name
        base, suffix = full, 1
        while full in self.names:  # tensor names must be unique (SSA); keep the readable name when free
            full, suffix = f"{base}_{suffix}", suffix + 1
        self.names.add(full)
        outputs = [full] if n_out == 1 else [f"{full}_out{i}" for i in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outputs, name=full, **attrs))
        return outputs[0] if n_out == 1 else outputs

    def const(self, name: str, value: Any, dtype: Any) -> str:
        tensor = self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), self.prefix + name)
        return self.op("Constant", [], name, value=tensor)

    def reduce(self, op_type: str, x: str, axis: int, name: str, keepdims: int) -> str:
        """Reduce over one axis; ``axes`` became an input in opset 13 (ReduceSum) / 18 (others)."""
        axes_as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if axes_as_input:
            axes = self.const(f"{name}_axes", [axis], np.int64)
            return self.op(op_type, [x, axes], name, keepdims=keepdims)
        return self.op(op_type, [x], name, axes=[axis], keepdims=keepdims)


def _default_opset(model: "onnx.ModelProto") -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ExportError("expected the model to import the default ONNX opset, found none")


def _check_params(max_det: int, iou_threshold: float, conf_threshold: float, max_candidates: int | None) -> None:
    if isinstance(max_det, bool) or not isinstance(max_det, (int, np.integer)) or max_det < 1:
        raise ExportError(f"expected max_det to be an integer >= 1, found {max_det!r}")
    if max_det > TENSORRT_TOPK_MAX:
        raise ExportError(f"expected max_det <= {TENSORRT_TOPK_MAX} (TensorRT's TopK limit; the graph keeps the top "
                          f"max_det detections with TopK), found {max_det}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ExportError(f"expected iou_threshold in [0, 1], found {iou_threshold!r}")
    if not 0.0 <= float(conf_threshold) < 1.0:
        raise ExportError(f"expected conf_threshold in [0, 1), found {conf_threshold!r}")
    if max_candidates is not None and (
        isinstance(max_candidates, bool) or not isinstance(max_candidates, (int, np.integer)) or max_candidates < 1
    ):
        raise ExportError(f"expected max_candidates to be None or an integer >= 1, found {max_candidates!r}")
    if max_candidates is not None and max_candidates > DEFAULT_MAX_CANDIDATES:
        raise ExportError(f"expected max_candidates <= {DEFAULT_MAX_CANDIDATES} (TensorRT's TopK takes k <= "
                          f"{TENSORRT_TOPK_MAX}, its NMS <= {TENSORRT_NMS_MAX_BOXES} boxes), or None for no cap, "
                          f"found {max_candidates}")


def check_nms_options(max_det: int, iou_threshold: float, conf_threshold: float,
                      max_candidates: int | None = DEFAULT_MAX_CANDIDATES) -> None:
    """Raise :class:`ExportError` (one line, expected vs found) for options :func:`append_nms` would refuse.

    For callers with work to do before the NMS pass (tracing a model): check first.
    """
    _check_params(max_det, iou_threshold, conf_threshold, max_candidates)


def _dims(value_info: Any) -> list | None:
    """Dims of a graph value as ints / symbol strings / None, or None when the rank is unknown."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim]


def _static(dims: list | None, axis: int) -> int | None:
    """Dim ``axis`` of ``dims`` when the graph states it as a positive int, else None."""
    value = dims[axis] if dims is not None else None
    return value if isinstance(value, int) and value > 0 else None


def _check_output(onnx_mod: Any, value_info: Any, role: str, last: str) -> list | None:
    """Validate one raw output: float32, rank 3, ``[B, N, last]``; return its dims."""
    name, elem = value_info.name, value_info.type.tensor_type.elem_type
    if elem != onnx_mod.TensorProto.FLOAT:
        found = onnx_mod.TensorProto.DataType.Name(elem)
        raise ExportError(f"output '{name}' ({role}): expected dtype FLOAT (float32), found {found}")
    dims = _dims(value_info)
    if dims is not None and len(dims) != 3:
        raise ExportError(f"output '{name}' ({role}): expected rank 3 [B, N, {last}], found rank {len(dims)} {dims}")
    if dims is not None and last == "4" and isinstance(dims[2], int) and dims[2] not in (0, 4):
        raise ExportError(f"output '{name}' ({role}): expected last dim 4 (x1, y1, x2, y2), found {dims[2]}")
    return dims


def _check_graph(onnx_mod: Any, model: "onnx.ModelProto", boxes_output: str, scores_output: str
                 ) -> tuple[list | None, list | None]:
    """Validate the raw outputs and name clashes; return the boxes and scores dims (each or None)."""
    outputs = {o.name: o for o in model.graph.output}
    for name, role in ((boxes_output, "boxes_output"), (scores_output, "scores_output")):
        if name not in outputs:
            raise ExportError(f"expected a graph output named '{name}' ({role}), found outputs {list(outputs)}")
    box_dims = _check_output(onnx_mod, outputs[boxes_output], "boxes_output", "4")
    score_dims = _check_output(onnx_mod, outputs[scores_output], "scores_output", "C")
    if box_dims is not None and score_dims is not None:
        for axis, label in ((0, "B"), (1, "N")):
            a, b = box_dims[axis], score_dims[axis]
            if isinstance(a, int) and isinstance(b, int) and a != b:
                raise ExportError(
                    f"expected '{boxes_output}' and '{scores_output}' to share dim {label}, found {a} vs {b}"
                )
    _check_names(model)
    return box_dims, score_dims


def _check_names(model: "onnx.ModelProto") -> None:
    """Refuse a graph that already holds the NMS subgraph or tensors named like the contract outputs."""
    graph = model.graph
    tensors = {t for n in graph.node for t in n.output} | {v.name for v in (*graph.input, *graph.initializer)}
    if any(t.startswith(NMS_PREFIX) for t in tensors | {n.name for n in graph.node}):
        raise ExportError(
            f"expected a graph without NMS, found nodes or tensors named '{NMS_PREFIX}*' (NMS already appended?)"
        )
    clashes = sorted(set(NMS_OUTPUTS) & tensors)
    if clashes:
        raise ExportError(f"expected no existing tensors named {list(NMS_OUTPUTS)}, found {clashes}; rename them")


def _nms(g: _GraphBuilder, boxes: str, scores_t: str, params: dict) -> tuple[str, str, str, str]:
    """Per-class NMS of ``boxes [B,N,4]`` and ``scores_t [B,C,N]`` (the layouts NonMaxSuppression takes).
    Returns ``selected [S,3]`` (batch, class, box) int64, ``det_boxes [S,4]``, ``det_scores [S]`` float32
    and ``det_classes [S]`` int64."""
    selected = g.op(
        "NonMaxSuppression",
        [
            boxes,
            scores_t,
            g.const("max_output_boxes_per_class", [params["max_det"]], np.int64),
            g.const("iou_threshold", [params["iou_threshold"]], np.float32),
            g.const("score_threshold", [params["conf_threshold"]], np.float32),
        ],
        "NonMaxSuppression",
        center_point_box=0,
    )
    g.nodes[-1].doc_string = json.dumps(params, sort_keys=True)
    det_scores = g.op("GatherND", [scores_t, selected], "det_scores")  # [S]
    batch_box = g.op("Gather", [selected, g.const("cols_batch_box", [0, 2], np.int64)], "sel_batch_box", axis=1)
    det_boxes = g.op("GatherND", [boxes, batch_box], "det_boxes")  # [S,4]
    det_classes = g.op("Gather", [selected, g.const("col_class", 1, np.int64)], "det_classes", axis=1)  # [S]
    return selected, det_boxes, det_scores, det_classes


def _batch_mask(g: _GraphBuilder, boxes: str, selected: str) -> str:
    """``mask [B,S] bool``: ``mask[b, s]`` is true when survivor ``s`` belongs to image ``b``."""
    batch = g.op("Gather", [g.op("Shape", [boxes], "boxes_shape"), g.const("zero", 0, np.int64)], "batch")  # scalar
    images = g.op("Range", [g.const("range_start", 0, np.int64), batch, g.const("range_step", 1, np.int64)], "images")
    images = g.op("Unsqueeze", [images, g.const("axis1", [1], np.int64)], "images_col")  # [B,1]
    det_batch = g.op("Gather", [selected, g.const("col_batch", 0, np.int64)], "det_batch", axis=1)  # [S]
    det_batch = g.op("Unsqueeze", [det_batch, g.const("axis0", [0], np.int64)], "det_batch_row")  # [1,S]
    return g.op("Equal", [images, det_batch], "batch_mask")


def _top_per_image(g: _GraphBuilder, mask: str, det_scores: str, max_det: int) -> tuple[str, str, str, str]:
    """Per image, the best ``max_det`` survivors: ``num [B,1]`` int64 (valid count), ``valid [B,max_det]`` bool,
    ``values [B,max_det]`` float32 and ``idx [B,max_det]`` int64 (index into the survivors, or >= S)."""
    i64 = g.onnx.TensorProto.INT64
    count = g.reduce("ReduceSum", g.op("Cast", [mask], "mask_i64", to=i64), 1, "count", keepdims=1)  # [B,1]
    num = g.op("Min", [count, g.const("max_det", [max_det], np.int64)], "num")
    row = g.op("Unsqueeze", [det_scores, g.const("axis0", [0], np.int64)], "det_scores_row")  # [1,S]
    sentinel = g.const("sentinel", _SENTINEL_SCORE, np.float32)
    masked = g.op("Where", [mask, row, sentinel], "masked_scores")  # [B,S]
    # max_det sentinel columns: TopK always has k = max_det columns to choose from, even when S = 0.
    masked = g.op("Pad", [masked, g.const("pads_scores", [0, 0, 0, max_det], np.int64), sentinel], "padded_scores")
    k = g.const("k", [max_det], np.int64)
    values, idx = g.op("TopK", [masked, k], "topk", n_out=2, axis=1, largest=1, sorted=1)  # [B,max_det]
    valid = g.op("Less", [g.const("slots", np.arange(max_det)[None, :], np.int64), num], "valid")  # [B,max_det]
    return num, valid, values, idx


def _gather_outputs(g: _GraphBuilder, det_boxes: str, det_classes: str, top: tuple, max_det: int) -> None:
    """Gather the chosen survivors, zero the invalid rows, cast, and name the four contract outputs."""
    num, valid, values, idx = top
    # Pad the gather sources with max_det rows so indices into the sentinel block stay in range (S may be 0).
    boxes_p = g.op("Pad", [det_boxes, g.const("pads_boxes", [0, 0, max_det, 0], np.int64)], "det_boxes_padded")
    classes_p = g.op("Pad", [det_classes, g.const("pads_classes", [0, max_det], np.int64)], "det_classes_padded")
    boxes = g.op("Gather", [boxes_p, idx], "gather_boxes", axis=0)  # [B,max_det,4]
    classes = g.op("Gather", [classes_p, idx], "gather_classes", axis=0)  # [B,max_det]
    valid3 = g.op("Unsqueeze", [valid, g.const("axis2", [2], np.int64)], "valid3")
    boxes = g.op("Where", [valid3, boxes, g.const("zero_f", 0.0, np.float32)], "where_boxes")
    scores = g.op("Where", [valid, values, g.const("zero_s", 0.0, np.float32)], "where_scores")
    classes = g.op("Where", [valid, classes, g.const("zero_i", 0, np.int64)], "where_classes")
    i32 = g.onnx.TensorProto.INT32
    results = [g.op("Cast", [num], "cast_num", to=i32), boxes, scores, g.op("Cast", [classes], "cast_classes", to=i32)]
    for tensor, out_name in zip(results, NMS_OUTPUTS):
        g.nodes.append(g.onnx.helper.make_node("Identity", [tensor], [out_name], name=f"{NMS_PREFIX}out/{out_name}"))


def append_nms(
    model: "onnx.ModelProto",
    *,
    boxes_output: str = "raw_boxes",
    scores_output: str = "raw_scores",
    max_det: int = 100,
    iou_threshold: float = 0.45,
    conf_threshold: float = 0.25,
    max_candidates: int | None = DEFAULT_MAX_CANDIDATES,
) -> "onnx.ModelProto":
    """Return a copy of ``model`` whose outputs are the detection contract after class-aware NMS.

    Input graph outputs: ``boxes_output [B,N,4] float32`` (x1, y1, x2, y2 pixels) and
    ``scores_output [B,N,C] float32`` (per-class probabilities); ``B``, ``N`` may be symbolic. When one
    is made by ``Transpose(perm=[0,2,1])`` of a channel-first tensor and read by nothing else, that
    Transpose is dropped and its source read instead (module docstring, "Layout").
    New graph outputs, replacing *all* previous outputs, in order: ``num_dets [B,1] int32``,
    ``boxes [B,max_det,4] float32`` (x1, y1, x2, y2), ``scores [B,max_det] float32``,
    ``classes [B,max_det] int32``; per image sorted by descending score, zero-padded after
    ``num_dets`` rows. Semantics (strict ``>`` thresholds, tie order): see the module docstring.

    ``max_candidates`` (default :data:`DEFAULT_MAX_CANDIDATES` = 3840, at most that): keep only
    the ``max_candidates`` candidates with the highest max-over-classes score per image before
    NMS (``TopK`` + ``GatherND``), so that TensorRT's TopK and NMS limits hold (module docstring);
    skipped when the graph states ``N <= max_candidates``. It also bounds NMS cost at a low
    threshold (e.g. 0.001 for mAP evaluation). ``None``: no cap (ONNX Runtime / OpenVINO only).
    ``max_det`` must be <= 3840 (TensorRT's TopK limit).

    The model's default-domain opset (>= 13) is kept. Raises :class:`ExportError` when the named
    outputs are missing, not float32 or not rank 3, when output names would clash, or on
    invalid parameters; :class:`MissingDependencyError` when onnx is not installed.
    """
    onnx_mod = _require_onnx()
    _check_params(max_det, iou_threshold, conf_threshold, max_candidates)
    opset = _default_opset(model)
    if opset < MIN_OPSET:
        raise ExportError(
            f"expected a model with ONNX opset >= {MIN_OPSET}, found opset {opset}; re-export with a newer opset"
        )
    box_dims, score_dims = _check_graph(onnx_mod, model, boxes_output, scores_output)
    max_candidates = None if max_candidates is None else int(max_candidates)
    params = {"max_det": int(max_det), "iou_threshold": float(iou_threshold),
              "conf_threshold": float(conf_threshold), "max_candidates": max_candidates}
    g = _GraphBuilder(onnx_mod, opset)
    # Read the channel-first source of a raw output that is a dead Transpose (see the module docstring).
    sources = {out: channel_first_source(model, out) for out in (boxes_output, scores_output)}
    boxes = (sources[boxes_output] or boxes_output, sources[boxes_output] is not None)
    scores = (sources[scores_output] or scores_output, sources[scores_output] is not None)
    batch, n_static, classes = (_static(dims, i) for dims, i in ((box_dims, 0), (box_dims, 1), (score_dims, 2)))
    if max_candidates is not None and (n_static is None or n_static > max_candidates):
        picked = preselect(g, boxes, scores, (batch, classes, n_static), max_candidates, n_static)
        boxes, scores = (picked[0], boxes[1]), (picked[1], scores[1])
    # NonMaxSuppression takes boxes [B,N,4] and scores [B,C,N]: transpose whichever layout differs.
    boxes_n4 = g.op("Transpose", [boxes[0]], "boxes_bn4", perm=[0, 2, 1]) if boxes[1] else boxes[0]
    scores_cn = scores[0] if scores[1] else g.op("Transpose", [scores[0]], "scores_bcn", perm=[0, 2, 1])
    selected, det_boxes, det_scores, det_classes = _nms(g, boxes_n4, scores_cn, params)
    mask = _batch_mask(g, boxes_n4, selected)
    top = _top_per_image(g, mask, det_scores, int(max_det))
    _gather_outputs(g, det_boxes, det_classes, top, int(max_det))
    result = onnx_mod.ModelProto()
    result.CopyFrom(model)
    drop_producers(result.graph, {out for out, src in sources.items() if src is not None})
    result.graph.node.extend(g.nodes)
    del result.graph.output[:]
    result.graph.output.extend(_contract_value_infos(onnx_mod, box_dims, int(max_det)))
    return result


def _contract_value_infos(onnx_mod: Any, box_dims: list | None, max_det: int) -> list:
    """Graph output declarations of the detection contract; ``B`` copied from the raw boxes."""
    batch = box_dims[0] if box_dims is not None and box_dims[0] is not None else "batch"
    make, tp = onnx_mod.helper.make_tensor_value_info, onnx_mod.TensorProto
    return [
        make("num_dets", tp.INT32, [batch, 1]),
        make("boxes", tp.FLOAT, [batch, max_det, 4]),
        make("scores", tp.FLOAT, [batch, max_det]),
        make("classes", tp.INT32, [batch, max_det]),
    ]
