"""The self-description every edgecv artifact carries.

An exported ``.onnx`` stores one JSON document under the ``metadata_props`` key
:data:`METADATA_KEY`; a TensorRT engine stores the same document beside it
(``model.engine.json``). A predictor needs nothing but the artifact. This module is
dependency-free (stdlib only) so the runtime can read it without torch or onnx.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgecv.errors import ArtifactError

METADATA_KEY = "edgecv"
SCHEMA_VERSION = 2

#: The detection output contract (architecture brief, contract 2), in output order.
DETECTION_OUTPUTS = ("num_dets", "boxes", "scores", "classes")


@dataclass
class ArtifactMetadata:
    """Everything a runtime needs to pre- and post-process for one artifact.

    ``input_shape`` is ``[B, 3, H, W]``; a dynamic axis is ``-1``. Boxes in the
    outputs are x1,y1,x2,y2 in network-input pixels (after letterbox).
    ``mean``/``std`` apply to pixels scaled to [0, 1] (``x / 255``).
    """

    task: str  # "detect" | "segment" | "semantic"
    class_names: list[str]
    input_name: str = "images"
    input_shape: list[int] = field(default_factory=lambda: [1, 3, 640, 640])
    input_dtype: str = "float32"
    layout: str = "NCHW"
    color_order: str = "RGB"
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    letterbox_size: list[int] = field(default_factory=lambda: [640, 640])  # [H, W]
    stride: int = 32
    pad_value: int = 114
    resize: str = "letterbox"  # "letterbox" (aspect kept, padded with pad_value) | "stretch" (plain resize)
    outputs: list[str] = field(default_factory=lambda: list(DETECTION_OUTPUTS))
    max_det: int = 100
    conf_threshold: float = 0.25
    iou_threshold: float = 0.45
    precision: str = "fp32"  # "fp32" | "fp16" | "int8"
    dynamic: bool = False
    model_family: str = ""
    source_weights: str = ""
    source_weights_sha256: str = ""
    # For derived graphs (fp16, int8): {"name": file name, "sha256": hash} of the fp32 graph they came from.
    parent: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # how the weights were trained, e.g. {"command": ..., "epochs": ...}
    versions: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "artifact") -> "ArtifactMetadata":
        """Parse and validate a metadata document; unknown keys are ignored (forward compatible)."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{source}: edgecv metadata is not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise ArtifactError(f"{source}: expected a JSON object as edgecv metadata, found {type(raw).__name__}")
        version = raw.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ArtifactError(
                f"{source}: expected metadata schema_version <= {SCHEMA_VERSION}, found {version!r}; "
                "upgrade edgecv to read this artifact"
            )
        known = {f.name for f in fields(cls)}
        missing = [name for name in ("task", "class_names") if name not in raw]
        if missing:
            raise ArtifactError(f"{source}: edgecv metadata lacks required keys {missing}")
        return cls(**{k: v for k, v in raw.items() if k in known})
