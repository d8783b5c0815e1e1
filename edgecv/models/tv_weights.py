"""torchvision state dicts for the single-stage families: reading, identifying the builder, class names.

A user's ``--weights`` is a state dict saved from a torchvision builder
(``torch.save(model.state_dict(), path)``; a reference-script checkpoint ``{"model": state_dict, ...}``
is accepted too), read with ``weights_only=True``. Which builder it fits is decided from the shipped
manifest ``weights/tv_single_manifest.json`` (key names and shapes per builder at torchvision's 91
COCO categories, and which keys grow with the class count), written by ``tools/tv_manifest.py``:
no builder is instantiated to identify a file.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from edgecv.errors import OptionError, WeightsError
from edgecv.models.checkpoint import load_raw

MANIFEST = "tv_single_manifest.json"
#: Class names whose score channel is removed from the exported graph: torchvision's COCO list keeps
#: the background (label 0) and 10 "N/A" placeholders (unused COCO category ids) as real channels.
DROPPED_NAMES = ("__background__", "N/A")


@functools.lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    """The packaged manifest: ``{"builders": {name: {"keys": {key: shape}, "class_keys": {key: factor}}}}``."""
    path = resources.files("edgecv.models") / "weights" / MANIFEST
    return json.loads(path.read_text(encoding="utf-8"))


def coco_names() -> list[str]:
    """torchvision's 91 COCO labels (index = torchvision label = COCO category id; 0 is ``__background__``)."""
    from torchvision.models._meta import _COCO_CATEGORIES

    return list(_COCO_CATEGORIES)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict stored at ``path`` (``weights_only=True``); a ``{"model": ...}`` checkpoint is unwrapped.

    Raises:
        WeightsError: missing / unreadable file, or a payload that is no dict of tensors.
    """
    raw = load_raw(path)
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        raw = raw["model"]  # torchvision reference scripts: {"model": ..., "optimizer": ..., "epoch": ...}
    if not (isinstance(raw, dict) and raw and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                   for k, v in raw.items())):
        found = f"a dict with keys {sorted(map(str, raw))[:5]}" if isinstance(raw, dict) else f"a {type(raw).__name__}"
        raise WeightsError(f"{path}: expected a torchvision state dict (names -> tensors), found {found}")
    return {k.removeprefix("module."): v for k, v in raw.items()}  # DistributedDataParallel prefix


def fit(builder: str, state: dict[str, torch.Tensor]) -> tuple[int | None, str]:
    """``(num_classes, "")`` when ``state`` fits ``builder`` (any class count), else ``(None, why)``."""
    entry = manifest()["builders"][builder]
    keys, class_keys = entry["keys"], entry["class_keys"]
    missing, unexpected = sorted(set(keys) - set(state)), sorted(set(state) - set(keys))
    if missing or unexpected:
        return None, (f"{len(missing)} keys missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                      f"(e.g. {unexpected[:2]})")
    counts = set()
    for key, shape in keys.items():
        found = list(state[key].shape)
        if key in class_keys:
            factor = class_keys[key]
            if found[1:] != shape[1:] or not found or found[0] % factor:
                return None, f"{key}: expected shape [{factor}*classes, *{shape[1:]}], found {found}"
            counts.add(found[0] // factor)
        elif found != shape:
            return None, f"{key}: expected shape {shape}, found {found}"
    if len(counts) != 1:
        return None, f"the classification layers disagree on the class count ({sorted(counts)})"
    return counts.pop(), ""


def fitting_builders(state: dict[str, torch.Tensor]) -> list[str]:
    """Every builder of the manifest that ``state`` fits."""
    return [name for name in manifest()["builders"] if fit(name, state)[0] is not None]


def check_fits(builder: str, state: dict[str, torch.Tensor], path: Path) -> int:
    """The class count of ``state`` for ``builder``.

    Raises:
        WeightsError: one line: the state dict fits another builder (named), or fits none (why).
    """
    num_classes, why = fit(builder, state)
    if num_classes is not None:
        return num_classes
    others = [name for name in fitting_builders(state) if name != builder]
    if others:
        raise WeightsError(f"{path}: expected a state dict of {builder}, found one that fits {' / '.join(others)} "
                           f"(by key names and shapes); export it with: edgecv export {others[0]} --weights {path}")
    raise WeightsError(f"{path}: expected a state dict of torchvision's {builder}, found one that fits no "
                       f"torchvision single-stage builder ({builder}: {why})")


def label_names(num_classes: int, class_names: list[str] | None, background: bool) -> list[str]:
    """Names of torchvision labels ``0 .. num_classes-1``.

    ``class_names`` (``--names``) lists them all, or, when ``background`` (SSD: label 0 is the
    softmax's background), all but label 0. Without names: torchvision's COCO names for a 91-class
    head, else ``class_<label>``.

    Raises:
        OptionError: a name count that fits neither form.
    """
    if class_names is None:
        if num_classes == len(coco_names()):
            return coco_names()
        return [DROPPED_NAMES[0] if background and i == 0 else f"class_{i}" for i in range(num_classes)]
    if background and len(class_names) == num_classes - 1:
        return [DROPPED_NAMES[0], *class_names]
    if len(class_names) != num_classes:
        expected = f"{num_classes}" + (f" (or {num_classes - 1} without the background)" if background else "")
        raise OptionError(f"--names: expected {expected} names for a {num_classes}-class head, "
                           f"found {len(class_names)}")
    return list(class_names)
