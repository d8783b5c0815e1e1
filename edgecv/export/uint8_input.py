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

With ``--frame WxH`` (static graphs) the prefix letterboxes too: after the Transpose, Resize (bilinear,
half-pixel centres) -> Add(0.5) -> Floor (cv2's uint8 rounding) -> Pad(pad_value), and the input is
the camera frame ``uint8 [B, FH, FW, 3]`` itself (:func:`add_uint8_input`).

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


def check_export_input(kind: str, frame_wh: tuple[int, int] | None, dynamic: bool) -> None:
    """The export's ``--input`` / ``--frame`` options, checked before any tracing (:class:`ExportError`)."""
    check_input_kind(kind)
    if frame_wh is None:
        return
    if kind != "uint8":
        raise ExportError(f"--frame: expected --input uint8 (the graph resizes uint8 frames), found --input {kind}")
    if dynamic:
        raise ExportError("--frame: expected a static input (the frame size is fixed), found --dynamic")
    if not (len(frame_wh) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in frame_wh)):
        raise ExportError(f"--frame: expected WIDTHxHEIGHT with positive integers, found {frame_wh!r}")


def parse_frame(text: str | None) -> tuple[int, int] | None:
    """``"1280x720"`` -> ``(1280, 720)`` (width, height); None -> None; :class:`ExportError` otherwise."""
    if text is None:
        return None
    try:
        width, height = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ExportError(f"--frame: expected WIDTHxHEIGHT like 1280x720, found {text!r}") from None
    if width <= 0 or height <= 0:
        raise ExportError(f"--frame: expected WIDTHxHEIGHT with positive integers, found {text!r}")
    return width, height


def is_prefix_node(name: str) -> bool:
    """True for a node of the pre-processing prefix."""
    return name.startswith(PRE_PREFIX)


def check_frame(frame: tuple[int, int] | None, metadata: ArtifactMetadata) -> None:
    """:class:`ExportError` unless ``frame`` (``(H, W)``, or None) can be resized in the graph of
    ``metadata``'s model: positive sizes, static input shape."""
    if frame is None:
        return
    if not (len(frame) == 2 and all(isinstance(v, int) and v > 0 for v in frame)):
        raise ExportError(f"--frame: expected WIDTHxHEIGHT with positive integers, found {frame!r}")
    if min(metadata.input_shape) <= 0:
        raise ExportError(f"--frame: expected a static input (no --dynamic), found input shape {metadata.input_shape}")


def uint8_metadata(metadata: ArtifactMetadata, frame: tuple[int, int] | None = None) -> ArtifactMetadata:
    """A copy of a float-input artifact's ``metadata`` for its uint8-input graph: NHWC uint8 BGR
    input, identity mean/std at the input (the runtime normalises nothing) and ``in_graph``
    recording what the prefix does (the network's colour order, mean and std; ``frame`` ``[H, W]``
    when it letterboxes / stretches camera frames of that size itself: the input is then the frame)."""
    b, _, h, w = metadata.input_shape
    steps = ["cast", "nhwc_to_nchw", *([metadata.resize] if frame else []), "color", "scale_normalise"]
    record = {"color_order": metadata.color_order, "mean": list(metadata.mean), "std": list(metadata.std),
              "scale": 255.0, "prefix": PRE_PREFIX, "steps": steps}
    if frame is not None:
        record["frame"], (h, w) = [int(frame[0]), int(frame[1])], frame
    return dataclasses.replace(
        metadata, input_dtype="uint8", layout="NHWC", input_shape=[b, h, w, 3], color_order=UINT8_COLOR_ORDER,
        mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], in_graph=record,
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


def _nhwc_dims(dims, frame: tuple[int, int] | None) -> list[int | str]:  # noqa: ANN001 (protobuf Dimensions)
    """The NCHW input's dims rearranged to NHWC, symbolic names kept (height and width: ``frame``'s if given)."""
    def value(d) -> int | str:  # noqa: ANN001
        return d.dim_param if d.HasField("dim_param") else (d.dim_value if d.dim_value > 0 else "?")
    b, _, h, w = (value(d) for d in dims)
    return [b, *(frame or (h, w)), 3]


