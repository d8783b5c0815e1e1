"""edgecv's own U-Net for semantic segmentation (label maps), and loading it for export.

Encoder of ``depth`` levels (two 3x3 Conv-BN-ReLU per level, 2x2 max-pool between levels),
decoder mirroring it: 2x2 transposed convolution (stride 2) upsampling, the encoder feature of
the same level *concatenated* (skip connection), two 3x3 Conv-BN-ReLU; a 1x1 convolution gives
per-class logits. Channels double per level from ``width``.

Input: float32 [B,3,H,W] RGB in [0,1] (H, W multiples of ``2**depth``).
Output: logits float32 [B,C,H,W] at the input resolution, C = number of classes (class 0 =
background on the synthetic set).

Sizes: ``width=8, depth=4`` (the default, ~0.49 M parameters, ~1 MB in fp16; ``width=16``: 1.9 M, 3.7 MB) and ``width=4``
(tests, ~0.12 M).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgecv.errors import WeightsError

DEMO_WEIGHTS = "unet_shapes.pt"
DEFAULT_WIDTH = 8
TINY_WIDTH = 4


@dataclass(frozen=True)
class UNetConfig:
    """Architecture hyper-parameters; stored in every edgecv U-Net checkpoint."""

    num_classes: int = 6
    width: int = DEFAULT_WIDTH
    depth: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 Conv (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net: images float32 [B,3,H,W] → logits float32 [B,C,H,W] (see module docstring)."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        chans = [config.width * 2**i for i in range(config.depth + 1)]
        self.down = nn.ModuleList(_block(c_in, c_out) for c_in, c_out in zip([3, *chans[:-2]], chans[:-1]))
        self.pool = nn.MaxPool2d(2)
        self.bottom = _block(chans[-2], chans[-1])
        # Transposed convolution halves the channels while doubling H and W; the skip restores them.
        self.up = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in reversed(chans[1:]))
        self.fuse = nn.ModuleList(_block(c, c // 2) for c in reversed(chans[1:]))
        self.head = nn.Conv2d(chans[0], config.num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips = []
        x = images
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips)):
            x = fuse(torch.cat((up(x), skip), 1))
        return self.head(x)


def demo_weights_path() -> Path:
    """Path of the U-Net demo weights shipped inside the package (trained on synthetic shapes)."""
    return Path(str(resources.files("edgecv.models") / "weights" / DEMO_WEIGHTS))


def load_unet(weights: str | Path | None = None, *, trust: bool = False, class_names: list[str] | None = None,
              **_: Any) -> "LoadedDetector":
    """Load an edgecv U-Net checkpoint for export (``weights`` None: the packaged demo weights).

    The checkpoint carries its architecture and class names; ``class_names`` renames them (same
    count). Raises :class:`WeightsError` for a missing demo file, another family or a malformed
    checkpoint (one line: expected vs found).
    """
    from edgecv.fileio import sha256_file
    from edgecv.models.base import LoadedDetector
    from edgecv.models.checkpoint import load_checkpoint

    path = Path(weights) if weights is not None else demo_weights_path()
    if weights is None and not path.is_file():
        raise WeightsError(f"expected the U-Net demo weights at {path}, found no file; train them with "
                           "`edgecv train unet --out unet_shapes.pt` and pass --weights")
    raw = load_checkpoint(path, "unet", trust=trust)
    config = _config(path, raw.get("config"))
    names = raw.get("class_names")
    if not (isinstance(names, list) and len(names) == config.num_classes):
        raise WeightsError(f"{path}: expected {config.num_classes} class names, found {names!r}")
    if class_names is not None:
        if len(class_names) != config.num_classes:
            raise WeightsError(f"--names: expected {config.num_classes} names for {path}, found {len(class_names)}")
        names = list(class_names)
    model = UNet(config)
    try:
        model.load_state_dict({k: v.float() for k, v in raw["state_dict"].items()})
    except (RuntimeError, AttributeError, KeyError) as exc:
        raise WeightsError(f"{path}: expected U-Net weights for {config}, found ones that do not fit "
                           f"({str(exc).splitlines()[0]})") from exc
    record = raw.get("train") if isinstance(raw.get("train"), dict) else {}
    return LoadedDetector(module=model.eval(), class_names=names, imgsz=int(raw.get("imgsz", 128)),
                          family=f"edgecv-unet-w{config.width}", source=str(path), sha256=sha256_file(path),
                          is_demo=weights is None, task="semantic", pad_value=114,
                          training={str(k): v for k, v in record.items() if isinstance(v, (str, int, float, bool))})


def _config(path: Path, value: Any) -> UNetConfig:
    """The checkpoint's config dict as a :class:`UNetConfig` (WeightsError when malformed)."""
    try:
        config = UNetConfig(**value)
    except TypeError as exc:
        raise WeightsError(f"{path}: expected a U-Net config {{num_classes, width, depth}}, found {value!r}") from exc
    if not all(isinstance(v, int) and v > 0 for v in asdict(config).values()):
        raise WeightsError(f"{path}: expected positive integers in the U-Net config, found {asdict(config)}")
    return config
