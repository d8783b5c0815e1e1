"""The self-description every edgecv artifact carries, and its validation.

An exported ``.onnx`` stores one JSON document under the ``metadata_props`` key
:data:`METADATA_KEY`; a TensorRT engine stores the same document beside it
(``model.engine.json``). A predictor needs nothing but the artifact. This module is
dependency-free (stdlib only) so the runtime can read it without torch or onnx.

Versioning rule (schema v2):

* Any field whose meaning changes pre- or post-processing (how pixels become the input
  tensor, how outputs become boxes) bumps :data:`SCHEMA_VERSION` when it is added or
  when its meaning changes. A runtime refuses an artifact whose ``schema_version`` is newer
  than the one it knows: an older runtime that ignored an unknown ``resize="stretch"``
  would silently letterbox a model trained on stretched images and detect garbage.
  Purely informative fields (provenance, reports) may be added without a bump; readers
  ignore keys they do not know.
* Older documents stay readable: a field missing from an older document takes the
  default that reproduces that version's behaviour (v1 had no ``resize``: letterbox).

History: v1 -- the first schema; v2 -- ``resize`` (``letterbox`` | ``stretch``) and
``parent`` (the fp32 graph a derived fp16 / int8 graph came from). Within v2: ``layout`` NHWC with
``input_dtype`` uint8 and ``in_graph`` (pre-processing inside the graph, ``export --input uint8``);
a v2 reader from before them refuses such an artifact on its field rules instead of misreading it.

Every document is validated field by field on read (:func:`validate_document`): types,
ranges, lengths and known values. All problems are collected and raised as one
:class:`~edgecv.errors.ArtifactError` that lists each field with what was expected and
what was found, so a bad value never reaches numpy or OpenCV as a ``TypeError``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from edgecv.errors import ArtifactError

METADATA_KEY = "edgecv"
SCHEMA_VERSION = 2

#: The detection output contract (architecture brief, contract 2), in output order.
DETECTION_OUTPUTS = ("num_dets", "boxes", "scores", "classes")

#: Known values of the enumerated fields.
TASKS = ("detect", "segment", "semantic")
PRECISIONS = ("fp32", "fp16", "int8")
COLOR_ORDERS = ("RGB", "BGR")
RESIZE_MODES = ("letterbox", "stretch")
LAYOUTS = ("NCHW", "NHWC")
INPUT_DTYPES = ("float32", "float16", "uint8")
#: Axes of (H, W) in ``input_shape`` per layout; the channel axis is the remaining non-batch one.
HW_AXES = {"NCHW": (2, 3), "NHWC": (1, 2)}


@dataclass
class ArtifactMetadata:
    """Everything a runtime needs to pre- and post-process for one artifact.

    ``input_shape`` is ``[B, 3, H, W]`` (``layout`` NCHW, float input) or ``[B, H, W, 3]``
    (``layout`` NHWC, ``input_dtype`` uint8: the graph casts, swaps colours, scales, normalises
    and transposes itself, see ``in_graph``); a dynamic axis is ``-1``. Boxes in the outputs are
    x1,y1,x2,y2 in network-input pixels (after letterbox or stretch). ``mean``/``std`` apply
    to pixels scaled to [0, 1] (``x / 255``), per tensor channel (in ``color_order``).
    ``resize``: ``"letterbox"`` keeps the aspect ratio and pads with ``pad_value``;
    ``"stretch"`` resizes each axis independently to the input size (no padding).

    uint8 input (``edgecv export --input uint8``): ``color_order`` is the order of the input
    pixels (``BGR``, what every edgecv source gives), ``mean``/``std`` are the identity (the runtime
    normalises nothing) and ``in_graph`` records what the ``edgecv_pre/`` nodes do:
    ``{"color_order": network order, "mean": [...], "std": [...], "scale": 255.0, "prefix": "edgecv_pre/"}``.
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
    in_graph: dict[str, Any] = field(default_factory=dict)  # pre-processing inside the graph (uint8 input); {} = none
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

    @property
    def hw_axes(self) -> tuple[int, int]:
        """Axes of height and width in ``input_shape`` (and in the input tensor): (2, 3) NCHW, (1, 2) NHWC."""
        return HW_AXES.get(self.layout, HW_AXES["NCHW"])

    def shape_for(self, batch: int, height: int, width: int) -> list[int]:
        """An input shape in this artifact's layout: ``[B, 3, H, W]`` or ``[B, H, W, 3]``."""
        return [batch, height, width, 3] if self.layout == "NHWC" else [batch, 3, height, width]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def problems(self) -> list[str]:
        """Every invalid field of this instance (empty when valid); see :func:`validate_document`."""
        return validate_document(asdict(self))

    def check(self, source: str = "metadata") -> "ArtifactMetadata":
        """Raise one :class:`ArtifactError` listing every invalid field; return ``self`` when valid."""
        _raise_problems(source, self.problems())
        return self

    @classmethod
    def from_json(cls, text: str, source: str = "artifact") -> "ArtifactMetadata":
        """Parse and validate a metadata document; unknown keys are ignored (forward compatible
        within one schema version). A document of a newer schema version is refused."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{source}: edgecv metadata is not valid JSON ({exc})") from exc
        except TypeError as exc:
            raise ArtifactError(f"{source}: expected edgecv metadata as JSON text, found {type(text).__name__}") from exc
        if not isinstance(raw, dict):
            raise ArtifactError(f"{source}: expected a JSON object as edgecv metadata, found {type(raw).__name__}")
        version = raw.get("schema_version")
        if not _is_int(version) or version < 1:
            raise ArtifactError(f"{source}: expected metadata schema_version an integer in [1, {SCHEMA_VERSION}], "
                                f"found {version!r}")
        if version > SCHEMA_VERSION:
            raise ArtifactError(
                f"{source}: expected metadata schema_version <= {SCHEMA_VERSION}, found {version}; this artifact "
                "needs a newer edgecv to be pre-processed correctly: upgrade edgecv to read it"
            )
        _raise_problems(source, validate_document(raw))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def _raise_problems(source: str, problems: list[str]) -> None:
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise ArtifactError(f"{source}: invalid edgecv metadata ({len(problems)} {noun}): " + "; ".join(problems))


# --- field validation -------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _found(value: Any) -> str:
    """``value`` as shown in an error: its repr (shortened) and its JSON type when that helps."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    kind = {bool: "boolean", str: "string", list: "list", dict: "object", type(None): "null",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)
    return f"{text} ({kind})"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if isinstance(value, str) and value in choices else f"one of {list(choices)}"
    return check


