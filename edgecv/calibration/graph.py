"""Graph queries the calibrator needs: the quantizable region, post-processing, already-quantized checks.

*Post-processing* = the ``edgecv_nms/`` nodes plus every node from which no compute op
(:data:`COMPUTE_OPS`) is reachable downstream through *data* inputs -- box decode, DFL softmax,
the score sigmoid and the reshapes / concats feeding NMS. It stays float. The *region* is every
other node except the input pre-processing of a uint8 artifact (the ``edgecv_pre/`` nodes: cast,
colour swap, scaling; :mod:`edgecv.export.uint8_input`), which stays float too: quantizing raw
pixels or their normalisation would only add error in front of the first layer.

Data inputs (:data:`DATA_INPUTS`): an edge into an index, shape or box input does not carry
activations onward. That is what keeps a two-stage detector's RPN decode, top-k, NMS and RoI
level assignment float: their boxes reach the box head only as RoI Align's ``rois`` input and
their indices only as ``Gather`` indices, while RoI Align's *features* (input 0) and the heads
stay in the region.
"""

from __future__ import annotations

from collections import defaultdict

import onnx

from edgecv.errors import QuantizationError
from edgecv.export.nms import NMS_PREFIX
from edgecv.export.uint8_input import PRE_PREFIX, is_prefix_node

#: Ops whose inputs TensorRT (and ORT's QDQ fusions) consume as int8.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
#: Per op type, the input positions that carry values onward to its outputs; the other inputs are
#: indices, shapes, boxes or conditions (default: every input carries values).
DATA_INPUTS: dict[str, tuple[int, ...]] = {
    "RoiAlign": (0,), "MaxRoiPool": (0,), "Gather": (0,), "GatherElements": (0,), "GatherND": (0,),
    "Where": (1, 2), "Reshape": (0,), "Expand": (0,), "Tile": (0,), "Slice": (0,), "Pad": (0,), "Resize": (0,),
    "Squeeze": (0,), "Unsqueeze": (0,), "TopK": (0,), "Shape": (), "Size": (), "NonMaxSuppression": (),
    "ConstantOfShape": (),
}
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                       "MatMulInteger", "DynamicQuantizeLinear"})


def network_input(model: onnx.ModelProto) -> str:
    """The tensor the network proper reads: the graph input, or in a uint8-input artifact the
    output of its ``edgecv_pre/`` prefix (:mod:`edgecv.export.uint8_input`)."""
    inner = PRE_PREFIX + "network_input"
    if any(inner in n.output for n in model.graph.node if is_prefix_node(n.name)):
        return inner
    return model.graph.input[0].name


def check_not_quantized(model: onnx.ModelProto, source: str = "model") -> None:
    """Raise :class:`QuantizationError` if ``model`` already holds quantization nodes."""
    found = sorted({n.op_type for n in model.graph.node if n.op_type in QUANT_OPS or n.op_type.startswith("QLinear")})
    if found:
        raise QuantizationError(f"{source}: expected an fp32 graph to quantize, found an already-quantized one "
                                f"({', '.join(found)}); quantize the fp32 export instead")


def postprocess_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the post-processing nodes (see module docstring)."""
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)  # data-input readers only
    for node in model.graph.node:
        carried = DATA_INPUTS.get(node.op_type)
        for position, name in enumerate(node.input):
            if carried is None or position in carried:
                consumers[name].append(node)
    feeds_compute: dict[str, bool] = {}
    for node in reversed(model.graph.node):  # graph nodes are topologically sorted
        feeds_compute[node.name] = any(
            c.op_type in COMPUTE_OPS or feeds_compute.get(c.name, False)
            for out in node.output for c in consumers[out])
    return {n.name for n in model.graph.node
            if n.name.startswith(NMS_PREFIX) or (n.op_type not in COMPUTE_OPS and not feeds_compute[n.name])}


def region_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes outside post-processing and the input pre-processing prefix, in graph order (all need
    unique non-empty names)."""
    names = [n.name for n in model.graph.node]
    if "" in names or len(set(names)) != len(names):
        raise QuantizationError("expected every node to have a unique name (edgecv exports do), found "
                                "unnamed or duplicate node names")
    post = postprocess_nodes(model)
    return [n for n in model.graph.node if n.name not in post and not is_prefix_node(n.name)]


def float_activations(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> list[str]:
    """Float32 non-initializer tensors read or written by ``nodes`` (graph input included), in order."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    inits = {i.name for i in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    seen: dict[str, None] = {}
    for node in nodes:
        for name in (*node.input, *node.output):
            if name and name not in inits and name not in constants and types.get(name) == onnx.TensorProto.FLOAT:
                seen[name] = None
    return list(seen)


def compute_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the region's compute nodes (the layers the fallback may keep in float)."""
    return [n.name for n in region_nodes(model) if n.op_type in COMPUTE_OPS]


def layer_nodes(model: onnx.ModelProto, compute: str) -> list[str]:
    """A compute node plus its activation chain: the following non-compute nodes whose every
    non-constant input comes from the layer (e.g. ``Conv -> Sigmoid -> Mul`` for SiLU)."""
    inits = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                        for o in n.output}
    members = [compute]
    produced = set(next(n for n in model.graph.node if n.name == compute).output)
    for node in model.graph.node:
        inputs = [i for i in node.input if i and i not in inits]
        if node.op_type in COMPUTE_OPS or node.op_type == "Concat" or not inputs:
            continue
        if all(i in produced for i in inputs):
            members.append(node.name)
            produced.update(node.output)
    return members
