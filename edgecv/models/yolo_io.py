"""Loading YOLO weights for export: edgecv checkpoints, plain state dicts, Ultralytics ``.pt``.

Every loader returns a :class:`~edgecv.models.base.LoadedDetector` whose module maps
images [B,3,H,W] float32 RGB [0,1] → (raw_boxes [B,N,4] x1,y1,x2,y2 pixels, raw_scores [B,N,C]).
"""

from __future__ import annotations

from dataclasses import fields
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from edgecv.errors import MissingDependencyError, WeightsError
from edgecv.models.base import LoadedDetector
from edgecv.fileio import sha256_file
from edgecv.models.checkpoint import check_header, load_raw
from edgecv.models.yolo import SIZES, Yolo, YoloConfig, YoloDecoded, expected_bin

DEMO_WEIGHTS = "yolo_shapes_n.pt"


def demo_weights_path() -> Path:
    """Path of the demo weights shipped inside the package (trained on synthetic shapes)."""
    return Path(str(resources.files("edgecv.models") / "weights" / DEMO_WEIGHTS))


def load_yolo(weights: str | Path | None = None, *, trust: bool = False, size: str = "n",
              class_names: list[str] | None = None) -> LoadedDetector:
    """Load YOLO weights for export.

    ``weights`` None uses the packaged demo model. An edgecv checkpoint carries its own
    architecture and class names; a plain state dict needs ``size`` and ``class_names``; an
    Ultralytics checkpoint needs the ``ultralytics`` package and ``trust=True`` (it is pickled code).
    """
    path = Path(weights) if weights is not None else demo_weights_path()
    raw = load_raw(path, trust=trust) if not _is_ultralytics(path) else None
    if raw is None:
        return _load_ultralytics(path, trust, class_names)
    if isinstance(raw, dict) and raw.get("format") == "edgecv":
        config, names, state, imgsz = _checkpoint_parts(path, raw)
        names = _renamed(path, names, class_names)
    elif isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        if class_names is None:
            raise WeightsError(f"{path}: a plain state dict does not name its classes; pass --names")
        config, names, state, imgsz = YoloConfig(size, len(class_names)), list(class_names), raw, 640
    else:
        raise WeightsError(f"{path}: expected an edgecv YOLO checkpoint, a YOLO state dict or an Ultralytics "
                           f".pt, found {_describe(raw)}")
    model = _build(config, state, path)
    return LoadedDetector(module=YoloDecoded(model).eval(), class_names=names, imgsz=imgsz,
                          family=f"edgecv-yolo{config.size}", source=str(path), sha256=sha256_file(path),
                          is_demo=weights is None, training=_training(raw))


def _training(raw: dict) -> dict:
    """The checkpoint's training record (``raw["train"]``: command, epochs, ...) for the artifact metadata."""
    record = raw.get("train")
    return {str(k): v for k, v in record.items() if isinstance(v, (str, int, float, bool))} if isinstance(record, dict) else {}


def _describe(raw: object) -> str:
    """A short description of an unexpected checkpoint payload for error messages."""
    if isinstance(raw, dict):
        keys = sorted(map(str, raw))
        return f"a dict with keys {keys[:8]}{' ...' if len(keys) > 8 else ''}" if keys else "an empty dict"
    return f"a {type(raw).__name__}"


def _checkpoint_parts(path: Path, raw: dict) -> tuple[YoloConfig, list[str], dict[str, torch.Tensor], int]:
    """Validate an edgecv YOLO checkpoint's fields; every malformed field is one :class:`WeightsError`
    naming what was expected and what was found (never a ``KeyError`` / ``TypeError``).

    Returns ``(config, class_names, state_dict, imgsz)``.
    """
    check_header(path, raw, "yolo")
    config = _config(path, raw.get("config"))
    names = raw.get("class_names")
    if not (isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names)):
        raise WeightsError(f"{path}: checkpoint 'class_names': expected a non-empty list of strings, "
                           f"found {_short(names)}")
    if len(names) != config.num_classes:
        raise WeightsError(f"{path}: checkpoint 'class_names': expected {config.num_classes} names "
                           f"(config num_classes), found {len(names)}")
    state = raw.get("state_dict")
    if not (isinstance(state, dict) and state and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                      for k, v in state.items())):
        raise WeightsError(f"{path}: checkpoint 'state_dict': expected a dict of tensor names to tensors, "
                           f"found {_describe(state) if isinstance(state, dict) else _short(state)}")
    imgsz = raw.get("imgsz", 640)
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz < 32 or imgsz % 32:
        raise WeightsError(f"{path}: checkpoint 'imgsz': expected a positive multiple of 32, found {_short(imgsz)}")
    return config, list(names), state, imgsz