def add_uint8_input(model: onnx.ModelProto, metadata: ArtifactMetadata,
                    frame: tuple[int, int] | None = None) -> onnx.ModelProto:
    """A copy of ``model`` (float32 ``[B, 3, H, W]`` input as ``metadata`` describes it) taking
    ``uint8 [B, H, W, 3]`` BGR under the same input name, with the ``edgecv_pre/`` prefix in front.
    With ``frame = (FH, FW)`` it takes ``[B, FH, FW, 3]`` camera frames and letterboxes (or
    stretches, per ``metadata.resize``) them in the graph: Resize (bilinear, half-pixel centres
    like ``cv2.INTER_LINEAR``, rounded half up like its uint8 output) and Pad with ``pad_value``.

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
    check_frame(frame, metadata)
    new_input = helper.make_tensor_value_info(name, TensorProto.UINT8,
                                              _nhwc_dims(source.type.tensor_type.shape.dim, frame))
    position = list(out.graph.input).index(source)
    out.graph.input.remove(source)
    out.graph.input.insert(position, new_input)
    nodes, inits = _prefix(name, inner, metadata, frame)
    out.graph.initializer.extend(inits)
    for node in reversed(nodes):
        out.graph.node.insert(0, node)
    onnx.checker.check_model(out)
    return out


def _prefix(name: str, inner: str, metadata: ArtifactMetadata, frame: tuple[int, int] | None = None
            ) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
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
    if frame is not None:
        current = _letterbox_nodes(current, metadata, frame, nodes, inits)
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


def _letterbox_nodes(current: str, metadata: ArtifactMetadata, frame: tuple[int, int], nodes: list, inits: list
                     ) -> str:
    """Append Resize (+ Round) and Pad taking ``frame``-sized float pixels to the letterbox; returns the output name."""
    from edgecv.runtimes.preprocess import fit

    p, batch = PRE_PREFIX, int(metadata.input_shape[0])
    size = (int(metadata.letterbox_size[0]), int(metadata.letterbox_size[1]))
    new_w, new_h, info = fit(frame, size, metadata.resize)
    if (new_h, new_w) != tuple(frame):
        inits.append(numpy_helper.from_array(np.array([batch, 3, new_h, new_w], np.int64), p + "resize_sizes"))
        nodes.append(helper.make_node("Resize", [current, "", "", p + "resize_sizes"], [p + "resized_float"],
                                      name=p + "Resize", mode="linear", coordinate_transformation_mode="half_pixel"))
        # cv2.resize returns uint8 rounded half up ((sum + half) >> bits): Floor(x + 0.5) gives the same
        # values (ONNX Round is half-to-even: it differs on every exact .5, e.g. in 2x downscales)
        inits.append(numpy_helper.from_array(np.array(0.5, np.float32), p + "half"))
        nodes.append(helper.make_node("Add", [p + "resized_float", p + "half"], [p + "resized_half"], name=p + "Add"))
        nodes.append(helper.make_node("Floor", [p + "resized_half"], [p + "resized"], name=p + "Floor"))
        current = p + "resized"
    right, bottom = size[1] - new_w - info.pad_x, size[0] - new_h - info.pad_y
    if info.pad_x or info.pad_y or right or bottom:
        pads = np.array([0, 0, info.pad_y, info.pad_x, 0, 0, bottom, right], np.int64)
        inits += [numpy_helper.from_array(pads, p + "pads"),
                  numpy_helper.from_array(np.array(float(metadata.pad_value), np.float32), p + "pad_value")]
        nodes.append(helper.make_node("Pad", [current, p + "pads", p + "pad_value"], [p + "letterboxed"],
                                      name=p + "Pad", mode="constant"))
        current = p + "letterboxed"
    return current


def to_uint8_input(raw: onnx.ModelProto, final: onnx.ModelProto, metadata: ArtifactMetadata,
                   frame_wh: tuple[int, int] | None = None
                   ) -> tuple[onnx.ModelProto, onnx.ModelProto, ArtifactMetadata]:
    """The exporter's step for ``--input uint8`` (``--frame WxH``: ``frame_wh``): both graphs (raw
    outputs, final contract) get the prefix, and the metadata says NHWC uint8 BGR (:func:`uint8_metadata`)."""
    frame = None if frame_wh is None else (int(frame_wh[1]), int(frame_wh[0]))
    return (add_uint8_input(raw, metadata, frame), add_uint8_input(final, metadata, frame),
            uint8_metadata(metadata, frame))


def frame_images(images: list[np.ndarray], frame_wh: tuple[int, int] | None) -> list[np.ndarray]:
    """Fidelity-check images at the ``--frame`` size (stretched with ``cv2.INTER_AREA``), or as they are."""
    import cv2

    if frame_wh is None:
        return images
    return [cv2.resize(image, tuple(frame_wh), interpolation=cv2.INTER_AREA) for image in images]


def network_input_fn(raw: onnx.ModelProto, metadata: ArtifactMetadata):  # noqa: ANN201
    """``tensor -> the float [B, 3, H, W] the network sees`` for an input tensor of the artifact: the
    numpy reference (:func:`edgecv.runtimes.preprocess.network_tensor`), or for a ``--frame`` artifact
    the graph's own prefix run alone in ONNX Runtime, so the fidelity check compares the network on
    exactly what it gets (the in-graph letterbox is compared with the runtime's by the tests)."""
    from edgecv.runtimes.preprocess import graph_frame, network_tensor

    if graph_frame(metadata) is None:
        return lambda tensor: network_tensor(tensor, metadata)
    import onnxruntime as ort

    graph = helper.make_graph(
        [n for n in raw.graph.node if is_prefix_node(n.name)], "edgecv_pre", [raw.graph.input[0]],
        [helper.make_tensor_value_info(PRE_PREFIX + "network_input", TensorProto.FLOAT, None)],
        [i for i in raw.graph.initializer if i.name.startswith(PRE_PREFIX)])
    prefix = helper.make_model(graph, opset_imports=list(raw.opset_import), ir_version=raw.ir_version)
    session = ort.InferenceSession(prefix.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda tensor: session.run(None, {metadata.input_name: tensor})[0]


def export_uint8_input(onnx_path: str | Path, out_path: str | Path | None = None, *,
                       frame_wh: tuple[int, int] | None = None) -> Path:
    """Write the uint8-input graph of an fp32 float-input artifact (default ``<stem>_uint8.onnx``),
    atomically; returns the path. ``frame_wh``: camera frame (width, height) letterboxed in the
    graph too (``export --frame``; static artifacts only). The network is untouched (the fidelity report it carries still
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
    check_export_input("uint8", frame_wh, metadata.dynamic)
    frame = None if frame_wh is None else (int(frame_wh[1]), int(frame_wh[0]))
    converted = add_uint8_input(model, metadata, frame)
    for prop in converted.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = uint8_metadata(metadata, frame).to_json()
    out = Path(out_path) if out_path else src.with_name(src.stem + "_uint8.onnx")
    return write_with(out, lambda tmp: onnx.save(converted, str(tmp)))
