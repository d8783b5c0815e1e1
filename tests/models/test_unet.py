"""edgecv's U-Net: architecture, training on the synthetic set, checkpoint loading, mIoU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecv.errors import OptionError, WeightsError
from edgecv.evaluation import confusion_matrix, evaluate_semantic, miou_from_confusion
from edgecv.models.checkpoint import load_checkpoint, save_checkpoint
from edgecv.models.unet import DEFAULT_WIDTH, TINY_WIDTH, UNet, UNetConfig, load_unet


def test_shapes_skip_concat_and_transposed_upsampling():
    model = UNet(UNetConfig(6, TINY_WIDTH, 4)).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 64, 96))
    assert out.shape == (2, 6, 64, 96)
    assert len(model.up) == 4 and all(isinstance(m, torch.nn.ConvTranspose2d) for m in model.up)
    # after concatenation the fuse block reads twice the upsampled channels
    assert model.fuse[0][0].in_channels == 2 * model.up[0].out_channels


def test_default_width_fp16_under_10_mb():
    params = sum(p.numel() for p in UNet(UNetConfig(6, DEFAULT_WIDTH, 4)).parameters())
    assert params * 2 < 10e6


def test_miou_known_values():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 2, 0]])
    confusion = confusion_matrix(pred, truth, 3)
    assert confusion.sum() == 7  # the 255 (void) pixel is ignored
    result = miou_from_confusion(confusion, ["bg", "a", "b"])
    # bg: tp 3, fp 0, fn 1 -> 3/4; a: tp 2, fp 1, fn 1 -> 2/4; b: tp 0, fp 1 -> 0
    assert result.per_class == pytest.approx({"bg": 0.75, "a": 0.5, "b": 0.0})
    assert result.miou == pytest.approx(1.25 / 3) and result.pixel_accuracy == pytest.approx(5 / 7)
    with pytest.raises(OptionError, match="expected equal shapes"):
        confusion_matrix(pred[:1], truth, 3)


def test_perfect_segmenter_scores_one():
    from edgecv.data.synthetic import ShapesDataset

    shapes = ShapesDataset("val", 4, 64, seed=0)
    truth = iter([shapes[i].semantic for i in range(4)])
    names = ["background", "circle", "square", "triangle", "star", "cross"]
    result = evaluate_semantic(lambda images: [next(truth) for _ in images], names, count=4, imgsz=64, batch=2)
    assert result.miou == 1.0 and result.images == 4


def test_short_training_run_writes_a_loadable_checkpoint(tmp_path):
    from edgecv.models.unet_train import UNetTrainOptions, train_unet

    out = train_unet(tmp_path / "u.pt", UNetTrainOptions(width=TINY_WIDTH, imgsz=64, epochs=2, epoch_size=16, batch=8,
                                                         warmup_iters=2, workers=0, val_count=4))
    raw = load_checkpoint(out, "unet")
    assert [row["epoch"] for row in raw["curve"]] == [1, 2] and all(0 <= r["miou"] <= 1 for r in raw["curve"])
    loaded = load_unet(out)
    assert loaded.task == "semantic" and loaded.imgsz == 64 and loaded.class_names[0] == "background"
    with pytest.raises(WeightsError, match="--names: expected 6 names"):
        load_unet(out, class_names=["a"])


def test_wrong_family_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "y.pt", family="yolo", config={}, class_names=["a"], imgsz=64, state_dict={})
    with pytest.raises(WeightsError, match="expected a 'unet' checkpoint, found family 'yolo'"):
        load_unet(path)


def test_no_argument_unet_uses_the_packaged_demo_weights(tmp_path, monkeypatch):
    """`edgecv export unet` with no --weights: the packaged demo checkpoint, or (when the package has
    none) a one-line error saying how to train one."""
    from edgecv.models import load_for_export
    from edgecv.models import unet as unet_module

    if unet_module.demo_weights_path().is_file():
        loaded = load_for_export("unet")
        assert loaded.is_demo and loaded.task == "semantic" and loaded.training.get("command", "").startswith("edgecv train unet")
        assert unet_module.demo_weights_path().stat().st_size < 10e6
    monkeypatch.setattr(unet_module, "demo_weights_path", lambda: tmp_path / "absent.pt")
    with pytest.raises(WeightsError, match="expected the U-Net demo weights at .*absent.pt, found no file; train them"):
        load_for_export("unet")
