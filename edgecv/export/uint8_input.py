"""ONNX -> ONNX pass: uint8 frames in (``edgecv export --input uint8``).

The artifact then takes what every edgecv source already has, ``uint8 [B, H, W, 3]`` BGR (the
resized frame), and does the rest of the pre-processing inside the graph, in a small prefix of
nodes named ``edgecv_pre/`` in front of the model's float input::

    images uint8 [B,H,W,3] -> Cast(float32) -> Transpose(0,3,1,2) -> [Gather(axis 1, [2,1,0]): BGR -> RGB]
                           -> Mul(1 / (255 std)) -> [Sub(mean / std)] -> the network's [B,3,H,W] float32

The arithmetic is that of the float predictor (:func:`edgecv.runtimes.preprocess.fill_tensor`:
one float32 multiply, then one subtract), so a uint8 artifact sees bit-identical network inputs.
The Cast comes first because TensorRT accepts uint8 only as a network input feeding a Cast.
Why: the runtime then only letterboxes (straight into a reused uint8 buffer); the normalisation,
the channel swap and the transposition run in the backend's kernels (fused into the first
convolution by OpenVINO / TensorRT), and a GPU receives a quarter of the bytes of a float tensor.

The prefix stays float in derived graphs: int8 calibration never quantizes ``edgecv_pre/`` nodes
(:func:`edgecv.calibration.graph.region_nodes`) and the fp16 pass keeps them fp32.
The pass is family-agnostic: it only needs the model's single float ``[B, 3, H, W]`` input.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecv.errors import ArtifactError, ExportError
from edgecv.metadata import ArtifactMetadata

#: Name prefix of the pre-processing nodes and initializers.
PRE_PREFIX = "edgecv_pre/"
#: Input pixel kinds ``export --input`` accepts.
INPUT_KINDS = ("float", "uint8")
#: Order of the pixels a uint8 artifact takes (what OpenCV decodes and every edgecv source gives).
UINT8_COLOR_ORDER = "BGR"


def check_input_kind(kind: str) -> str:
    """``kind`` if it is one of :data:`INPUT_KINDS`, else :class:`ExportError` naming them."""
    if kind not in INPUT_KINDS:
        raise ExportError(f"--input: expected one of {list(INPUT_KINDS)}, found {kind!r}")
    return kind


def is_prefix_node(name: str) -> bool:
    """True for a node of the pre-processing prefix."""
    return name.startswith(PRE_PREFIX)


def uint8_metadata(metadata: ArtifactMetadata) -> ArtifactMetadata:
    """A copy of a float-input artifact's ``metadata`` for its uint8-input graph: NHWC uint8 BGR
    input, identity mean/std at the input (the runtime normalises nothing) and ``in_graph``
    recording what the prefix does (the network's colour order, mean and std)."""
    b, _, h, w = metadata.input_shape
    return dataclasses.replace(
        metadata, input_dtype="uint8", layout="NHWC", input_shape=[b, h, w, 3], color_order=UINT8_COLOR_ORDER,
        mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0],
        in_graph={"color_order": metadata.color_order, "mean": list(metadata.mean), "std": list(metadata.std),
                  "scale": 255.0, "prefix": PRE_PREFIX, "steps": ["cast", "nhwc_to_nchw", "color", "scale_normalise"]},
    )


def _float_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ExportError(f"--input uint8: expected a graph with one input, found {[i.name for i in inputs]}")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != TensorProto.FLOAT or len(tensor.shape.dim) != 4:
        raise ExportError(f"--input uint8: expected a float32 [B, 3, H, W] input, found "
                          f"{TensorProto.DataType.Name(tensor.elem_type)} of rank {len(tensor.shape.dim)}")
    return inputs[0]


def _nhwc_dims(dims) -> list[int | str]:  # noqa: ANN001 (protobuf repeated Dimension)
    """The NCHW input's dims rearranged to NHWC, symbolic names kept."""
    def value(d) -> int | str:  # noqa: ANN001
        return d.dim_param if d.HasField("dim_param") else (d.dim_value if d.dim_value > 0 else "?")
    b, _, h, w = (value(d) for d in dims)
    return [b, h, w, 3]


