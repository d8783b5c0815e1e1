"""Lively random torchvision single-stage detectors for tests (no download, no training).

A freshly initialised torchvision detector is a poor test subject: its BatchNorm layers hold the
default running statistics (mean 0, var 1), so deep features die or saturate and every anchor
gets the same score whatever the image -- ties everywhere, nothing to compare. :func:`liven`
re-estimates the running statistics on a few synthetic scenes (train-mode forward passes of
backbone + head, no gradient: "BatchNorm recalibration"), scales every head convolution to unit
output std on those scenes (the head's 0.01-std init leaves logits that ignore the image) and spreads the classification biases so
that some classes score above the export threshold. The scores then depend on the image, are
distinct, and a fidelity comparison has hundreds of detections to match.

:func:`tiny_model` builds torchvision's RetinaNet / FCOS classes around a ResNet-18 body with a
64-channel FPN (FCOS's GroupNorm(32) needs 2+ values per group on the 1x1 P7 map): the same heads, anchors, box coders and post-processing as the ResNet-50 builders,
at a cost the tests can afford on a shared 2-core CPU (the ResNet-50 builders belong in benchmarks/).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def liven(model: nn.Module, imgsz: int, mean: tuple, std: tuple, seed: int = 0,
          bias: tuple[float, float] = (-3.0, 3.0)) -> nn.Module:
    """Recalibrate ``model``'s BatchNorm statistics on synthetic scenes, spread its class biases; eval mode."""
    from edgecv.export.fidelity import default_images

    torch.manual_seed(seed)
    images = np.stack(default_images(imgsz, 4))[..., ::-1].astype(np.float32) / 255  # BGR -> RGB, [0, 1]
    tensor = (torch.from_numpy(images.copy()).permute(0, 3, 1, 2) - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    model.eval()
    for module in model.modules():  # only BatchNorm learns statistics (GroupNorm has none; 1x1 maps refuse train mode)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train()
    scaled: set[int] = set()  # heads run their convs once per pyramid level: scale on the first (largest) only
    hooks = [conv.register_forward_hook(lambda c, i, o: _unit_std(c, o, scaled))
             for conv in model.head.modules() if isinstance(conv, nn.Conv2d)]
    with torch.no_grad():
        features = model.backbone(tensor)
        model.head(list(features.values()) if isinstance(features, dict) else [features])
    for hook in hooks:
        hook.remove()
    for module in model.modules():  # a near-dead channel's tiny variance would fold into huge conv weights
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_var.clamp_(min=1e-2)
    with torch.no_grad():
        for name, param in model.head.classification_head.named_parameters():
            if name.endswith("bias") and ("cls_logits" in name or "module_list" in name):
                param.uniform_(*bias)
    return model.eval()


def _unit_std(conv: nn.Conv2d, output: torch.Tensor, scaled: set[int]) -> torch.Tensor:
    """Forward hook: scale ``conv`` so this output has std 1 (torchvision's 0.01-std head init shrinks the
    signal layer after layer until the logits no longer depend on the image)."""
    if id(conv) in scaled:
        return output
    scaled.add(id(conv))
    std = float(output.std())
    if std > 0:
        conv.weight.div_(std)
        if conv.bias is not None:
            conv.bias.div_(std)
    return output / max(std, 1e-12)


def lively_state_dict(builder: str, imgsz: int, out: Path, num_classes: int = 91, seed: int = 0) -> Path:
    """Save a lively state dict of torchvision's ``builder`` (``num_classes`` head) to ``out``."""
    from edgecv.models.tv_single import SPECS, build

    torch.manual_seed(seed)
    spec = SPECS[builder]
    torch.save(liven(build(builder, num_classes), imgsz, spec.mean, spec.std, seed).state_dict(), out)
    return out


#: Class-logit biases of :func:`tiny_model`: a few hundred (image, class) scores above conf 0.3 on 8 scenes.
TINY_BIASES = {"retinanet": (-9.0, -4.0), "fcos": (-8.0, -3.0)}


def tiny_model(kind: str, num_classes: int = 91, imgsz: int = 128, seed: int = 0) -> nn.Module:
    """torchvision ``RetinaNet`` or ``FCOS`` (``kind``) on a ResNet-18 + 64-channel FPN (P3-P7), livened."""
    from torchvision.models import resnet18
    from torchvision.models.detection import FCOS, RetinaNet
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    from edgecv.models.tv_single import IMAGENET_MEAN, IMAGENET_STD

    torch.manual_seed(seed)
    backbone = BackboneWithFPN(resnet18(weights=None), {"layer2": "0", "layer3": "1", "layer4": "2"},
                               [128, 256, 512], 64, extra_blocks=LastLevelP6P7(64, 64))
    model = (RetinaNet if kind == "retinanet" else FCOS)(backbone, num_classes)
    return liven(model, imgsz, tuple(IMAGENET_MEAN), tuple(IMAGENET_STD), seed, TINY_BIASES[kind])
