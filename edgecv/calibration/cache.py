"""Calibration cache: activation statistics as JSON, so re-emitting for another target, method or
exclusion list does not re-run the data.

Document (``model.calib.json`` beside the fp32 model by default)::

    {"version": 1, "model_sha256": "...", "data_hash": "...", "samples": 256, "data": "shapes",
     "tensors": {"<name>": {"lo": float, "hi": float, "edge": float, "hist": [int] * BINS}}}

The histograms are kept (not just one method's ranges), so any method can be derived from the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgecv.calibration.ranges import TensorStats
from edgecv.errors import CalibrationError

CACHE_VERSION = 1


@dataclass
class CalibrationCache:
    """Statistics of one model over one calibration set."""

    model_sha256: str
    data_hash: str
    samples: int
    data: str
    tensors: dict[str, TensorStats]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        doc = {"version": CACHE_VERSION, "model_sha256": self.model_sha256, "data_hash": self.data_hash,
               "samples": self.samples, "data": self.data,
               "tensors": {k: v.to_dict() for k, v in self.tensors.items()}}
        path.write_text(json.dumps(doc))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationCache":
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
            if doc.get("version") != CACHE_VERSION:
                raise CalibrationError(f"{path}: expected calibration cache version {CACHE_VERSION}, "
                                       f"found {doc.get('version')!r}")
            tensors = {k: TensorStats.from_dict(v) for k, v in doc["tensors"].items()}
            return cls(doc["model_sha256"], doc["data_hash"], int(doc["samples"]), doc["data"], tensors)
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CalibrationError(f"{path}: not a readable calibration cache ({exc})") from exc

    def matches(self, model_sha256: str, data_hash: str | None) -> bool:
        """True when the cache was built for this model and (if given) this data."""
        return self.model_sha256 == model_sha256 and (data_hash is None or data_hash == self.data_hash)


def model_sha256(path: str | Path) -> str:
    """SHA-256 of the model file (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_cache_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.calib.json`` beside it."""
    path = Path(onnx_path)
    return path.with_name(path.stem + ".calib.json")
