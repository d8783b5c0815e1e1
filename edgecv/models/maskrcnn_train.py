"""Training of edgecv's tiny Mask R-CNN (:mod:`edgecv.models.maskrcnn_tiny`) on the synthetic shapes.

Like the YOLO's and the U-Net's training: every epoch draws fresh scenes (boxes, classes and
instance masks from :mod:`edgecv.data.synthetic`), AdamW with linear warm-up then cosine decay,
EMA of the weights. The loss is torchvision's own (RPN objectness + box, box-head class + box,
mask BCE). Every ``eval_every`` epochs the EMA model's box and mask mAP50-95 on the synthetic
``val`` split (never drawn in training) go into the learning curve.

Checkpoints (atomic, every epoch): ``out`` holds the EMA weights (fp32), the live weights and the
optimizer state, so ``resume=True`` continues the run -- in another session -- where it stopped
(same schedule when ``epochs`` is unchanged; a larger ``epochs`` stretches the cosine from the
current step). ``best`` (``out`` with ``_best`` before the suffix) holds the EMA weights of the
best-scoring evaluation, in fp16: the file to ship.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DataLoader, Dataset, Subset

from edgecv.data.synthetic import CLASS_NAMES, ShapesDataset
from edgecv.errors import OptionError
from edgecv.models.checkpoint import load_checkpoint, save_checkpoint
from edgecv.models.maskrcnn_tiny import BUILDER, TinyConfig
from edgecv.models.tv_twostage import IMAGENET_MEAN, IMAGENET_STD, TwoStageConfig, build_torchvision
from edgecv.models.yolo_train import ModelEma, _lr_at, _optimizer, image_tensor

#: Class names of the model: torchvision counts the background as class 0.
NAMES: tuple[str, ...] = ("__background__", *CLASS_NAMES)


@dataclass
class MaskRCNNTrainOptions:
    """Options of :func:`train_maskrcnn` (recorded in the checkpoint for reproduction)."""

    imgsz: int = 256
    epochs: int = 30
    epoch_size: int = 800
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_iters: int = 200
    seed: int = 0
    threads: int = 2
    workers: int = 0  # drawing a scene (~12 ms) is cheap beside a step (~1 s); no extra process on a shared CPU
    val_count: int = 100
    eval_every: int = 1
    max_minutes: float = 0.0  # > 0: stop after the epoch that passes this many minutes (this session)
    init_yolo: str = "demo"  # the YOLO-n checkpoint whose backbone starts the run ("demo": the shipped one; "": none)


class _Instances(Dataset):
    """Torch view of ShapesDataset: ``(image float32 [3,H,W] RGB ImageNet-normalised, target)`` with
    target ``boxes float32 [n,4] x1,y1,x2,y2``, ``labels int64 [n]`` (1..5), ``masks uint8 [n,H,W]``."""

    def __init__(self, shapes: ShapesDataset) -> None:
        self.shapes = shapes
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        sample = self.shapes[index]
        image = (image_tensor(sample.image) - self.mean) / self.std
        return image, {"boxes": torch.from_numpy(sample.boxes).float(),
                       "labels": torch.from_numpy(sample.class_ids).long() + 1,
                       "masks": torch.from_numpy(sample.masks.astype(np.uint8))}


def _collate(batch: list) -> tuple[list, list]:
    return [b[0] for b in batch], [b[1] for b in batch]


def build_model(imgsz: int) -> torch.nn.Module:
    """The tiny Mask R-CNN as it trains and exports: transform an identity at ``imgsz``."""
    return build_torchvision(BUILDER, TwoStageConfig(imgsz=imgsz, conf=0.001, iou=0.5), len(NAMES))


def validate(model: torch.nn.Module, imgsz: int, count: int, seed: int = 0, max_det: int = 30) -> dict[str, float]:
    """Box and mask mAP50-95 / mAP50 of ``model`` (eval mode, conf 0.001, at most ``max_det``
    detections per image: scenes hold <= 8 shapes, and 100 masks per image would triple the time
    of every evaluation during training) on ``count`` val scenes."""
    from edgecv.evaluation import SyntheticCoco, evaluate
    from edgecv.export.twostage_predictor import TwoStageTorchPredictor

    cfg = TwoStageConfig(imgsz=imgsz, conf=0.001, iou=0.5, max_det=max_det)
    predictor = TwoStageTorchPredictor(model, cfg, NAMES, BUILDER)
    result = evaluate(predictor, SyntheticCoco(count, imgsz, seed=seed), class_names=list(NAMES), show_progress=False)
    return {"box_map": round(result.map50_95, 4), "box_map50": round(result.map50, 4),
            "mask_map": round(result.mask_map50_95 or 0.0, 4), "mask_map50": round(result.mask_map50 or 0.0, 4)}


def best_path(out: str | Path) -> Path:
    """Where the best evaluation's fp16 EMA weights go: ``runs/maskrcnn.pt`` -> ``runs/maskrcnn_best.pt``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_best{out.suffix}")


