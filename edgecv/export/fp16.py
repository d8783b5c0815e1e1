"""fp32 → fp16 ONNX graph pass (inputs and outputs stay float32; NMS and post-processing stay float32).

Uses ONNX Runtime's ``convert_float_to_float16`` (``keep_io_types=True``) with the post-processing
nodes (box decode, DFL softmax, score sigmoid, the ``edgecv_nms/`` subgraph) on the block list:
``NonMaxSuppression`` has no fp16 CPU kernel and box coordinates at 640 px would lose half-pixel
precision in fp16. Casts are inserted at the boundaries. The result runs on a CPU in ORT (slowly:
fp16 is for GPUs) so it can be checked before any GPU sees it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

from edgecv.errors import ArtifactError, QuantizationError
from edgecv.fileio import write_with
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.runtimes.lineage import parent_record


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An fp16 copy of the fp32 edgecv graph ``model`` with float32 I/O and float32 post-processing."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgecv.calibration.graph import check_not_quantized, postprocess_nodes
    from edgecv.export.uint8_input import is_prefix_node

    check_not_quantized(model)
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        raise QuantizationError("expected an fp32 graph, found float16 initializers (already converted?)")
    # the uint8 input prefix stays fp32 too: pixel scaling in fp16 would round before the first layer
    block = sorted(postprocess_nodes(model) | {n.name for n in model.graph.node if is_prefix_node(n.name)})
    logging.getLogger("onnxruntime.transformers.float16").setLevel(logging.ERROR)
    out = convert_float_to_float16(model, keep_io_types=True, node_block_list=block, disable_shape_infer=False)
    _drop_round_trips(out)
    _sort_nodes(out)
    meta = [p for p in out.metadata_props if p.key == METADATA_KEY]
    if meta:
        data = ArtifactMetadata.from_json(meta[0].value)
        data.precision = "fp16"
        meta[0].value = data.to_json()
    return out


def _drop_round_trips(model: onnx.ModelProto) -> None:
    """Remove fp32 -> fp16 -> fp32 Cast pairs (in place).

    With ``keep_io_types`` the converter casts every float output to fp16 and back even when its
    producer is a block-listed fp32 node: the boxes would round to fp16 (0.25 px at 640 px) for nothing.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    to = {n.name: next((a.i for a in n.attribute if a.name == "to"), None) for n in model.graph.node}
    rename: dict[str, str] = {}
    dropped: set[str] = set()
    for node in model.graph.node:
        first = producer.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if (first is None or first.op_type != "Cast" or to[node.name] != onnx.TensorProto.FLOAT
                or to[first.name] != onnx.TensorProto.FLOAT16 or not _is_fp32(model, first.input[0], producer)):
            continue
        rename[node.output[0]] = first.input[0]
        dropped.add(node.name)
    if not rename:
        return
    graph_outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:  # consumers read the fp32 tensor directly
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    for old, new in rename.items():
        if old in graph_outputs:  # a graph output keeps its name: an Identity stands in for the pair
            model.graph.node.append(onnx.helper.make_node("Identity", [new], [old], name=f"{old}_fp32_identity"))
    kept = [n for n in model.graph.node if n.name not in dropped]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    used = {i for n in model.graph.node for i in n.input} | graph_outputs
    kept = [n for n in model.graph.node if n.op_type != "Cast" or n.output[0] in used]
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _is_fp32(model: onnx.ModelProto, name: str, producer: dict) -> bool:
    """Whether tensor ``name`` is float32: a graph input, an fp32 Cast's output or a value_info says so."""
    infos = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    for info in infos:
        if info.name == name:
            return info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    node = producer.get(name)
    return node is not None and node.op_type == "Cast" and any(
        a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in node.attribute)


def _sort_nodes(model: onnx.ModelProto) -> None:
    """Order the nodes topologically (in place): the converter appends its input Casts at the end,
    which ORT and TensorRT tolerate but ``onnx.checker`` (and other tools) reject."""
    available = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    pending, ordered = list(model.graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:  # a cycle or a dangling input: leave the rest in their order
            ordered.extend(pending)
            break
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    del model.graph.node[:]
    model.graph.node.extend(ordered)


def export_fp16(onnx_path: str | Path, out_path: str | Path | None = None) -> Path:
    """Write the fp16 graph of ``onnx_path`` to ``out_path`` (default ``<stem>_fp16.onnx``), atomically;
    returns the path. The graph records ``onnx_path``'s name and SHA-256 as its ``parent``
    (:mod:`edgecv.runtimes.lineage`), so a later re-export of the fp32 graph is noticed."""
    src = Path(onnx_path)
    if not src.is_file():
        raise ArtifactError(f"expected an ONNX model at {src}, found no file")
    out = Path(out_path) if out_path else src.with_name(src.stem + "_fp16.onnx")
    half = to_fp16(onnx.load(str(src)))
    _set_parent(half, parent_record(src, out))
    return write_with(out, lambda tmp: onnx.save(half, str(tmp)))


def _set_parent(model: onnx.ModelProto, parent: dict[str, str]) -> None:
    """Record ``parent`` in the edgecv metadata of ``model`` (in place; no-op without metadata)."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            data = ArtifactMetadata.from_json(prop.value)
            data.parent = parent
            prop.value = data.to_json()
