"""``edgecv export <two-stage> --input uint8 [--frame WxH]``: the two-stage artifact takes uint8 frames.

The float artifact is exported and checked against PyTorch first (:mod:`edgecv.export.twostage`);
then the family-agnostic ``edgecv_pre/`` prefix (:mod:`edgecv.export.uint8_input`) is put in front
of its float input, and the uint8 artifact is checked against the float one: both run in ONNX
Runtime through a :class:`~edgecv.runtimes.Predictor` on the same BGR frames (at the ``--frame``
size when given), and at least ``match`` of the float artifact's detections must come back with the
same class at IoU >= 0.99 (:data:`MATCH_IOU`). Only then does the uint8 artifact replace the float
one at ``out`` (atomically); a failed check leaves the float artifact in place and says so.
Why a second check rather than PyTorch again: the network is untouched, so the only new thing to
verify is the prefix (cast, BGR -> RGB, scaling, and with ``--frame`` the in-graph letterbox).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgecv.errors import ExportError

#: Box IoU at which a uint8-artifact detection counts as the float artifact's.
MATCH_IOU = 0.99


def uint8_parity(float_path: Path, uint8_path: Path, frames: list[np.ndarray]) -> tuple[int, int]:
    """``(matched, total)``: the float artifact's detections on ``frames`` (BGR uint8 ``[H, W, 3]``)
    that the uint8 artifact gives too (same class, IoU >= :data:`MATCH_IOU`)."""
    from edgecv.export.fidelity import box_iou
    from edgecv.runtimes import Predictor

    matched = total = 0
    with Predictor(float_path) as floats, Predictor(uint8_path) as uint8s:
        for a, b in zip(floats(frames), uint8s(frames)):
            total += len(a)
            if len(a) and len(b):
                same = box_iou(a.boxes, b.boxes) * (a.class_ids[:, None] == b.class_ids[None, :])
                matched += int(np.sum(same.max(axis=1) >= MATCH_IOU))
    return matched, total


def to_uint8_input(out: Path, frames: list[np.ndarray], frame_wh: tuple[int, int] | None,
                   match: float = 0.99) -> dict:
    """Replace the checked float two-stage artifact at ``out`` by its uint8-input form after the
    parity check (module docstring); returns the check's record (``matched``, ``total``, ``images``,
    ``frame``), also stored in the artifact's ``metadata.fidelity["uint8_input"]``.

    Raises:
        ExportError: the float artifact found nothing to compare on ``frames``, or the uint8 artifact
            matched fewer than ``match`` of its detections (the float artifact stays at ``out``).
    """
    import onnx

    from edgecv.export.onnx_export import set_metadata
    from edgecv.export.uint8_input import export_uint8_input, frame_images
    from edgecv.fileio import write_with
    from edgecv.metadata import METADATA_KEY, ArtifactMetadata

    frames = frame_images(frames, frame_wh)
    with tempfile.TemporaryDirectory(prefix="edgecv_u8_") as folder:
        converted = export_uint8_input(out, Path(folder) / out.name, frame_wh=frame_wh)
        matched, total = uint8_parity(out, converted, frames)
        if total == 0:
            raise ExportError(f"--input uint8: expected detections of the float artifact to compare the uint8 one "
                              f"with, found none on {len(frames)} check images; the float artifact stays at {out}")
        if matched < match * total:
            raise ExportError(f"--input uint8: expected >= {match:.0%} of the float artifact's detections from the "
                              f"uint8 one (IoU >= {MATCH_IOU}), found {matched}/{total}; the float artifact "
                              f"stays at {out}")
        model = onnx.load(str(converted))
    record = {"matched": matched, "total": total, "images": len(frames), "frame": list(frame_wh) if frame_wh else None}
    metadata = ArtifactMetadata.from_json(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))
    metadata.fidelity = {**metadata.fidelity, "uint8_input": record}  # the artifact carries its own check
    set_metadata(model, metadata)
    write_with(out, lambda tmp: onnx.save(model, str(tmp)))
    return record