def _restore(path: Path, opts: MaskRCNNTrainOptions, model: torch.nn.Module, ema: ModelEma,
             optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Load a training checkpoint written by :func:`train_maskrcnn` into the live objects."""
    raw = load_checkpoint(path, BUILDER)
    state = raw.get("resume")
    if not isinstance(state, dict) or raw.get("imgsz") != opts.imgsz:
        raise OptionError(f"--continue {path}: expected a training checkpoint of this command at imgsz "
                          f"{opts.imgsz}, found {'no resume state' if not isinstance(state, dict) else raw.get('imgsz')}")
    model.load_state_dict(state["model"])
    ema.ema.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in raw["state_dict"].items()})
    ema.updates = int(state["ema_updates"])
    optimizer.load_state_dict(state["optimizer"])
    return {"epoch": int(state["epoch"]), "it": int(state["it"]), "curve": list(raw.get("curve", [])),
            "best": float(state.get("best", -1.0))}


def train_maskrcnn(out: str | Path, opts: MaskRCNNTrainOptions, console: Console | None = None,
                   command: str = "", resume: bool = False) -> Path:
    """Train the tiny Mask R-CNN on synthetic shapes; writes ``out`` every epoch (resumable) and
    :func:`best_path` at every better evaluation (score: mean of box and mask mAP50-95)."""
    console = console or Console()
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    out = Path(out)
    model = build_model(opts.imgsz)
    if opts.init_yolo and not resume:  # the YOLO demo already learnt these shapes: start from its backbone
        from edgecv.models.maskrcnn_tiny import init_from_yolo

        console.print(f"backbone initialised from {init_from_yolo(model, None if opts.init_yolo == 'demo' else opts.init_yolo)}")
    ema = ModelEma(model, decay=0.99, tau=50.0)  # runs of a few thousand steps: a window of ~100
    optimizer = _optimizer(model, opts)  # duck-typed: reads lr and weight_decay
    done = {"epoch": 0, "it": 0, "curve": [], "best": -1.0}
    if resume:
        done = _restore(out, opts, model, ema, optimizer)
        console.print(f"continuing {out} after epoch {done['epoch']} (step {done['it']})")
    scenes = _Instances(ShapesDataset("train", opts.epochs * opts.epoch_size, opts.imgsz, seed=opts.seed))
    total = opts.epochs * (opts.epoch_size // opts.batch)
    schedule = replace(opts, warmup_iters=min(opts.warmup_iters, max(1, total // 10)))  # short runs: short warm-up
    it, curve, best, start = done["it"], done["curve"], done["best"], time.time()
    for epoch in range(done["epoch"], opts.epochs):
        loader = DataLoader(Subset(scenes, range(epoch * opts.epoch_size, (epoch + 1) * opts.epoch_size)),
                            batch_size=opts.batch, shuffle=False, drop_last=True, num_workers=opts.workers,
                            collate_fn=_collate)
        sums = _train_epoch(model, ema, optimizer, loader, it, total, schedule)
        it += len(loader)
        row: dict[str, Any] = {"epoch": epoch + 1, **{k: round(v, 4) for k, v in sums.items()},
                               "minutes": round((time.time() - start) / 60, 1)}
        last = epoch + 1 == opts.epochs or _out_of_time(start, opts)
        if (epoch + 1) % opts.eval_every == 0 or last:
            row.update(validate(ema.ema, opts.imgsz, opts.val_count, opts.seed))
        curve.append(row)
        console.print("  ".join(f"{k} {v}" for k, v in row.items()))
        score = (row["box_map"] + row["mask_map"]) / 2 if "box_map" in row else -1.0
        record = {**asdict(opts), "epochs_done": epoch + 1, "command": command}
        common = dict(family=BUILDER, config=TinyConfig().to_dict(), class_names=list(NAMES), imgsz=opts.imgsz,
                      curve=curve)
        if score > best:
            best = score
            save_checkpoint(best_path(out), state_dict=ema.ema.state_dict(), half=True,
                            train={**record, **{k: row[k] for k in ("box_map", "mask_map", "box_map50", "mask_map50")}},
                            **common)
        save_checkpoint(out, state_dict=ema.ema.state_dict(), half=False, train=record, **common,
                        resume={"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "ema_updates": ema.updates, "epoch": epoch + 1, "it": it, "best": best})
        if last:
            break
    return out


def _out_of_time(start: float, opts: MaskRCNNTrainOptions) -> bool:
    return opts.max_minutes > 0 and (time.time() - start) / 60 >= opts.max_minutes


def _train_epoch(model: torch.nn.Module, ema: ModelEma, optimizer: torch.optim.Optimizer, loader: DataLoader,
                 it: int, total: int, opts: MaskRCNNTrainOptions) -> dict[str, float]:
    """One pass over ``loader``; mean of each torchvision loss term (and their sum, ``loss``)."""
    model.train()
    sums: dict[str, float] = {}
    for step, (images, targets) in enumerate(loader):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(it + step, total, opts)
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        ema.update(model)
        for key, value in {"loss": loss, **losses}.items():
            short = key.replace("loss_", "")
            sums[short] = sums.get(short, 0.0) + float(value.detach())
    return {k: v / max(1, len(loader)) for k, v in sums.items()}


def options_from(values: dict[str, Any]) -> MaskRCNNTrainOptions:
    """:class:`MaskRCNNTrainOptions` from the keys it knows (a checkpoint's ``train`` record)."""
    known = {f.name for f in fields(MaskRCNNTrainOptions)}
    return MaskRCNNTrainOptions(**{k: v for k, v in values.items() if k in known})