def add_uint8_input(model: onnx.ModelProto, metadata: ArtifactMetadata) -> onnx.ModelProto:
    """A copy of ``model`` (float32 ``[B, 3, H, W]`` input as ``metadata`` describes it) taking
    ``uint8 [B, H, W, 3]`` BGR under the same input name, with the ``edgecv_pre/`` prefix in front.

    Raises:
        ExportError: the graph has no single float32 rank-4 input, or already has the prefix.
    """
    if any(is_prefix_node(n.name) for n in model.graph.node):
        raise ExportError("--input uint8: the graph already takes uint8 input (edgecv_pre/ nodes found)")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    source = _float_input(out)
    name, inner = source.name, PRE_PREFIX + "network_input"
    for node in out.graph.node:  # the network now reads the prefix's output
        node.input[:] = [inner if i == name else i for i in node.input]
    new_input = helper.make_tensor_value_info(name, TensorProto.UINT8, _nhwc_dims(source.type.tensor_type.shape.dim))
    position = list(out.graph.input).index(source)
    out.graph.input.remove(source)
    out.graph.input.insert(position, new_input)
    nodes, inits = _prefix(name, inner, metadata)
    out.graph.initializer.extend(inits)
    for node in reversed(nodes):
        out.graph.node.insert(0, node)
    onnx.checker.check_model(out)
    return out


def _prefix(name: str, inner: str, metadata: ArtifactMetadata) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    """The prefix nodes ``name`` (uint8 NHWC BGR) -> ``inner`` (float32 NCHW, normalised) and their constants."""
    mean, std = np.asarray(metadata.mean, np.float64), np.asarray(metadata.std, np.float64)
    # the float predictor's constants, rounded to float32 the same way (preprocess.normalisation)
    mul = np.array([1.0 / (255.0 * s) for s in std], np.float32).reshape(1, 3, 1, 1)
    sub = np.array([m / s for m, s in zip(mean, std)], np.float32).reshape(1, 3, 1, 1)
    p = PRE_PREFIX
    nodes = [helper.make_node("Cast", [name], [p + "float"], name=p + "Cast", to=TensorProto.FLOAT),
             helper.make_node("Transpose", [p + "float"], [p + "nchw"], name=p + "Transpose", perm=[0, 3, 1, 2])]
    inits = [numpy_helper.from_array(mul, p + "mul")]
    current = p + "nchw"
    if metadata.color_order == "RGB":  # the input is BGR
        inits.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), p + "bgr_to_rgb"))
        nodes.append(helper.make_node("Gather", [current, p + "bgr_to_rgb"], [p + "rgb"], name=p + "Gather", axis=1))
        current = p + "rgb"
    has_sub = bool(np.any(sub))
    nodes.append(helper.make_node("Mul", [current, p + "mul"], [p + "scaled" if has_sub else inner], name=p + "Mul"))
    if has_sub:
        inits.append(numpy_helper.from_array(sub, p + "sub"))
        nodes.append(helper.make_node("Sub", [p + "scaled", p + "sub"], [inner], name=p + "Sub"))
    return nodes, inits


def to_uint8_input(raw: onnx.ModelProto, final: onnx.ModelProto, metadata: ArtifactMetadata
                   ) -> tuple[onnx.ModelProto, onnx.ModelProto, ArtifactMetadata]:
    """The exporter's step for ``--input uint8``: both graphs (raw outputs, final contract) get the
    prefix, and the metadata says NHWC uint8 BGR (:func:`uint8_metadata`)."""
    return add_uint8_input(raw, metadata), add_uint8_input(final, metadata), uint8_metadata(metadata)


def export_uint8_input(onnx_path: str | Path, out_path: str | Path | None = None) -> Path:
    """Write the uint8-input graph of an fp32 float-input artifact (default ``<stem>_uint8.onnx``),
    atomically; returns the path. The network is untouched (the fidelity report it carries still
    holds): only the ``edgecv_pre/`` prefix and the input description change. ``edgecv export
    --input uint8`` does the same during the export and checks it against PyTorch.

    Raises:
        ArtifactError: no file, or not an edgecv artifact.
        ExportError: not an fp32 float-input graph.
    """
    from edgecv.fileio import write_with
    from edgecv.metadata import METADATA_KEY

    src = Path(onnx_path)
    if not src.is_file():
        raise ArtifactError(f"expected an ONNX model at {src}, found no file")
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ArtifactError(f"{src}: expected edgecv metadata, found none (not an edgecv export)")
    metadata = ArtifactMetadata.from_json(props[METADATA_KEY], source=str(src))
    if metadata.precision != "fp32" or metadata.input_dtype != "float32":
        raise ExportError(f"{src}: expected an fp32 graph with float32 input (convert before fp16 / int8), found "
                          f"precision {metadata.precision}, input {metadata.input_dtype}")
    converted = add_uint8_input(model, metadata)
    for prop in converted.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = uint8_metadata(metadata).to_json()
    out = Path(out_path) if out_path else src.with_name(src.stem + "_uint8.onnx")
    return write_with(out, lambda tmp: onnx.save(converted, str(tmp)))
