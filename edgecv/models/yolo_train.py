"""Training of edgecv's YOLO on the built-in synthetic shapes set.

Every epoch draws fresh scenes (the generator is infinite), so there is no augmentation pipeline
and no overfitting to a fixed pool. AdamW, linear warm-up then cosine decay, EMA of the weights
(the EMA is what gets saved).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DataLoader, Dataset

from edgecv.data.synthetic import CLASS_NAMES, ShapesDataset
from edgecv.models.checkpoint import save_checkpoint
from edgecv.models.yolo import Yolo, YoloConfig
from edgecv.models.yolo_loss import YoloLoss


@dataclass
class TrainOptions:
    """Options of :func:`train_yolo` (recorded in the checkpoint for reproduction)."""

    size: str = "n"
    imgsz: int = 320
    epochs: int = 30
    epoch_size: int = 2000
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_iters: int = 200
    seed: int = 0
    threads: int = 2
    workers: int = 1


class _Scenes(Dataset):
    """Torch view of ShapesDataset: (image float32 [3,H,W] RGB [0,1], boxes [n,4], labels [n])."""

    def __init__(self, shapes: ShapesDataset) -> None:
        self.shapes = shapes

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int):
        sample = self.shapes[index]
        return image_tensor(sample.image), torch.from_numpy(sample.boxes), torch.from_numpy(sample.class_ids).long()


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """A BGR uint8 [H,W,3] image as the training input: float32 [3,H,W] RGB in [0, 1]."""
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255)


def collate(batch):
    """Stack images; pad boxes [B,M,4], labels [B,M] and a validity mask [B,M]."""
    images = torch.stack([b[0] for b in batch])
    m = max(1, max(len(b[1]) for b in batch))
    boxes = torch.zeros(len(batch), m, 4)
    labels = torch.zeros(len(batch), m, dtype=torch.long)
    valid = torch.zeros(len(batch), m, dtype=torch.bool)
    for i, (_, b, l) in enumerate(batch):
        boxes[i, : len(b)], labels[i, : len(l)], valid[i, : len(l)] = b, l, True
    return images, boxes, labels, valid


class ModelEma:
    """Exponential moving average of a model's weights, with a warm-up ramp on the decay."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.9998, tau: float = 1000.0) -> None:
        self.ema = copy.deepcopy(model).eval()
        self.decay, self.tau, self.updates = decay, tau, 0
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        live = model.state_dict()
        for name, value in self.ema.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(live[name].detach(), alpha=1 - d)


def _optimizer(model: torch.nn.Module, opts: TrainOptions) -> torch.optim.Optimizer:
    """AdamW with weight decay on conv weights only (not on BatchNorm or biases)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            (decay if name == "weight" and param.ndim > 1 else no_decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=opts.lr, betas=(0.9, 0.999))


def _lr_at(it: int, total: int, opts: TrainOptions) -> float:
    if it < opts.warmup_iters:
        return opts.lr * (it + 1) / opts.warmup_iters
    progress = (it - opts.warmup_iters) / max(1, total - opts.warmup_iters)
    return opts.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_yolo(out: str | Path, opts: TrainOptions, console: Console | None = None,
               command: str = "") -> Path:
    """Train a YOLO of ``opts.size`` on synthetic shapes; saves the EMA weights to ``out`` (.pt).

    A checkpoint is written at the end of every epoch, so an interrupted run keeps its progress.
    """
    console = console or Console()
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    model = Yolo(YoloConfig(opts.size, len(CLASS_NAMES)))
    model.head.init_biases(opts.imgsz)
    ema = ModelEma(model)
    loss_fn = YoloLoss(len(CLASS_NAMES), model.config.reg_max)
    optimizer = _optimizer(model, opts)
    scenes = ShapesDataset("train", opts.epochs * opts.epoch_size, opts.imgsz, seed=opts.seed)
    total = opts.epochs * (opts.epoch_size // opts.batch)
    it, start = 0, time.time()
    for epoch in range(opts.epochs):
        subset = torch.utils.data.Subset(_Scenes(scenes), range(epoch * opts.epoch_size, (epoch + 1) * opts.epoch_size))
        loader = DataLoader(subset, batch_size=opts.batch, shuffle=False, drop_last=True,
                            num_workers=opts.workers, collate_fn=collate)
        model.train()
        sums = {"box": 0.0, "cls": 0.0, "dfl": 0.0}
        for images, boxes, labels, valid in loader:
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(it, total, opts)
            loss, parts = loss_fn(model(images), labels, boxes, valid)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            ema.update(model)
            sums = {k: sums[k] + parts[k] for k in sums}
            it += 1
        n = max(1, len(loader))
        console.print(f"epoch {epoch + 1}/{opts.epochs}  " + "  ".join(f"{k} {v / n:.4f}" for k, v in sums.items())
                      + f"  lr {optimizer.param_groups[0]['lr']:.2e}  {time.time() - start:.0f}s")
        save_checkpoint(out, family="yolo", config=model.config.to_dict(), class_names=list(CLASS_NAMES),
                        imgsz=opts.imgsz, state_dict=ema.ema.state_dict(),
                        train={**asdict(opts), "epochs_done": epoch + 1, "command": command})
    return Path(out)