def _int_at_least(low: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if _is_int(value) and value >= low else f"an integer >= {low}"
    return check


def _unit_interval(value: Any) -> str | None:
    return None if _is_number(value) and 0.0 <= value <= 1.0 else "a number in [0, 1]"


def _pad_value(value: Any) -> str | None:
    return None if _is_int(value) and 0 <= value <= 255 else "an integer in [0, 255]"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def _non_empty_string(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "a non-empty string"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "a JSON object"


def _class_names(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(isinstance(name, str) for name in value)
    return None if ok else "a non-empty list of strings"


def _string_list(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(isinstance(name, str) and name for name in value)
    return None if ok else "a non-empty list of non-empty strings"


def _three_numbers(value: Any) -> str | None:
    ok = isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value)
    return None if ok else "a list of 3 finite numbers (one per channel)"


def _three_positive(value: Any) -> str | None:
    ok = isinstance(value, list) and len(value) == 3 and all(_is_number(v) and v > 0 for v in value)
    return None if ok else "a list of 3 numbers > 0 (one per channel)"


def _input_shape(value: Any) -> str | None:
    ok = (isinstance(value, list) and len(value) == 4 and all(_is_int(v) and (v > 0 or v == -1) for v in value)
          and 3 in (value[1], value[3]))
    return None if ok else "[B, 3, H, W] or [B, H, W, 3]: 4 integers, each > 0 or -1 (dynamic), channels 3"


def _layout_problems(raw: dict[str, Any]) -> list[str]:
    """Cross-field rules of the input: the channel axis follows ``layout``; uint8 input comes as
    NHWC and NHWC as uint8 (the two combinations the runtime builds: float NCHW, uint8 NHWC)."""
    layout, dtype, shape = raw.get("layout", "NCHW"), raw.get("input_dtype", "float32"), raw.get("input_shape")
    if layout not in LAYOUTS or dtype not in INPUT_DTYPES:
        return []  # reported by the field rules
    problems = []
    if isinstance(shape, list) and len(shape) == 4 and _input_shape(shape) is None:
        channel = 3 if layout == "NHWC" else 1
        if shape[channel] != 3:
            want = "[B, H, W, 3]" if layout == "NHWC" else "[B, 3, H, W]"
            problems.append(f"input_shape: expected {want} for layout {layout}, found {shape}")
    if (layout == "NHWC") != (dtype == "uint8"):
        problems.append(f"input_dtype/layout: expected uint8 with NHWC or a float dtype with NCHW, found "
                        f"{dtype} with {layout}")
    return problems


def _two_positive_ints(value: Any) -> str | None:
    ok = isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v > 0 for v in value)
    return None if ok else "[H, W]: 2 integers > 0"


#: One rule per field: returns None when the value is valid, else what was expected.
RULES: dict[str, Callable[[Any], str | None]] = {
    "task": _one_of(TASKS),
    "class_names": _class_names,
    "input_name": _non_empty_string,
    "input_shape": _input_shape,
    "input_dtype": _one_of(INPUT_DTYPES),
    "layout": _one_of(LAYOUTS),
    "color_order": _one_of(COLOR_ORDERS),
    "mean": _three_numbers,
    "std": _three_positive,
    "letterbox_size": _two_positive_ints,
    "stride": _int_at_least(1),
    "pad_value": _pad_value,
    "resize": _one_of(RESIZE_MODES),
    "in_graph": _object,
    "outputs": _string_list,
    "max_det": _int_at_least(1),
    "conf_threshold": _unit_interval,
    "iou_threshold": _unit_interval,
    "precision": _one_of(PRECISIONS),
    "dynamic": _boolean,
    "model_family": _string,
    "source_weights": _string,
    "source_weights_sha256": _string,
    "parent": _object,
    "calibration": _object,
    "fidelity": _object,
    "accuracy": _object,
    "versions": _object,
    "schema_version": _int_at_least(1),
}

#: Fields a document must carry (the rest have defaults reproducing schema v1 behaviour).
REQUIRED = ("task", "class_names", "schema_version")


def validate_fields(values: dict[str, Any]) -> list[str]:
    """Problems of the given fields only (no required-key check): for callers building metadata,
    e.g. the exporter validating a user's ``color_order=`` / ``resize=`` / ``pad_value=``."""
    problems = []
    for name, value in values.items():
        expected = RULES[name](value)
        if expected is not None:
            problems.append(f"{name}: expected {expected}, found {_found(value)}")
    return problems


def validate_document(raw: dict[str, Any]) -> list[str]:
    """Every problem of a metadata document, one ``"<field>: expected ..., found ..."`` string each.

    Checks each known field present in ``raw`` (missing optional fields take their defaults;
    unknown keys are ignored) plus the required keys :data:`REQUIRED`.
    """
    problems = [f"{name}: expected a value, found the key missing" for name in REQUIRED if name not in raw]
    return problems + validate_fields({name: raw[name] for name in RULES if name in raw}) + _layout_problems(raw)
