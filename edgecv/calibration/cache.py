"""Calibration cache: activation statistics as JSON, so re-emitting for another target, method or
exclusion list does not re-run the data.

Document (``model.calib.json`` beside the fp32 model by default)::

    {"version": 1, "model_sha256": "...", "data_hash": "...", "samples": 256, "data": "shapes",
     "tensors": {"<name>": {"lo": float, "hi": float, "edge": float, "hist": [int] * BINS}}}

The histograms are kept (not just one method's ranges), so any method can be derived from the cache.

A cache is only ever a shortcut: one that cannot be used (truncated, not JSON, missing fields,
another cache version) is renamed aside to ``<name>.corrupt`` (``<name>.corrupt-<time>`` if that
exists already), a :class:`CalibrationCacheWarning` says so, and :meth:`CalibrationCache.load`
returns an empty cache that matches no model, so the caller recalibrates and writes a fresh one.
The cache is written atomically (:mod:`edgecv.fileio`), so edgecv itself never leaves a torn one.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from edgecv.calibration.ranges import TensorStats
from edgecv.errors import CalibrationError
from edgecv.fileio import sha256_file, write_json

CACHE_VERSION = 1


class CalibrationCacheWarning(UserWarning):
    """An unusable calibration cache was set aside and will be rebuilt."""


def set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.corrupt`` (or ``<name>.corrupt-<UTC time>[-n]`` if taken); return the new path.

    Kept rather than deleted: it is the evidence of whatever broke it.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidates = [path.with_name(path.name + ".corrupt")]
    candidates += [path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{n}" if n else "")) for n in range(100)]
    for aside in candidates:
        if not aside.exists():
            os.replace(path, aside)
            return aside
    raise CalibrationError(f"{path}: unusable calibration cache, and no free name to set it aside; delete it")


@dataclass
class CalibrationCache:
    """Statistics of one model over one calibration set."""

    model_sha256: str
    data_hash: str
    samples: int
    data: str
    tensors: dict[str, TensorStats]

    def save(self, path: str | Path) -> Path:
        """Write the cache JSON atomically; returns ``path``."""
        doc = {"version": CACHE_VERSION, "model_sha256": self.model_sha256, "data_hash": self.data_hash,
               "samples": self.samples, "data": self.data,
               "tensors": {k: v.to_dict() for k, v in self.tensors.items()}}
        return write_json(path, doc)

    @classmethod
    def parse(cls, text: str, source: str) -> "CalibrationCache":
        """The cache in JSON ``text``; :class:`CalibrationError` naming ``source`` if it is not one."""
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise TypeError(f"expected a JSON object, found {type(doc).__name__}")
            if doc.get("version") != CACHE_VERSION:
                raise CalibrationError(f"{source}: expected calibration cache version {CACHE_VERSION}, "
                                       f"found {doc.get('version')!r}")
            tensors = {k: TensorStats.from_dict(v) for k, v in doc["tensors"].items()}
            return cls(str(doc["model_sha256"]), str(doc["data_hash"]), int(doc["samples"]), str(doc["data"]),
                       tensors)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # ValueError: bad JSON or numbers
            raise CalibrationError(f"{source}: not a readable calibration cache ({type(exc).__name__}: {exc})"
                                   ) from exc

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationCache":
        """The cache at ``path``; an unusable one is set aside (warning) and an empty cache returned.

        The empty cache matches no model (:meth:`matches` is False), so calibration runs again
        and its :meth:`save` replaces the file.

        Raises:
            CalibrationError: the file cannot be read at all (permissions, a folder).
        """
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CalibrationError(f"{path}: cannot read the calibration cache ({exc.strerror or exc})") from exc
        try:
            return cls.parse(raw.decode("utf-8"), str(path))
        except (CalibrationError, UnicodeDecodeError) as exc:
            aside = set_aside(path)
            reason = str(exc).split(": ", 1)[-1] if isinstance(exc, CalibrationError) else "not UTF-8 text"
            warnings.warn(f"edgecv: calibration cache {path} is unusable ({reason}); moved it to {aside.name} "
                          "and calibrating again", CalibrationCacheWarning, stacklevel=2)
            return cls.empty()

    @classmethod
    def empty(cls) -> "CalibrationCache":
        """A cache with no statistics that matches no model."""
        return cls(model_sha256="", data_hash="", samples=0, data="", tensors={})

    def matches(self, model_sha256: str, data_hash: str | None) -> bool:
        """True when the cache was built for this model and (if given) this data."""
        return bool(self.model_sha256) and self.model_sha256 == model_sha256 and (
            data_hash is None or data_hash == self.data_hash)


def model_sha256(path: str | Path) -> str:
    """SHA-256 of the model file (hex)."""
    return sha256_file(path)


def default_cache_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.calib.json`` beside it."""
    path = Path(onnx_path)
    return path.with_name(path.stem + ".calib.json")
