"""Loading YOLO weights for export: edgecv checkpoints, plain state dicts, Ultralytics ``.pt``.

Every loader returns a :class:`~edgecv.models.base.LoadedDetector` whose module maps
images [B,3,H,W] float32 RGB [0,1] → (raw_boxes [B,N,4] x1,y1,x2,y2 pixels, raw_scores [B,N,C]).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import nn

from edgecv.errors import MissingDependencyError, WeightsError
from edgecv.models.base import LoadedDetector
from edgecv.models.checkpoint import load_raw, sha256_file
from edgecv.models.yolo import SIZES, Yolo, YoloConfig, YoloDecoded

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
        if raw.get("family") != "yolo":
            raise WeightsError(f"{path}: expected a 'yolo' checkpoint, found family {raw.get('family')!r}")
        config = YoloConfig(**raw["config"])
        names = _renamed(path, list(raw["class_names"]), class_names)
        state, imgsz = raw["state_dict"], int(raw.get("imgsz", 640))
    elif isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        if class_names is None:
            raise WeightsError(f"{path}: a plain state dict does not name its classes; pass --names")
        config, names, state, imgsz = YoloConfig(size, len(class_names)), list(class_names), raw, 640
    else:
        raise WeightsError(f"{path}: expected an edgecv YOLO checkpoint, a YOLO state dict or an Ultralytics "
                           f".pt, found {type(raw).__name__}")
    model = _build(config, state, path)
    return LoadedDetector(module=YoloDecoded(model).eval(), class_names=names, imgsz=imgsz,
                          family=f"edgecv-yolo{config.size}", source=str(path), sha256=sha256_file(path),
                          is_demo=weights is None, training=_training(raw))


def _training(raw: dict) -> dict:
    """The checkpoint's training record (``raw["train"]``: command, epochs, ...) for the artifact metadata."""
    record = raw.get("train")
    return {str(k): v for k, v in record.items() if isinstance(v, (str, int, float, bool))} if isinstance(record, dict) else {}


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
    names = model.names if isinstance(model.names, list) else [model.names[i] for i in sorted(model.names)]
    names = _renamed(path, [str(n) for n in names], class_names)
    imgsz = int(raw.get("train_args", {}).get("imgsz", 640)) if isinstance(raw.get("train_args"), dict) else 640
    return LoadedDetector(module=UltralyticsDecoded(model).eval(), class_names=names, imgsz=imgsz,
                          family="ultralytics-yolo", source=str(path), sha256=sha256_file(path), is_demo=False)