def _config(path: Path, config: object) -> YoloConfig:
    """The checkpoint's ``config`` dict as a :class:`YoloConfig`, checked field by field."""
    known = [f.name for f in fields(YoloConfig)]
    if not isinstance(config, dict):
        found = "no 'config' entry" if config is None else _short(config)
        raise WeightsError(f"{path}: checkpoint 'config': expected a dict with keys {known}, found {found}")
    unknown = sorted(set(map(str, config)) - set(known))
    if unknown:
        raise WeightsError(f"{path}: checkpoint 'config': expected only keys {known}, found unknown {unknown} "
                           "(written by another edgecv version or edited?)")
    size, classes, reg_max = (config.get(k, getattr(YoloConfig, k)) for k in ("size", "num_classes", "reg_max"))
    if not isinstance(size, str) or size not in SIZES:
        raise WeightsError(f"{path}: checkpoint config 'size': expected one of {sorted(SIZES)}, found {_short(size)}")
    for name, value, top in (("num_classes", classes, 100_000), ("reg_max", reg_max, 64)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise WeightsError(f"{path}: checkpoint config '{name}': expected an integer in [1, {top}], "
                               f"found {_short(value)}")
    return YoloConfig(size, classes, reg_max)


def _short(value: object) -> str:
    text = repr(value)
    return (text if len(text) <= 60 else text[:57] + "...") + f" ({type(value).__name__})"


def _renamed(path: Path, names: list[str], class_names: list[str] | None) -> list[str]:
    """The user's ``class_names`` in place of the checkpoint's own, if given and of the same count."""
    if class_names is None:
        return names
    if len(class_names) != len(names):
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise WeightsError(f"{path}: {len(class_names)} class names given, but the weights were trained "
                           f"for {len(names)} classes ({shown})")
    return list(class_names)


def _build(config: YoloConfig, state: dict[str, torch.Tensor], path: Path) -> Yolo:
    """Instantiate and load weights; a shape mismatch names the tensor and both shapes."""
    if config.size not in SIZES:
        raise WeightsError(f"{path}: unknown YOLO size {config.size!r}; expected one of {sorted(SIZES)}")
    model = Yolo(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightsError(f"{path}: weights do not fit edgecv YOLO-{config.size}: "
                           f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            hint = " (weights for another class count?)" if name.startswith("head.cls") else ""
            raise WeightsError(f"{path}: tensor {name} expected shape {tuple(own[name].shape)}, "
                               f"found {tuple(tensor.shape)}{hint}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def _is_ultralytics(path: Path) -> bool:
    """Ultralytics checkpoints pickle ``ultralytics.nn.tasks`` classes; peek without unpickling."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            return bool(pickles) and b"ultralytics" in archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError, KeyError):
        return False


class UltralyticsDFL(nn.Module):
    """Drop-in for Ultralytics' ``DFL`` head module: ``[B, 4*R, A]`` → expected distances ``[B, 4, A]``
    through :func:`edgecv.models.yolo.expected_bin` (the same values; ONNX Runtime runs its export
    ~17x faster than the ``Transpose`` + ``Softmax(axis=1)`` the original traces to). The bins are read
    from the original's fixed 1x1 conv, so a checkpoint with other bin values keeps them."""

    def __init__(self, dfl: nn.Module) -> None:
        super().__init__()
        weight = dfl.conv.weight.detach().float()  # [1, R, 1, 1]
        self.register_buffer("bins", weight.reshape(-1, 1).clone())  # [R, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        return expected_bin(x.view(b, 4, self.bins.shape[0], a), self.bins)


def _fast_dfl(model: nn.Module) -> None:
    """Swap every Ultralytics ``DFL`` (a module named ``dfl`` with a 1x1 ``conv``) for :class:`UltralyticsDFL`."""
    for module in list(model.modules()):
        dfl = getattr(module, "dfl", None)
        if type(dfl).__name__ == "DFL" and isinstance(getattr(dfl, "conv", None), nn.Conv2d):
            module.dfl = UltralyticsDFL(dfl)


class UltralyticsDecoded(nn.Module):
    """Wrap an Ultralytics detection model: its [B, 4+C, N] cx,cy,w,h output → edgecv raw outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(images)
        out = out[0] if isinstance(out, (tuple, list)) else out
        cxcy, wh, scores = out[:, :2], out[:, 2:4], out[:, 4:]
        boxes = torch.cat((cxcy - wh / 2, cxcy + wh / 2), 1)
        return boxes.transpose(1, 2), scores.transpose(1, 2)


def _load_ultralytics(path: Path, trust: bool, class_names: list[str] | None) -> LoadedDetector:
    try:
        import ultralytics  # noqa: F401  (registers the pickled classes)
    except ImportError as exc:
        raise MissingDependencyError(f"{path} is an Ultralytics checkpoint; reading it needs the ultralytics "
                                     "package: pip install ultralytics") from exc
    if not trust:
        raise WeightsError(f"{path} is an Ultralytics checkpoint, which stores pickled Python code that "
                           "weights_only=True cannot load. If you trust its origin, pass --trust-weights.")
    raw = load_raw(path, trust=True)
    model = (raw.get("ema") or raw.get("model")) if isinstance(raw, dict) else None
    if model is None:
        raise WeightsError(f"{path}: expected an Ultralytics checkpoint with a 'model' entry, found {type(raw).__name__}")
    model = model.float().eval()
    for module in model.modules():  # export mode: the head returns one decoded tensor
        if hasattr(module, "export"):
            module.export = True
        if hasattr(module, "format"):
            module.format = "onnx"
    _fast_dfl(model)
    names = model.names if isinstance(model.names, list) else [model.names[i] for i in sorted(model.names)]
    names = _renamed(path, [str(n) for n in names], class_names)
    imgsz = int(raw.get("train_args", {}).get("imgsz", 640)) if isinstance(raw.get("train_args"), dict) else 640
    return LoadedDetector(module=UltralyticsDecoded(model).eval(), class_names=names, imgsz=imgsz,
                          family="ultralytics-yolo", source=str(path), sha256=sha256_file(path), is_demo=False)
