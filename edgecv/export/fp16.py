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
    meta = [p for p in out.metadata_props if p.key == METADATA_KEY]
    if meta:
        data = ArtifactMetadata.from_json(meta[0].value)
        data.precision = "fp16"
        meta[0].value = data.to_json()
    return out


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
