"""The candidate pre-selection of :func:`edgecv.export.nms.append_nms` and its channel-first read.

Before NMS, the graph keeps the ``max_candidates`` candidates with the highest best-class score
(``ReduceMax`` + ``TopK`` + a gather; the limits it serves: :mod:`edgecv.export.nms`). The raw
outputs are read either as ``[B, N, X]`` (gathered with ``GatherND``) or, when a raw output is a
``Transpose(perm=[0, 2, 1])`` nothing else reads, from that Transpose's channel-first ``[B, X, N]``
source (gathered with ``Gather``): :func:`channel_first_source` finds it and :func:`drop_producers`
removes the dead Transpose. Nodes are built with ``edgecv.export.nms``'s ``_GraphBuilder`` (prefix
``edgecv_nms/``), passed in as ``g``. Imports neither onnx nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

    from edgecv.export.nms import _GraphBuilder


def channel_first_source(model: "onnx.ModelProto", output: str) -> str | None:
    """The ``[B, X, N]`` tensor a ``Transpose(perm=[0, 2, 1])`` turns into graph output ``output``, when
    nothing in the graph reads ``output`` (the Transpose is then dead once NMS reads the source), else None."""
    graph = model.graph
    producer = next((n for n in graph.node if output in n.output), None)
    if producer is None or producer.op_type != "Transpose" or len(producer.output) != 1:
        return None
    perm = next((list(a.ints) for a in producer.attribute if a.name == "perm"), None)
    if perm != [0, 2, 1] or any(output in n.input for n in graph.node):
        return None
    return producer.input[0]


def drop_producers(graph: Any, outputs: set[str]) -> None:
    """Remove the nodes producing ``outputs`` (the dead Transposes) and those tensors' value_info (in place)."""
    kept = [n for n in graph.node if not set(n.output) & outputs]
    del graph.node[:]
    graph.node.extend(kept)
    stale = [v for v in graph.value_info if v.name in outputs]
    for value in stale:
        graph.value_info.remove(value)


def take_columns(g: "_GraphBuilder", x: str, idx: str, dims: tuple, role: str) -> str:
    """Channel-first ``x [B,X,N]`` at candidates ``idx [B,K]`` -> ``[B,X,K]``, with ``Gather`` (OpenVINO runs it
    in a JIT kernel; ``GatherElements``, which says the same thing, only in a reference kernel slower than
    the Transpose this avoids).

    ``dims`` = ``(B, X, N)``, ints when static, else None. ``B = 1``: ``Gather(axis=2)`` at ``idx``
    flattened to ``[K]`` (no index tensor of ``X*K`` entries to build: half the time of the general
    form). Otherwise one 1-D Gather of the flattened ``x`` at ``(b*X + c)*N + idx[b,k]``, the offsets a
    constant when the dims are static, else computed from ``x``'s shape.
    """
    batch, width, n = dims
    if batch == 1:
        flat_idx = g.op("Reshape", [idx, g.const(f"pre/{role}_k", [-1], np.int64)], f"pre/{role}_idx")  # [K]
        return g.op("Gather", [x, flat_idx], f"pre/{role}", axis=2)
    if all(isinstance(d, int) for d in dims):
        rows = (np.arange(batch * width, dtype=np.int64) * n).reshape(batch, width, 1)
        base = g.const(f"pre/{role}_offsets", rows, np.int64)  # [B,X,1]
    else:
        shape = g.op("Shape", [x], f"pre/{role}_shape")  # [3]
        b_x = g.op("Slice", [shape, g.const(f"pre/{role}_from", [0], np.int64), g.const(f"pre/{role}_to", [2], np.int64)],
                   f"pre/{role}_bx")  # [2]: B, X
        dim = [g.op("Gather", [shape, g.const(f"pre/{role}_dim{a}_index", a, np.int64)], f"pre/{role}_dim{a}") for a in (0, 1)]
        count = g.op("Mul", dim, f"pre/{role}_rows")  # B*X (scalar; elementwise on shapes: what TensorRT parses best)
        rows = g.op("Range", [g.const(f"pre/{role}_start", 0, np.int64), count, g.const(f"pre/{role}_step", 1, np.int64)],
                    f"pre/{role}_row_ids")  # [B*X]
        row_shape = g.op("Concat", [b_x, g.const(f"pre/{role}_one", [1], np.int64)], f"pre/{role}_row_shape", axis=0)
        n = g.op("Gather", [shape, g.const(f"pre/{role}_axis_n", [2], np.int64)], f"pre/{role}_n")  # [1]
        base = g.op("Mul", [g.op("Reshape", [rows, row_shape], f"pre/{role}_rows_bx1"), n], f"pre/{role}_offsets")
    cols = g.op("Unsqueeze", [idx, g.const(f"pre/{role}_axis1", [1], np.int64)], f"pre/{role}_cols")  # [B,1,K]
    flat_idx = g.op("Add", [base, cols], f"pre/{role}_flat_idx")  # [B,X,K]
    flat = g.op("Reshape", [x, g.const(f"pre/{role}_flat_shape", [-1], np.int64)], f"pre/{role}_flat")  # [B*X*N]
    return g.op("Gather", [flat, flat_idx], f"pre/{role}", axis=0)


def preselect(g: "_GraphBuilder", boxes: tuple[str, bool], scores: tuple[str, bool], dims: tuple,
               max_candidates: int, n_static: int | None) -> tuple[str, str]:
    """Keep the top-``max_candidates`` candidates per image by max class score.

    ``boxes`` / ``scores`` = (tensor, channel_first): ``[B,N,4]`` / ``[B,N,C]`` (gathered with GatherND),
    or ``[B,4,N]`` / ``[B,C,N]`` when channel-first (gathered with Gather, :func:`take_columns`);
    ``dims`` = ``(B, C, N)``, ints when the graph states them, else None. Returns them with ``N`` cut to
    ``K = min(N, max_candidates)``, each in its own layout, ordered by descending max score (ties:
    lower candidate index first). ``n_static``: ``N`` when the graph states it (``k`` is then a
    constant, the form every TensorRT version parses).
    """
    best = g.reduce("ReduceMax", scores[0], 1 if scores[1] else 2, "pre/max_score", keepdims=0)  # [B,N]
    if n_static is not None:
        k = g.const("pre/k", [min(n_static, max_candidates)], np.int64)
    else:
        n = g.op("Gather", [g.op("Shape", [best], "pre/shape"), g.const("pre/one", [1], np.int64)], "pre/n")  # [1]
        k = g.op("Min", [n, g.const("pre/max_candidates", [max_candidates], np.int64)], "pre/k")
    _, idx = g.op("TopK", [best, k], "pre/topk", n_out=2, axis=1, largest=1, sorted=1)  # [B,K]
    rows = None
    if not (boxes[1] and scores[1]):
        rows = g.op("Unsqueeze", [idx, g.const("pre/axis2", [2], np.int64)], "pre/idx")  # [B,K,1]
    batch, classes, n = dims
    picked = [take_columns(g, x, idx, (batch, width, n), role) if channel_first
              else g.op("GatherND", [x, rows], f"pre/{role}", batch_dims=1)
              for (x, channel_first), width, role in ((boxes, 4, "boxes"), (scores, classes, "scores"))]
    return picked[0], picked[1]
