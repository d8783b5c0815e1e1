"""Emit an int8 graph for one target from edgecv's ranges.

Placement and rewriting are done by ONNX Runtime's quantizer classes (``QDQQuantizer`` /
``ONNXQuantizer``) used as a building block: they receive *our* ranges
(:class:`~onnxruntime.quantization.calibrate.TensorsData`), the list of nodes to quantize (the
region minus excluded layers; post-processing and NMS are never listed) and the target's type
choices. Targets (:data:`TARGETS`):

* ``tensorrt`` -- symmetric int8 activations and weights (every zero point 0), weights per output
  channel, Q/DQ only on the *inputs* of Conv / MatMul / Gemm (where TensorRT fuses them), biases
  left float (TensorRT folds them itself).
* ``openvino`` -- the placement of ``tensorrt`` (Q/DQ on Conv / MatMul / Gemm inputs only, float
  biases, symmetric per-channel int8 weights) with *uint8 asymmetric* activations, then each pair
  moved up through the data-movement ops in front of its conv (split, concat, pooling, resize) to
  the tensor that computes the value, one pair per tensor and one scale per concat
  (:mod:`edgecv.calibration.openvino_form`): OpenVINO then runs those ops in int8 too. Measured on the
  demo YOLO with OpenVINO 2026.4 on an AVX512-VNNI CPU (before the move): mAP50-95 0.935 (fp32
  0.935) at 0.49x ORT fp32 latency, where the ``tensorrt`` graph (signed activations) lost 7 points
  on OpenVINO while running correctly in ONNX Runtime. After the move, AVX2 only: mAP50-95 at 640
  0.4611 (fp32 0.4610, before the move 0.4619), ~0.91x the graph's time before the move. The
  convolutions reading the network input get 7-bit weights: without VNNI, int8 convolutions sum
  uint8 x int8 pairs in int16, which raw pixels against full-range weights overflow.
* ``onnxruntime`` -- the form measured fastest on x86 (``benchmarks/bench_int8.py``): QDQ with
  uint8 asymmetric activations, int8 symmetric per-channel weights, int32 biases, Q/DQ around
  every op ORT has an int8 kernel for, so its graph optimiser fuses them into QLinear kernels.
  ``form="qoperator"`` writes QLinear ops directly (measurable alternative).

int32 biases (``onnxruntime`` target): a bias is quantized with scale ``input_scale * weight_scale``;
a conv whose bias is large next to tiny weights (e.g. a BatchNorm-folded channel with near-zero
weights) overflows int32, and ONNX Runtime's quantizer then clips it, logging "Quantized bias ...
exceeds the range of a int32" (some versions instead silently coarsen that channel's weight scale,
older ones do not). A float bias left beside int8 inputs is no way out: ONNX Runtime's graph
optimiser quantizes it to int32 itself when the session loads (measured with 1.32: the same
clipping, silently). So edgecv makes one choice for every ONNX Runtime version: weight scales stay as
calibrated (``QDQDisableWeightAdjustForInt32Bias``), and a conv whose bias would overflow is emitted
again in float (weights, bias and inputs), so its bias stays float. The quantizer's warning is
consumed and the bias names are stored with the graph (:func:`pop_float_biases`; the caller records
them as ``metadata.calibration["float_biases"]``). Such a conv costs its int8 speed-up only where
int8 would have cost accuracy.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from edgecv.calibration.graph import COMPUTE_OPS, is_prefix_node, network_input, postprocess_nodes, region_nodes
from edgecv.calibration.openvino_form import drop_dead_pairs, first_layer_seven_bit, hoist_activation_qdq
from edgecv.errors import QuantizationError

TARGETS = ("onnxruntime", "tensorrt", "openvino")
#: ``metadata_props`` key under which :func:`emit` leaves the names of the biases it kept float.
FLOAT_BIASES_KEY = "edgecv.float_biases"
#: ... and of the convs whose weights it put on 7 bits (``openvino`` target, first layer).
SEVEN_BIT_KEY = "edgecv.seven_bit_weights"
_INT32 = np.iinfo(np.int32)
_BIAS_OVERFLOW_LOG = "exceeds the range of a int32"
#: Targets whose Q/DQ pairs sit on compute-op inputs only (everything else reads float).
COMPUTE_ONLY = ("tensorrt", "openvino")


@dataclass(frozen=True)
class EmitOptions:
    """Target form. ``reduce_range`` (7-bit weights) and ``per_channel`` are measurable knobs for the ORT target."""

    target: str = "onnxruntime"
    form: str = "qdq"  # "qdq" | "qoperator" (onnxruntime target only)
    per_channel: bool = True
    reduce_range: bool = False


def _tensors_data(ranges: dict[str, tuple[float, float]]):
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    data = {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()}
    return TensorsData(CalibrationMethod.MinMax, data)


def _quantizer(model: onnx.ModelProto, ranges: dict, nodes: list[str], opts: EmitOptions):
    from onnxruntime.quantization import QuantizationMode, QuantType
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    tensors = _tensors_data(ranges)
    if opts.target in COMPUTE_ONLY:
        ops = sorted(COMPUTE_OPS)
        signed = opts.target == "tensorrt"  # TensorRT 11 takes zero point 0 only
        extra = {"ActivationSymmetric": signed, "WeightSymmetric": True, "QuantizeBias": False,
                 "OpTypesToExcludeOutputQuantization": ops}
        activations = QuantType.QInt8 if signed else QuantType.QUInt8
        return QDQQuantizer(model, opts.per_channel, False, QuantType.QInt8, activations, tensors, nodes, [],
                            ops, extra)
    # Weight scales stay as calibrated; a bias that overflows int32 is kept float (module docstring).
    extra = {"WeightSymmetric": True, "ActivationSymmetric": False, "QDQDisableWeightAdjustForInt32Bias": True}
    if opts.form == "qoperator":
        return ONNXQuantizer(model, opts.per_channel, opts.reduce_range, QuantizationMode.QLinearOps, True,
                             QuantType.QInt8,
                             QuantType.QUInt8, tensors, nodes, [], list(QLinearOpsRegistry), extra)
    ops = sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - {"Softmax", "ArgMax", "EmbedLayerNormalization"})
    return QDQQuantizer(model, opts.per_channel, opts.reduce_range, QuantType.QInt8, QuantType.QUInt8, tensors,
                        nodes, [], ops, extra)


def emit(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]], opts: EmitOptions,
         exclude: list[str] | tuple[str, ...] = ()) -> onnx.ModelProto:
    """The int8 graph of ``model`` for ``opts.target``; nodes in ``exclude`` (and post-processing) stay float.

    ``ranges`` maps activation tensor names to float ``(lo, hi)``; it must cover the tensors the
    quantizer touches (every float activation of the region, see :func:`~edgecv.calibration.graph.float_activations`).
    """
    if opts.target not in TARGETS:
        raise QuantizationError(f"target: expected one of {TARGETS}, found {opts.target!r}")
    if opts.form not in ("qdq", "qoperator") or (opts.form == "qoperator" and opts.target != "onnxruntime"):
        raise QuantizationError(f"form: expected 'qdq' (or 'qoperator' for onnxruntime), found {opts.form!r}")
    unknown = sorted(set(exclude) - {n.name for n in model.graph.node})
    if unknown:
        raise QuantizationError(f"exclude: expected node names of the model, found unknown {unknown[:5]}")
    model = unshared_parameters(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    nodes = [n.name for n in region_nodes(model) if n.name not in set(exclude)]
    logging.getLogger("root").setLevel(logging.WARNING)
    out = _quantize(inferred, ranges, nodes, opts)
    overflowing = _overflowing_biases(out, model)
    float_convs = set(overflowing.values())
    if float_convs:  # once more, those convs float (module docstring: a float bias alone does not survive ORT)
        out = _quantize(inferred, ranges, [n for n in nodes if n not in float_convs], opts)
    float_only = _float_only(out, model, set(exclude) | float_convs)
    _rewire_to_float(out, _float_readers(out, opts, float_only))
    if opts.target == "openvino":  # edgecv.calibration.openvino_form
        hoist_activation_qdq(out, ranges, frozen=float_only)
        _set_record(out, SEVEN_BIT_KEY, first_layer_seven_bit(out, model, network_input(model)))
    del out.graph.value_info[:]  # stale shapes from inference; ORT re-infers
    _set_record(out, FLOAT_BIASES_KEY, sorted(overflowing))
    return out


def unshared_parameters(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` in which every compute node has its own weight and bias initializers.

    Why: the TorchScript exporter turns an initializer equal to another one (a head applied to
    every FPN level, equal biases) into an ``Identity`` of it, and ONNX Runtime's quantizer then
    finds a bias that is not an initializer ("Expected bias ... to be an initializer") and leaves it
    float; one initializer read by several convs is likewise quantized once. Such identities become
    initializers and each further reader gets its own copy (costs the int8 size of the repeats).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    outputs = {o.name for o in out.graph.output}
    for node in [n for n in out.graph.node
                 if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs]:
        alias = onnx.TensorProto()
        alias.CopyFrom(inits[node.input[0]])
        alias.name = node.output[0]
        out.graph.initializer.append(alias)
        inits[alias.name] = alias
        out.graph.node.remove(node)
    readers: dict[str, int] = {}
    for node in out.graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        for position, name in enumerate(node.input):
            if position == 0 or name not in inits:
                continue
            readers[name] = readers.get(name, 0) + 1
            if readers[name] > 1:  # the first reader keeps the original
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}__copy{readers[name] - 1}"
                out.graph.initializer.append(copy)
                node.input[position] = copy.name
    return out


def pop_float_biases(model: onnx.ModelProto) -> list[str]:
    """Names of the biases :func:`emit` kept float in ``model`` (removing the record from the graph)."""
    return pop_record(model, FLOAT_BIASES_KEY)


def pop_record(model: onnx.ModelProto, key: str) -> list[str]:
    """The names :func:`emit` recorded under ``key`` (:data:`FLOAT_BIASES_KEY`, :data:`SEVEN_BIT_KEY`),
    removing the record from the graph."""
    found = [p for p in model.metadata_props if p.key == key]
    for prop in found:
        model.metadata_props.remove(prop)
    return json.loads(found[0].value) if found else []


def _set_record(model: onnx.ModelProto, key: str, names: list[str]) -> None:
    for prop in [p for p in model.metadata_props if p.key == key]:
        model.metadata_props.remove(prop)
    if names:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(names)


class _DropBiasOverflow(logging.Filter):
    """Consumes ONNX Runtime's int32 bias overflow warning: :func:`emit` handles each case itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _BIAS_OVERFLOW_LOG not in record.getMessage()


