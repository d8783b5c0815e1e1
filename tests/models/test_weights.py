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


def _checkpoint(tmp_path, name: str, **changes) -> str:
    """The demo checkpoint with some entries replaced (None: removed), saved as ``name``."""
    raw = torch.load(demo_weights_path(), map_location="cpu", weights_only=True)
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    torch.save(raw, tmp_path / name)
    return str(tmp_path / name)


def _bad_state(tmp_path) -> str:
    raw = torch.load(demo_weights_path(), map_location="cpu", weights_only=True)
    state = dict(raw["state_dict"])
    state["head.cls.0.2.weight"] = torch.zeros(7, *state["head.cls.0.2.weight"].shape[1:])
    return _checkpoint(tmp_path, "shapes.pt", state_dict=state)


@pytest.mark.parametrize(("make", "message"), [
    (lambda t: _checkpoint(t, "noconfig.pt", config=None),
     r"checkpoint 'config': expected a dict with keys \['size', 'num_classes', 'reg_max'\], found no 'config' entry"),
    (lambda t: _checkpoint(t, "bogus.pt", config={"size": "n", "num_classes": 5, "reg_max": 16, "bogus": 1}),
     r"checkpoint 'config': expected only keys \['size', 'num_classes', 'reg_max'\], found unknown \['bogus'\]"),
    (lambda t: _checkpoint(t, "size.pt", config={"size": "xl", "num_classes": 5}),
     r"checkpoint config 'size': expected one of \['m', 'n', 's'\], found 'xl'"),
    (lambda t: _checkpoint(t, "ncls.pt", config={"size": "n", "num_classes": "5"}),
     r"checkpoint config 'num_classes': expected an integer in \[1, 100000\], found '5'"),
    (lambda t: _checkpoint(t, "names.pt", class_names="circle"),
     "checkpoint 'class_names': expected a non-empty list of strings, found 'circle'"),
    (lambda t: _checkpoint(t, "count.pt", class_names=["a", "b"]),
     r"checkpoint 'class_names': expected 5 names \(config num_classes\), found 2"),
    (lambda t: _checkpoint(t, "nostate.pt", state_dict=None),
     "checkpoint 'state_dict': expected a dict of tensor names to tensors, found None"),
    (lambda t: _checkpoint(t, "imgsz.pt", imgsz=300), "checkpoint 'imgsz': expected a positive multiple of 32"),
    (lambda t: _checkpoint(t, "version.pt", version=9), "checkpoint version 9 is newer than this edgecv"),
    (_bad_state, r"tensor head.cls.0.2.weight expected shape \(5, .*\), found \(7, .*\) \(weights for another"),
    (lambda t: (torch.save([1, 2, 3], t / "list.pt"), str(t / "list.pt"))[1],
     "expected an edgecv YOLO checkpoint, a YOLO state dict or an Ultralytics .pt, found a list"),
    (lambda t: (torch.save(torch.zeros(3), t / "tensor.pt"), str(t / "tensor.pt"))[1],
     "found a Tensor"),
    (lambda t: (torch.save({"a": 1}, t / "dict.pt"), str(t / "dict.pt"))[1],
     r"found a dict with keys \['a'\]"),
])
def test_malformed_checkpoints_exit_2_with_one_line(tmp_path, make, message):
    """`edgecv export yolo --weights bad.pt`: one line naming what was expected and found, exit 2."""
    from typer.testing import CliRunner

    from edgecv.cli import app

    weights = make(tmp_path)
    result = CliRunner().invoke(app, ["export", "yolo", "--weights", weights, "--out", str(tmp_path / "m.onnx")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (KeyError, TypeError))
    import re

    assert re.search(message, text), text
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(WeightsError):
        load_for_export("yolo", weights)
