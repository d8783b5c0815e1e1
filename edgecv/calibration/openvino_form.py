"""The ``openvino`` target's form: where the activation Q/DQ pairs sit, and 7-bit first-layer weights.

**Placement.** The target starts from the compute-only placement (:mod:`edgecv.calibration.emit`:
a Q/DQ pair on every Conv / MatMul / Gemm activation input). Read by OpenVINO, each pair becomes a
FakeQuantize in front of its convolution. In a YOLO that leaves the data-movement ops between
convolutions -- ``Split`` / ``Slice`` (C2f), ``Concat``, ``MaxPool`` (SPPF), ``Resize`` (the
neck's upsampling) -- running in f32 on dequantized tensors, each followed by its own FakeQuantize.
:func:`hoist_activation_qdq` moves each conv-input pair up through those ops (:data:`PRESERVING`)
to the tensor that *computes* the value (a SiLU's ``Mul``, a residual ``Add``, the network input),
puts one pair there for every reader on those paths, and gives all sources that meet in one
``Concat`` one shared scale (the union of their calibrated ranges), so OpenVINO's low-precision
pass runs the split, concat, pooling and resize in int8 and feeds the convolutions int8 directly
(the placement NNCF chooses for OpenVINO). Measured on Ultralytics' YOLOv8n at 640 (OpenVINO
2026.4, 2-core AMD EPYC, AVX2 only, per-layer profile): f32 FakeQuantize time 2.35 -> 0.92 ms,
``VariadicSplit`` / ``Interpolate`` / ``MaxPool`` from f32 to i8. Readers outside those paths
(post-processing, a residual ``Add``'s other input) keep reading the float tensor.

**First layer, 7-bit weights.** Without VNNI (AVX2, AVX-512F) an int8 convolution multiplies uint8
activations by int8 weights in pairs summed into int16 (``vpmaddubsw``), which saturates when both
are large: 255 x 127 x 2 > 32767. Deep layers rarely get there; the first layer, which reads raw
pixels spanning 0..255 against full-range weights, does. Measured on the demo YOLO exported with
``--input uint8`` on OpenVINO (AVX2): 162 detections instead of fp32's 172 on 40 scenes, 90 % of
them matched at IoU 0.9; with the first layer's weights on 7 bits (``[-64, 63]``:
255 x 63 x 2 < 32767) 172, 98 %. :func:`first_layer_seven_bit` does that to every convolution that
reads the network input (NNCF's default "overflow fix" does the same). On VNNI / AMX CPUs it only
costs the first layer one bit of weight precision.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: Ops that only move, select or pool values: a quantized input gives a quantized output on the
#: same grid, so the Q/DQ pair can sit in front of them.
PRESERVING = frozenset({"Split", "Slice", "MaxPool", "Resize", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
                        "Identity", "Concat", "Flatten"})
_SUFFIX = "_hq"


class _Union:
    """Union-find over tensor names: sources that meet in one Concat share a scale."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        while self.parent.setdefault(x, x) != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _walk_up(tensor: str, producer: dict[str, onnx.NodeProto], inits: set[str], frozen: set[str]
             ) -> tuple[list[str], list[onnx.NodeProto]]:
    """From a conv input up through :data:`PRESERVING` nodes: ``(source tensors, nodes passed)``.
    A node in ``frozen`` (kept float, post-processing) ends the walk: its output is the source."""
    sources: list[str] = []
    passed: list[onnx.NodeProto] = []
    seen: set[str] = set()
    stack = [tensor]
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is not None and node.op_type in PRESERVING and node.name not in frozen:
            if node.name in seen:
                continue
            seen.add(node.name)
            passed.append(node)
            data = list(node.input) if node.op_type == "Concat" else [node.input[0]]
            stack.extend(d for d in data if d and d not in inits)
        elif name not in sources:
            sources.append(name)
    return sources, passed


