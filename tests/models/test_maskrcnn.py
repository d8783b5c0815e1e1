"""edgecv's tiny Mask R-CNN: training (two steps on tiny images), continuing a run, the shipped weights,
and box + mask mAP of the exported artifact vs the PyTorch model through the same pipeline."""

import pytest
import torch

from edgecv.errors import OptionError, WeightsError
from edgecv.models.checkpoint import load_checkpoint, save_checkpoint
from edgecv.models.maskrcnn_tiny import BUILDER, TinyConfig, demo_weights_path, load_tiny, wants_tiny
from edgecv.models.maskrcnn_train import MaskRCNNTrainOptions, best_path, train_maskrcnn

TINY = ["--imgsz", "64", "--epoch-size", "2", "--batch", "1", "--val-count", "1", "--threads", "2"]


def _train(*args):
    from typer.testing import CliRunner

    from edgecv.cli import app

    return CliRunner().invoke(app, ["train", "maskrcnn", *map(str, args)])


def test_two_steps_write_a_checkpoint_that_continues_and_exports(tmp_path):
    out = tmp_path / "m.pt"
    result = _train("--epochs", 1, "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    raw = load_checkpoint(out, BUILDER)
    assert [row["epoch"] for row in raw["curve"]] == [1] and raw["resume"]["it"] == 2
    assert {"loss", "mask", "box_map", "mask_map"} <= set(raw["curve"][0])
    assert raw["train"]["epochs"] == 1 and "command" in raw["train"]  # (the CLI records sys.argv)
    result = _train("--epochs", 2, "--out", out, "--continue", *TINY)  # a second session goes on
    assert result.exit_code == 0 and "continuing" in result.output, result.output
    raw = load_checkpoint(out, BUILDER)
    assert [row["epoch"] for row in raw["curve"]] == [1, 2] and raw["resume"]["it"] == 4
    best = load_checkpoint(best_path(out), BUILDER)
    assert all(v.dtype == torch.float16 for v in best["state_dict"].values() if v.is_floating_point())
    assert "resume" not in best  # the file to ship holds the EMA weights only
    loaded = load_tiny(best_path(out))
    assert loaded.imgsz == 64 and loaded.class_names[0] == "__background__" and loaded.extra["builder"] == BUILDER
    assert wants_tiny("maskrcnn", best_path(out)) and not wants_tiny("fasterrcnn", None)
    with pytest.raises(OptionError, match="--continue .*imgsz 96"):
        train_maskrcnn(out, MaskRCNNTrainOptions(imgsz=96, epochs=3), resume=True)


def test_other_architecture_or_family_is_refused(tmp_path):
    other = save_checkpoint(tmp_path / "w.pt", family=BUILDER, config={**TinyConfig().to_dict(), "blocks": 2},
                            class_names=["__background__", "a"], imgsz=64, state_dict={})
    with pytest.raises(WeightsError, match="expected the tiny Mask R-CNN architecture"):
        load_tiny(other)
    yolo = save_checkpoint(tmp_path / "y.pt", family="yolo", config={}, class_names=["a"], imgsz=64, state_dict={})
    with pytest.raises(WeightsError, match="expected a 'maskrcnn_tiny' checkpoint, found family 'yolo'"):
        load_tiny(yolo)


def test_builder_names_keep_working():
    from edgecv.models.tv_twostage import resolve_builder

    assert resolve_builder("maskrcnn") == "maskrcnn_resnet50_fpn" and resolve_builder(BUILDER) == BUILDER
    assert not wants_tiny("maskrcnn_resnet50_fpn", None)


@pytest.mark.skipif(not demo_weights_path().is_file(), reason="no shipped tiny Mask R-CNN weights in this checkout")
def test_shipped_weights_export_and_eval_box_and_mask_map(tmp_path):
    """`edgecv export maskrcnn` (no arguments) -> a segment artifact; on a few synthetic val images its box
    and mask mAP match the PyTorch model's through the same pre/post-processing."""
    from typer.testing import CliRunner

    from edgecv.cli import app
    from edgecv.evaluation import evaluate_model

    assert demo_weights_path().stat().st_size < 10e6
    out = tmp_path / "maskrcnn.onnx"
    result = CliRunner().invoke(app, ["export", "maskrcnn", "--out", str(out), "--conf", "0.001", "--iou", "0.5",
                                      "--no-check"])
    assert result.exit_code == 0, result.output
    onnx_figures = evaluate_model(out, count=6)
    torch_figures = evaluate_model("maskrcnn", count=6, conf=0.001, iou=0.5)
    assert onnx_figures.mask_map50_95 > 0.3 and onnx_figures.map50_95 > 0.3
    assert abs(onnx_figures.mask_map50_95 - torch_figures.mask_map50_95) < 0.02
    assert abs(onnx_figures.map50_95 - torch_figures.map50_95) < 0.02
