"""What an ONNX graph states about its class dimension, read without the ``onnx`` package.

The runtime opens artifacts without onnx or torch (and in well under a second), so this module
reads the few ONNX protobuf fields it needs straight from the wire format: the graph's nodes
(name, ``op_type``, inputs, outputs, a ``Transpose``'s ``perm``) and its declared tensor shapes
(``value_info``, inputs, outputs). Initializers (the weights) are skipped by length, and the file
is memory-mapped, so a large model costs no copy.

Field numbers are those of ``onnx.proto`` (stable since ONNX 1.0): ModelProto.graph = 7;
GraphProto.node = 1, input = 11, output = 12, value_info = 13; NodeProto.input = 1, output = 2,
name = 3, op_type = 4, attribute = 5; AttributeProto.name = 1, ints = 8; ValueInfoProto.name = 1, type = 2;
TypeProto.tensor_type = 1; TypeProto.Tensor.shape = 2; TensorShapeProto.dim = 1;
Dimension.dim_value = 1.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
#: Name prefix of the nodes :func:`edgecv.export.nms.append_nms` appends (its ``NMS_PREFIX``; the
#: runtime does not import the exporter).
NMS_NODE_PREFIX = "edgecv_nms/"


@dataclass
class _Node:
    name: str = ""
    op_type: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    perm: list[int] = field(default_factory=list)


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """``(field number, wire type, value or start, end)`` of every field in ``buf[start:end]``.

    For varints the third item is the value; for length-delimited fields it is the start of the
    payload (fourth item: its end); fixed-size fields are skipped over.
    """
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value, pos
        elif wire == _BYTES:
            size, pos = _varint(buf, pos)
            yield number, wire, pos, pos + size
            pos += size
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if pos != end:
        raise ValueError("truncated protobuf message")


def _text(buf: memoryview, start: int, end: int) -> str:
    return bytes(buf[start:end]).decode("utf-8", "replace")


def _node(buf: memoryview, start: int, end: int) -> _Node:
    node = _Node()
    for number, wire, a, b in _fields(buf, start, end):
        if wire != _BYTES:
            continue
        if number == 1:
            node.inputs.append(_text(buf, a, b))
        elif number == 2:
            node.outputs.append(_text(buf, a, b))
        elif number == 3:
            node.name = _text(buf, a, b)
        elif number == 4:
            node.op_type = _text(buf, a, b)
        elif number == 5:
            name, ints = "", []
            for n, w, x, y in _fields(buf, a, b):
                if n == 1 and w == _BYTES:
                    name = _text(buf, x, y)
                elif n == 8 and w == _VARINT:
                    ints.append(x)
                elif n == 8 and w == _BYTES:  # packed encoding
                    pos = x
                    while pos < y:
                        value, pos = _varint(buf, pos)
                        ints.append(value)
            if name == "perm":
                node.perm = ints
    return node


def _first(buf: memoryview, start: int, end: int, number: int) -> tuple[int, int] | None:
    """``(start, end)`` of the first length-delimited field ``number`` in ``buf[start:end]``, if any."""
    return next(((a, b) for n, w, a, b in _fields(buf, start, end) if n == number and w == _BYTES), None)


def _dims(buf: memoryview, start: int, end: int) -> tuple[str, list[int | None] | None]:
    """``(name, dims)`` of a ValueInfoProto; a symbolic or unknown dim is None; dims None without a shape."""
    name = _first(buf, start, end, 1)
    span = _first(buf, start, end, 2)  # TypeProto
    span = _first(buf, *span, 1) if span else None  # TypeProto.tensor_type
    span = _first(buf, *span, 2) if span else None  # TypeProto.Tensor.shape
    dims: list[int | None] | None = None
    if span:
        dims = []
        for n, w, a, b in _fields(buf, *span):  # TensorShapeProto.dim
            if n == 1 and w == _BYTES:
                values = [v for n2, w2, v, _ in _fields(buf, a, b) if n2 == 1 and w2 == _VARINT]
                dims.append(values[0] if values else None)
    return (_text(buf, *name) if name else ""), dims


def read_graph(path: Path) -> tuple[list[_Node], dict[str, list[int | None]]]:
    """The nodes and declared shapes of the ONNX model at ``path``.

    Raises:
        ValueError: the file is not a well-formed protobuf message. OSError: it cannot be read.
    """
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        buf = memoryview(mapped)
        try:
            nodes: list[_Node] = []
            shapes: dict[str, list[int | None]] = {}
            for number, wire, start, end in _fields(buf, 0, len(buf)):
                if number != 7 or wire != _BYTES:
                    continue
                for n, w, a, b in _fields(buf, start, end):
                    if n == 1 and w == _BYTES:
                        nodes.append(_node(buf, a, b))
                    elif n in (11, 12, 13) and w == _BYTES:
                        name, dims = _dims(buf, a, b)
                        if dims is not None:
                            shapes[name] = dims
            return nodes, shapes
        except IndexError as exc:
            raise ValueError("truncated protobuf message") from exc
        finally:
            buf.release()


def nms_class_count(path: Path) -> int | None:
    """The class dimension ``C`` an edgecv detection graph states, or None when it states none.

    Finds edgecv's appended ``NonMaxSuppression`` node (named :data:`NMS_NODE_PREFIX`...; scores input
    ``[B, C, N]``; the two-stage graphs' own NMS nodes, whose score input is ``[B, 1, N]`` with
    classes offset apart, state no class count) and takes ``C`` from the
    declared shape of that input, or of the ``[B, N, C]`` tensor transposed into it (through a
    candidate pre-selection ``GatherND``, which keeps the class axis), or of the channel-first
    ``[B, C, N]`` source the pre-selection ``Gather`` reads (or whose flattened copy it reads). Graphs whose shapes were
    stripped (int8 QDQ graphs) or that have no NMS state nothing: None.

    Raises:
        ValueError: not a protobuf message. OSError: unreadable file.
    """
    nodes, shapes = read_graph(path)
    nms = next((node for node in nodes if node.op_type == "NonMaxSuppression"
                and node.name.startswith(NMS_NODE_PREFIX)), None)
    if nms is None or len(nms.inputs) < 2:
        return None
    scores = nms.inputs[1]
    if len(shapes.get(scores) or []) == 3 and shapes[scores][1]:
        return shapes[scores][1]
    producer = {out: node for node in nodes for out in node.outputs}
    source = producer.get(scores)
    if source is not None and source.op_type == "Gather":
        # channel-first pre-selection: a Gather of the [B, C, N] source, or of its flattened copy
        name = source.inputs[0]
        if name in producer and producer[name].op_type == "Reshape":
            name = producer[name].inputs[0]
        dims = shapes.get(name) or []
        return dims[1] if len(dims) == 3 and dims[1] else None
    if source is None or source.op_type != "Transpose" or source.perm != [0, 2, 1]:
        return None
    name = source.inputs[0]
    while name not in shapes and name in producer and producer[name].op_type == "GatherND":
        name = producer[name].inputs[0]
    dims = shapes.get(name) or []
    return dims[2] if len(dims) == 3 and dims[2] else None