def _uint8_params(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric uint8 ``(scale, zero point)`` covering ``[lo, hi]`` and 0 (ONNX Runtime's rule)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    return scale, int(np.clip(round(-lo / scale), 0, 255))


def hoist_activation_qdq(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]],
                         frozen: set[str] | frozenset[str] = frozenset()) -> onnx.ModelProto:
    """Move ``model``'s conv-input activation Q/DQ pairs above :data:`PRESERVING` ops, in place (module
    docstring); returns ``model``. ``ranges``: calibrated float ``(lo, hi)`` per tensor (a conv input
    whose sources lack one keeps its pair). ``frozen``: node names the walk must not pass (float readers).
    Activations stay uint8 asymmetric, the ``openvino`` target's choice."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    inits = {i.name for i in graph.initializer}
    pairs = [(q, [c for c in consumers[q.output[0]] if c.op_type == "DequantizeLinear"])
             for q in graph.node if q.op_type == "QuantizeLinear" and q.input[0] not in inits]
    groups, walks = _Union(), []
    for q, dqs in pairs:
        sources, passed = _walk_up(q.input[0], producer, inits, set(frozen))
        if not dqs or any(s not in ranges for s in sources):
            continue  # no calibrated range to place it with: the pair stays where it is
        walks.append((q, dqs, sources, passed))
        for other in sources[1:]:
            groups.union(sources[0], other)
    members: dict[str, list[str]] = defaultdict(list)
    for _, _, sources, _ in walks:
        for s in sources:
            if s not in members[groups.find(s)]:
                members[groups.find(s)].append(s)
    dequantized = {}
    for names in members.values():
        scale, zero = _uint8_params(min(ranges[n][0] for n in names), max(ranges[n][1] for n in names))
        for name in names:
            dequantized[name] = _insert_pair(graph, name, scale, zero)
    for q, dqs, sources, passed in walks:
        for node in passed:
            _rename_inputs(node, dequantized)
        for dq in dqs:  # the conv now reads the preserving op's output (or the source's new pair)
            for reader in consumers[dq.output[0]]:
                _rename_inputs(reader, {dq.output[0]: dequantized.get(q.input[0], q.input[0])})
    drop_dead_pairs(graph)
    sort_topologically(graph)
    return model


def _insert_pair(graph: onnx.GraphProto, tensor: str, scale: float, zero: int) -> str:
    """Append ``QuantizeLinear -> DequantizeLinear`` of ``tensor``; returns the dequantized name."""
    base = tensor + _SUFFIX
    graph.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), base + "_scale"),
                              numpy_helper.from_array(np.array(zero, np.uint8), base + "_zero_point")])
    graph.node.extend([
        helper.make_node("QuantizeLinear", [tensor, base + "_scale", base + "_zero_point"], [base + "_q"],
                         name=base + "_QuantizeLinear"),
        helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero_point"], [base + "_dq"],
                         name=base + "_DequantizeLinear")])
    return base + "_dq"


def _rename_inputs(node: onnx.NodeProto, renames: dict[str, str]) -> None:
    for i, name in enumerate(node.input):
        node.input[i] = renames.get(name, name)


def drop_dead_pairs(graph: onnx.GraphProto) -> None:
    """Remove Q/DQ nodes nothing reads any more (DequantizeLinear first, then its QuantizeLinear)."""
    outputs = {o.name for o in graph.output}
    for _ in range(2):
        used = {i for n in graph.node for i in n.input} | outputs
        for node in [n for n in graph.node
                     if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in used]:
            graph.node.remove(node)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node follows its inputs' producers (stable otherwise)."""
    ready = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {""}
    ordered, pending = [], list(graph.node)
    while pending:
        waiting = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input at {[n.name for n in waiting[:3]]}")
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)


def first_layer_seven_bit(model: onnx.ModelProto, fp32: onnx.ModelProto, network_input: str) -> list[str]:
    """Re-quantize, in place, the weights of every Conv of ``model`` that reads ``network_input`` (through
    its Q/DQ pair and :data:`PRESERVING` ops) to 7 bits per output channel, symmetric ``[-64, 63]``,
    from the float weights of the same-named node of ``fp32`` (module docstring). Returns those convs' names."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    float_weight = {n.name: n.input[1] for n in fp32.graph.node if n.op_type == "Conv"}
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    done = []
    for conv in graph.node:
        if conv.op_type != "Conv" or conv.name not in float_weight or not _reads(conv.input[0], network_input, producer):
            continue
        dq = producer.get(conv.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue  # weights left float (kept-float layer): nothing to do
        weights = numpy_helper.to_array(fp32_inits[float_weight[conv.name]]).astype(np.float32)
        per_channel = numpy_helper.to_array(inits[dq.input[1]]).size > 1
        peak = np.abs(weights.reshape(len(weights), -1)).max(axis=1) if per_channel else np.abs(weights).max()
        scale = np.where(peak > 0, peak / 63.0, 1.0).astype(np.float32)
        per_row = scale.reshape((-1,) + (1,) * (weights.ndim - 1)) if per_channel else scale
        quantized = np.clip(np.round(weights / per_row), -64, 63).astype(np.int8)
        inits[dq.input[0]].CopyFrom(numpy_helper.from_array(quantized, dq.input[0]))
        inits[dq.input[1]].CopyFrom(numpy_helper.from_array(scale, dq.input[1]))
        done.append(conv.name)
    return done


def _reads(tensor: str, source: str, producer: dict[str, onnx.NodeProto]) -> bool:
    """Whether ``tensor`` is ``source`` seen through Q/DQ pairs and :data:`PRESERVING` ops."""
    while tensor != source:
        node = producer.get(tensor)
        if node is None or not (node.op_type in PRESERVING or node.op_type in ("QuantizeLinear", "DequantizeLinear")):
            return False
        tensor = node.input[0]
    return True
