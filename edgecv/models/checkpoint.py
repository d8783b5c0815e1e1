"""edgecv checkpoints: a plain dict of tensors and builtins, loadable with ``weights_only=True``.

Layout::

    {"format": "edgecv", "family": "yolo", "version": 1, "config": {...}, "class_names": [...],
     "imgsz": int, "state_dict": {name: tensor}, "train": {...}, "metrics": {...}}
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from edgecv.errors import WeightsError
from edgecv.fileio import write_with

FORMAT = "edgecv"
VERSION = 1


def save_checkpoint(path: str | Path, *, family: str, config: dict, class_names: list[str], imgsz: int,
                    state_dict: dict[str, torch.Tensor], half: bool = True, **extra: Any) -> Path:
    """Write a checkpoint; floating tensors are stored as fp16 when ``half`` (halves the file)."""
    tensors = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
        for k, v in state_dict.items()
    }
    payload = {"format": FORMAT, "family": family, "version": VERSION, "config": config,
               "class_names": list(class_names), "imgsz": int(imgsz), "state_dict": tensors, **extra}
    return write_with(path, lambda tmp: torch.save(payload, tmp))  # never a half-written checkpoint


def load_raw(path: str | Path, *, trust: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True`` unless ``trust``; every failure is a WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    with open(path, "rb") as handle:
        head = handle.read(4)
    # torch.save writes a zip archive (or, before torch 1.6, a pickle stream starting with 0x80).
    if not zipfile.is_zipfile(path) and not head.startswith(b"\x80"):
        raise WeightsError(f"{path}: expected a PyTorch checkpoint (.pt, a zip archive), found "
                           f"{path.stat().st_size} bytes starting with {head!r}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if trust:
            raise WeightsError(f"{path}: cannot unpickle checkpoint ({exc})") from exc
        raise WeightsError(
            f"{path}: the checkpoint holds pickled Python objects, which weights_only=True refuses to load "
            f"({str(exc).splitlines()[0]}). If you trust where it came from, pass --trust-weights "
            "(Python API: trust=True)."
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(
            f"{path}: expected a PyTorch checkpoint (.pt), found a file torch cannot read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from exc


def check_header(path: str | Path, raw: Any, family: str) -> None:
    """Raise :class:`WeightsError` unless ``raw`` is an edgecv checkpoint dict of ``family`` and a
    version this edgecv reads."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise WeightsError(f"{path}: expected an edgecv checkpoint (dict with format='edgecv'), "
                           f"found {type(raw).__name__}" + (f" with keys {sorted(map(str, raw))[:8]}"
                                                            if isinstance(raw, dict) else ""))
    if raw.get("family") != family:
        raise WeightsError(f"{path}: expected a '{family}' checkpoint, found family {raw.get('family')!r}")
    version = raw.get("version", VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise WeightsError(f"{path}: checkpoint 'version': expected an integer in [1, {VERSION}], found {version!r}")
    if version > VERSION:
        raise WeightsError(f"{path}: checkpoint version {version} is newer than this edgecv ({VERSION}); "
                           "upgrade edgecv to read it")


def load_checkpoint(path: str | Path, family: str, *, trust: bool = False) -> dict[str, Any]:
    """Load an edgecv checkpoint of ``family`` and check its header (format, family, version)."""
    raw = load_raw(path, trust=trust)
    check_header(path, raw, family)
    return raw
