"""Training of edgecv's U-Net on the built-in synthetic shapes set (semantic maps).

Like the YOLO's training (:mod:`edgecv.models.yolo_train`): every epoch draws fresh scenes, AdamW
with linear warm-up then cosine decay, EMA of the weights (the EMA is saved, in fp16). Loss:
per-pixel cross-entropy. After every epoch the EMA model's mIoU on the synthetic ``val`` split
(never drawn in training) is printed and stored in the checkpoint's ``train["curve"]``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset

from edgecv.data.synthetic import CLASS_NAMES, ShapesDataset
from edgecv.evaluation import evaluate_semantic
from edgecv.models.checkpoint import save_checkpoint
from edgecv.models.unet import DEFAULT_WIDTH, UNet, UNetConfig
from edgecv.models.yolo_train import ModelEma, _lr_at, _optimizer, _Scenes, image_tensor

#: Label map classes of the synthetic set: 0 = background, k + 1 = shape class k.
SEMANTIC_NAMES: tuple[str, ...] = ("background", *CLASS_NAMES)


@dataclass
class UNetTrainOptions:
    """Options of :func:`train_unet` (recorded in the checkpoint for reproduction)."""

    width: int = DEFAULT_WIDTH
    depth: int = 4
    imgsz: int = 128
    epochs: int = 20
    epoch_size: int = 1000
    batch: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    seed: int = 0
    threads: int = 2
    workers: int = 1
    val_count: int = 100
    init: str = ""  # an edgecv U-Net checkpoint to start from (continue a run with a fresh schedule)


class _Maps(_Scenes):
    """Torch view of ShapesDataset: (image float32 [3,H,W] RGB [0,1], label map int64 [H,W])."""

    def __getitem__(self, index: int):
        sample = self.shapes[index]
        return image_tensor(sample.image), torch.from_numpy(sample.semantic.astype(np.int64))


def torch_segmenter(model: torch.nn.Module):
    """``list[BGR uint8 image] -> list[label map int [H,W]]`` for square images of the model's size."""

    @torch.no_grad()
    def segment(images):
        rgb = np.stack([cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im in images]).transpose(0, 3, 1, 2)
        logits = model.eval()(torch.from_numpy(np.ascontiguousarray(rgb)).float().div_(255))
        return list(logits.argmax(1).numpy())

    return segment


def train_unet(out: str | Path, opts: UNetTrainOptions, console: Console | None = None,
               command: str = "") -> Path:
    """Train a U-Net on synthetic shapes; saves the EMA weights to ``out`` (.pt) after every epoch."""
    console = console or Console()
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    model = UNet(UNetConfig(len(SEMANTIC_NAMES), opts.width, opts.depth))
    if opts.init:
        from edgecv.models.checkpoint import load_checkpoint

        model.load_state_dict({k: v.float() for k, v in load_checkpoint(opts.init, "unet")["state_dict"].items()})
    ema = ModelEma(model, decay=0.995, tau=100.0)  # short runs: a window of ~200 steps
    optimizer = _optimizer(model, opts)  # duck-typed: reads lr and weight_decay
    scenes = _Maps(ShapesDataset("train", opts.epochs * opts.epoch_size, opts.imgsz, seed=opts.seed))
    total = opts.epochs * (opts.epoch_size // opts.batch)
    it, start, curve = 0, time.time(), []
    for epoch in range(opts.epochs):
        loader = DataLoader(Subset(scenes, range(epoch * opts.epoch_size, (epoch + 1) * opts.epoch_size)),
                            batch_size=opts.batch, shuffle=False, drop_last=True, num_workers=opts.workers)
        model.train()
        loss_sum = 0.0
        for images, maps in loader:
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(it, total, opts)
            loss = F.cross_entropy(model(images), maps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.update(model)
            loss_sum += float(loss.detach())
            it += 1
        score = evaluate_semantic(torch_segmenter(ema.ema), SEMANTIC_NAMES, count=opts.val_count,
                                  imgsz=opts.imgsz, seed=opts.seed)
        curve.append({"epoch": epoch + 1, "loss": round(loss_sum / max(1, len(loader)), 4),
                      "miou": round(score.miou, 4), "seconds": round(time.time() - start)})
        console.print(f"epoch {epoch + 1}/{opts.epochs}  loss {curve[-1]['loss']:.4f}  val mIoU {score.miou:.4f}  "
                      f"pixel acc {score.pixel_accuracy:.4f}  {curve[-1]['seconds']}s")
        save_checkpoint(out, family="unet", config=model.config.to_dict(), class_names=list(SEMANTIC_NAMES),
                        imgsz=opts.imgsz, state_dict=ema.ema.state_dict(),
                        train={**asdict(opts), "epochs_done": epoch + 1, "command": command,
                               "val_miou": round(score.miou, 4)},
                        curve=curve)
    return Path(out)