@contextlib.contextmanager
def _bias_overflow_handled() -> Iterator[None]:
    root, drop = logging.getLogger(), _DropBiasOverflow()
    root.addFilter(drop)  # the quantizer logs through logging.warning, i.e. the root logger
    try:
        yield
    finally:
        root.removeFilter(drop)


def _quantize(model: onnx.ModelProto, ranges: dict, nodes: list[str], opts: EmitOptions) -> onnx.ModelProto:
    quantizer = _quantizer(model, ranges, nodes, opts)
    with _bias_overflow_handled():
        quantizer.quantize_model()
    return quantizer.model.model


def _overflowing_biases(model: onnx.ModelProto, fp32: onnx.ModelProto) -> dict[str, str]:
    """``{bias name: consumer node name}`` of the biases the quantizer clipped to the int32 range.

    A clipped bias holds ``int32`` min or max, which rounding a representable value never gives in
    practice. The bias is found as the float initializer of ``fp32`` that the int32 tensor replaced
    (QDQ: the DequantizeLinear's output name; QOperator: the name without ``_quantized``).
    """
    ints = {i.name: i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT32}
    floats = {i.name for i in fp32.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    consumer = {name: node.name for node in fp32.graph.node if node.op_type in COMPUTE_OPS for name in node.input[2:]}
    found: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in ints:
            pairs = [(node.input[0], node.output[0])]
        elif node.op_type == "QLinearConv" and len(node.input) == 9 and node.input[8] in ints:
            pairs = [(node.input[8], node.input[8].removesuffix("_quantized"))]
        else:
            continue
        for quantized, original in pairs:
            values = numpy_helper.to_array(ints[quantized])
            if original in floats and original in consumer and ((values == _INT32.max) | (values == _INT32.min)).any():
                found[original] = consumer[original]
    return found


def _float_only(model: onnx.ModelProto, fp32: onnx.ModelProto, exclude: set[str]) -> set[str]:
    """Nodes that read float tensors on every target: excluded layers, post-processing, the uint8 prefix."""
    post = postprocess_nodes(fp32)
    names = {n.name for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")}
    return {n for n in names if n in exclude or n in post or is_prefix_node(n)}


def _float_readers(model: onnx.ModelProto, opts: EmitOptions, float_only: set[str]) -> set[str]:
    """Nodes that must read float tensors: ``float_only`` (:func:`_float_only`) and, for TensorRT, every
    non-compute node (its Q/DQ pairs sit on Conv / MatMul / Gemm inputs only); likewise for OpenVINO,
    whose pairs then move up through data-movement ops (:mod:`edgecv.calibration.openvino_form`)."""
    names = {n.name for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")}
    readers = set(float_only)
    if opts.target in COMPUTE_ONLY:
        readers |= {n.name for n in model.graph.node if n.name in names and n.op_type not in COMPUTE_OPS}
    return readers


def _rewire_to_float(model: onnx.ModelProto, readers: set[str]) -> None:
    """Point ``readers``' inputs that are dequantized activations back at the float tensor, then drop
    Q/DQ nodes left without consumers."""
    q_input = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    float_of = {n.output[0]: q_input[n.input[0]] for n in model.graph.node
                if n.op_type == "DequantizeLinear" and n.input[0] in q_input}
    for node in model.graph.node:
        if node.name in readers:
            for i, name in enumerate(node.input):
                node.input[i] = float_of.get(name, name)
    drop_dead_pairs(model.graph)
