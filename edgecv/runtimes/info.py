"""What an artifact is, without running it: metadata, IO tensors, precision, calibration, fidelity.

    from edgecv.runtimes.info import artifact_info
    info = artifact_info("model.onnx")        # ArtifactInfo; also .engine (reads model.engine.json)
    print(info.precision, info.inputs, info.metadata.fidelity)

* ``.onnx``: read with ONNX Runtime's model metadata (no session run, no torch, no onnx package).
  The IO tensor names / shapes / types come from the session's declared inputs and outputs
  (a session with graph optimisation disabled, so opening is cheap); the precision is the one
  the metadata declares (the calibration section says how an int8 graph was made).
* ``.engine`` / ``.plan``: everything from ``<engine>.json`` (so no GPU or TensorRT is needed),
  including the TensorRT version, compute capability and optimisation profiles.

``edgecv info`` renders :func:`render` (rich tables) or ``--json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecv.errors import ArtifactError
from edgecv.metadata import ArtifactMetadata


@dataclass
class TensorInfo:
    name: str
    shape: list[int | str]
    dtype: str


@dataclass
class ArtifactInfo:
    """A summary of one artifact."""

    path: str
    kind: str  # "onnx" | "tensorrt"
    size_bytes: int
    metadata: ArtifactMetadata
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    tensorrt: dict[str, Any] = field(default_factory=dict)
    producer: str = ""
    fidelity_of: str = ""  # which graph the metadata's fidelity figures describe (see fidelity_scope)

    @property
    def precision(self) -> str:
        return self.metadata.precision

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int32)": "int32",
              "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def _onnx_info(path: Path) -> ArtifactInfo:
    from edgecv.runtimes.backends.onnxruntime import OnnxRuntimeBackend

    with OnnxRuntimeBackend.open(path, graph_optimization="disable", threads=1) as backend:
        session = backend.session
        assert session is not None  # just opened
        meta = session.get_modelmeta()
        inputs = [TensorInfo(n.name, list(n.shape), _ORT_TYPES.get(n.type, n.type)) for n in session.get_inputs()]
        outputs = [TensorInfo(n.name, list(n.shape), _ORT_TYPES.get(n.type, n.type)) for n in session.get_outputs()]
        producer = str(meta.producer_name or "")
        return ArtifactInfo(str(path), "onnx", path.stat().st_size, backend.metadata, inputs, outputs,
                            producer=producer)


def _engine_info(path: Path) -> ArtifactInfo:
    from edgecv.runtimes.backends.tensorrt import read_engine_json

    if not path.is_file():
        raise ArtifactError(f"expected a TensorRT engine at {path}, found no such file")
    metadata, facts = read_engine_json(path)
    shape = [("dyn" if v < 0 else v) for v in metadata.input_shape]
    profiles = facts.get("profiles") or []
    inputs = [TensorInfo(facts.get("input_name", metadata.input_name), shape, metadata.input_dtype)]
    k = metadata.max_det
    contract = {"num_dets": (["B", 1], "int32"), "boxes": (["B", k, 4], "float32"),
                "scores": (["B", k], "float32"), "classes": (["B", k], "int32")}
    outputs = [TensorInfo(name, *contract.get(name, (["?"], "?"))) for name in metadata.outputs]
    facts = {**facts, "profiles": profiles}
    return ArtifactInfo(str(path), "tensorrt", path.stat().st_size, metadata, inputs, outputs, tensorrt=facts,
                        producer=f"TensorRT {facts.get('version', '?')}")


def fidelity_scope(meta: ArtifactMetadata, kind: str = "onnx") -> str:
    """What the metadata's fidelity block measured, said plainly ("" when there is none).

    Derived graphs (fp16, int8) and engines copy their fp32 graph's metadata, fidelity block
    included: those figures are the fp32 ONNX graph's, not theirs, and the label says so, naming
    the parent graph when ``metadata.parent`` records it.
    """
    if not meta.fidelity:
        return ""
    compared = str(meta.fidelity.get("compared", "PyTorch vs ONNX Runtime"))
    checked = str(meta.fidelity.get("precision", "fp32"))  # older reports: only fp32 exports ran a check
    if checked == meta.precision and kind == "onnx":
        return f"this {checked} graph, {compared}"
    parent = meta.parent.get("name") if isinstance(meta.parent, dict) else None
    graph = f"the {checked} graph {parent}" if parent else f"the {checked} ONNX graph this artifact was derived from"
    this = f"this {meta.precision} TensorRT engine" if kind == "tensorrt" else f"this {meta.precision} graph"
    return f"of {graph}, {compared}; not a check of {this}"


def artifact_info(path: str | os.PathLike[str]) -> ArtifactInfo:
    """Summarise the artifact at ``path`` (``.onnx``, or ``.engine`` / ``.plan`` with its json).

    Raises:
        ArtifactError: missing / unreadable / non-edgecv artifact.
    """
    file = Path(path)
    info = _engine_info(file) if file.suffix.lower() in (".engine", ".plan") else _onnx_info(file)
    info.fidelity_of = fidelity_scope(info.metadata, info.kind)
    return info


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _fidelity_rows(fidelity: dict[str, Any]) -> dict[str, Any]:
    """The fidelity block with one readable row per checked size instead of a nested JSON dump."""
    rows = {k: v for k, v in fidelity.items() if k != "sizes" and v != []}  # no empty failure / warning lists
    for size, f in (fidelity.get("sizes") or {}).items():
        if not isinstance(f, dict):
            continue
        matched = f.get("matched")
        checks = f.get("checks") or {}
        rows[f"size {size}"] = (
            f"max |Δ| boxes {f.get('max_abs_boxes', float('nan')):.2e} px, scores {f.get('max_abs_scores', float('nan')):.2e}; "
            f"dets torch/onnx {f.get('torch_dets', '?')}/{f.get('onnx_dets', '?')}, matched "
            + ("not compared" if matched is None else f"{100 * matched:.1f} %")
            + (f"; checks {', '.join(f'{k} {v}' for k, v in checks.items())}" if checks else ""))
    return rows


def _accuracy_rows(accuracy: dict[str, Any]) -> dict[str, str]:
    """The fp32 vs int8 record (``edgecv.calibration``) in points and ratios, not as raw JSON;
    the full record stays in ``--json`` and in the report file beside the graph."""
    if not {"fp32", "int8"} <= accuracy.keys():
        return accuracy
    rows = {label: f"mAP50-95 {100 * accuracy[label]['map50_95']:.2f} pts, mAP50 "
                   f"{100 * (accuracy[label].get('map50') or 0):.2f} pts" for label in ("fp32", "int8")}
    rows["drop"] = f"{100 * (accuracy['fp32']['map50_95'] - accuracy['int8']['map50_95']):+.2f} pts mAP50-95"
    rows["evaluated on"] = f"{accuracy.get('eval_images', '?')} images of {accuracy.get('eval_data', '?')}"
    latency = accuracy.get("latency") or {}
    int8 = (latency.get("rows") or {}).get("int8")
    rows["latency"] = (f"int8 {int8['ratio']:.2f}x fp32 (p50 {int8['p50_ms']:.1f} ms; {int8['ratio_range'][0]:.2f}-"
                       f"{int8['ratio_range'][1]:.2f} over {latency.get('rounds')} rounds) on {latency.get('backend')}"
                       if int8 else f"not measured: {latency.get('skipped', 'not recorded')}")
    if accuracy.get("max_drop") is not None:
        rows["max drop"] = f"{accuracy['max_drop']} pts"
    return rows


def _normalisation_row(meta: ArtifactMetadata) -> str:
    """What turns pixels into the network input, and where (a uint8 artifact does it in its graph)."""
    g = meta.in_graph
    if g:
        return (f"in the graph ({g.get('prefix', '')}): {meta.color_order} -> {g.get('color_order')}, x/255, "
                f"mean {g.get('mean')}, std {g.get('std')}")
    return f"x/255, mean {meta.mean}, std {meta.std}"


def render(info: ArtifactInfo) -> list[Any]:
    """Rich renderables for ``edgecv info``: summary, IO tensors, calibration, fidelity (+ TensorRT)."""
    from rich.table import Table

    meta = info.metadata
    summary = Table(title=f"{Path(info.path).name} ({info.kind}, {info.size_bytes / 2**20:.1f} MB)", show_header=False)
    summary.add_column("key", style="bold")
    summary.add_column("value")
    rows = [
        ("task", meta.task), ("model", meta.model_family or "-"), ("precision", meta.precision),
        ("classes", f"{meta.num_classes}: {', '.join(meta.class_names[:12])}{' ...' if meta.num_classes > 12 else ''}"),
        ("input", f"{meta.input_name} {meta.input_shape} {meta.input_dtype} {meta.layout} {meta.color_order}"),
        ("normalisation", _normalisation_row(meta)),
        ("letterbox", f"{meta.letterbox_size} stride {meta.stride} pad {meta.pad_value}"),
        ("thresholds", f"conf {meta.conf_threshold}  iou {meta.iou_threshold}  max_det {meta.max_det}"),
        ("dynamic", str(meta.dynamic)), ("source weights", meta.source_weights or "-"),
        ("training command", str(meta.training.get("command") or "-")),
        ("weights sha256", (meta.source_weights_sha256 or "-")[:16]), ("producer", info.producer or "-"),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(meta.versions.items())) or "-"),
    ]
    for key, value in rows:
        summary.add_row(key, value)
    io = Table(title="inputs / outputs")
    for column in ("", "name", "shape", "dtype"):
        io.add_column(column)
    for kind, tensors in (("in", info.inputs), ("out", info.outputs)):
        for tensor in tensors:
            io.add_row(kind, tensor.name, str(tensor.shape), tensor.dtype)
    tables: list[Any] = [summary, io]
    fidelity_title = f"fidelity ({info.fidelity_of})" if info.fidelity_of else "fidelity"
    training = {k: v for k, v in meta.training.items() if k != "command"}  # the command is a summary row
    for title, section in (("calibration", meta.calibration), (fidelity_title, _fidelity_rows(meta.fidelity)),
                           ("accuracy (fp32 vs int8)", _accuracy_rows(meta.accuracy)), ("training", training), ("tensorrt", info.tensorrt)):
        if section:
            table = Table(title=title, show_header=False)
            table.add_column("key", style="bold")
            table.add_column("value")
            for key, value in sorted(section.items()):
                table.add_row(str(key), _fmt(value))
            tables.append(table)
    return tables
