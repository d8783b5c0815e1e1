import pytest
import torch

from edgecv.errors import UnknownModelError, WeightsError
from edgecv.models import load_for_export
from edgecv.models.checkpoint import load_checkpoint, save_checkpoint
from edgecv.models.yolo import Yolo, YoloConfig
from edgecv.models.yolo_io import demo_weights_path


def test_demo_weights_ship_with_the_package():
    path = demo_weights_path()
    assert path.is_file() and path.stat().st_size < 8 * 1024 * 1024
    ckpt = load_checkpoint(path, "yolo")  # weights_only=True
    assert ckpt["class_names"] and "command" in ckpt["train"]
    detector = load_for_export("yolo")
    assert detector.is_demo and detector.class_names == ckpt["class_names"]


def test_checkpoint_round_trip(tmp_path):
    model = Yolo(YoloConfig("n", 3))
    path = save_checkpoint(tmp_path / "w.pt", family="yolo", config=model.config.to_dict(),
                           class_names=["a", "b", "c"], imgsz=160, state_dict=model.state_dict())
    detector = load_for_export("yolo", path)
    assert detector.class_names == ["a", "b", "c"] and detector.imgsz == 160 and not detector.is_demo
    x = torch.rand(1, 3, 64, 64)
    boxes, scores = detector.module(x)
    assert scores.shape[-1] == 3


def test_plain_state_dict_needs_names_and_matching_class_count(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(Yolo(YoloConfig("n", 5)).state_dict(), path)
    with pytest.raises(WeightsError, match="--names"):
        load_for_export("yolo", path)
    with pytest.raises(WeightsError, match="another class count"):
        load_for_export("yolo", path, class_names=["a", "b", "c"])
    assert load_for_export("yolo", path, class_names=list("abcde")).class_names == list("abcde")


def test_wrong_class_names_for_edgecv_checkpoint():
    with pytest.raises(WeightsError, match="trained for 5 classes"):
        load_for_export("yolo", None, class_names=["x", "y"])


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_bad_weights_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_for_export("yolo", tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(WeightsError, match="expected a PyTorch checkpoint"):
        load_for_export("yolo", corrupt)
    pickled = tmp_path / "pickled.pt"
    torch.save({"obj": Evil()}, pickled)
    with pytest.raises(WeightsError, match="--trust-weights"):
        load_for_export("yolo", pickled)
    with pytest.raises(UnknownModelError, match="yolo"):
        load_for_export("resnet")
