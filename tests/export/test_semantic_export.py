"""Semantic segmentation export (task "semantic"): edgecv's U-Net and torchvision's mobile builders.

Real exports and real ONNX Runtime sessions at small sizes (64-128 px); the ResNet builders
belong in benchmarks. Random weights are perturbed (BatchNorm statistics) so label maps hold
more than one class and the pixel agreement compares something.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.errors import WeightsError
from edgecv.export.api import export_model
from edgecv.export.onnx_export import ExportOptions
from edgecv.metadata import METADATA_KEY
from edgecv.models.checkpoint import save_checkpoint
from edgecv.models.tv_segmentation import perturb_batchnorm
from edgecv.models.unet import TINY_WIDTH, UNet, UNetConfig


runner = CliRunner()


def _metadata(path) -> dict:
    model = onnx.load(str(path))
    return json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])




@pytest.fixture(scope="module")
def unet_ckpt(tmp_path_factory):
    """A tiny U-Net checkpoint (random weights, 6 classes) in edgecv's checkpoint format."""
    torch.manual_seed(0)
    model = perturb_batchnorm(UNet(UNetConfig(6, TINY_WIDTH, 4)))
    path = tmp_path_factory.mktemp("unet") / "unet_tiny.pt"
    names = ["background", "circle", "square", "triangle", "star", "cross"]
    return save_checkpoint(path, family="unet", config=model.config.to_dict(), class_names=names, imgsz=64,
                           state_dict=model.state_dict(), half=False)


@pytest.fixture(scope="module")
def unet_dynamic(unet_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("unet_dyn") / "model.onnx"
    return export_model("unet", unet_ckpt, out, ExportOptions(imgsz=64, dynamic=True, probs=True))


@pytest.fixture(scope="module")
def deeplab_state(tmp_path_factory):
    """A deeplabv3_mobilenet_v3_large state dict with 21 classes (random, BatchNorm perturbed),
    plus the torchvision-only auxiliary head entries a full checkpoint would carry."""
    from edgecv.models.tv_segmentation import build

    model = perturb_batchnorm(build("deeplabv3_mobilenet_v3_large", 21))
    state = {**model.state_dict(), "aux_classifier.4.weight": torch.zeros(21, 10, 1, 1)}
    path = tmp_path_factory.mktemp("deeplab") / "deeplab.pth"
    torch.save(state, path)
    return path


def test_unet_graph_contract(unet_dynamic):
    """labels [B,H,W] int32 and probs [B,C,H,W] float32 at a batch and a size other than the export's."""
    meta = _metadata(unet_dynamic.path)
    assert meta["task"] == "semantic" and meta["outputs"] == ["labels", "probs"]
    assert meta["class_names"][0] == "background" and meta["resize"] == "letterbox"
    session = _session(unet_dynamic.path)
    assert [o.name for o in session.get_outputs()] == ["labels", "probs"]
    x = np.random.default_rng(0).random((2, 3, 96, 64), dtype=np.float32)
    labels, probs = session.run(None, {"images": x})
    assert labels.shape == (2, 96, 64) and labels.dtype == np.int32
    assert probs.shape == (2, 6, 96, 64) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(1))
    ops = {n.op_type for n in onnx.load(str(unet_dynamic.path)).graph.node}
    assert "NonMaxSuppression" not in ops and {"ArgMax", "ConvTranspose", "Concat"} <= ops


def test_unet_fidelity_two_sizes_non_trivial(unet_dynamic):
    report = unet_dynamic.fidelity
    assert report["status"] == "passed" and set(report["sizes"]) == {"64x64", "96x64"}
    for figures in report["sizes"].values():
        assert figures["agreement"] >= 0.995
        assert figures["classes_seen"] >= 2 and figures["minority_share"] > 0  # compared more than one class
        assert figures["checks"] == {"logits": "passed", "probs": "passed", "labels": "passed"}
    assert _metadata(unet_dynamic.path)["fidelity"]["sizes"]["96x64"]["agreement"] >= 0.995


def test_node_count_independent_of_batch(unet_ckpt, tmp_path):
    counts = []
    for batch in (1, 3):
        result = export_model("unet", unet_ckpt, tmp_path / f"b{batch}.onnx", ExportOptions(imgsz=64, batch=batch))
        counts.append(len(onnx.load(str(result.path)).graph.node))
        labels = _session(result.path).run(None, {"images": np.zeros((batch, 3, 64, 64), np.float32)})[0]
        assert labels.shape == (batch, 64, 64)
    assert counts[0] == counts[1]


def test_deeplab_state_dict_exports_with_voc_names(deeplab_state, tmp_path):
    result = export_model("deeplabv3", deeplab_state, tmp_path / "m.onnx", ExportOptions(imgsz=64, dynamic=True))
    meta = result.metadata
    assert meta.task == "semantic" and meta.num_classes == 21 and meta.class_names[15] == "person"
    assert meta.model_family == "torchvision-deeplabv3_mobilenet_v3_large"
    assert meta.mean == [0.485, 0.456, 0.406] and meta.std == [0.229, 0.224, 0.225] and meta.color_order == "RGB"
    assert result.fidelity["passed"]
    for figures in result.fidelity["sizes"].values():
        assert figures["agreement"] >= 0.995 and figures["classes_seen"] >= 2
    labels = _session(result.path).run(None, {"images": np.zeros((2, 3, 96, 128), np.float32)})[0]
    assert labels.shape == (2, 96, 128) and labels.dtype == np.int32


def test_cli_export_lraspp_random_weights_never_pass_on_nothing(tmp_path):
    """`edgecv export lraspp --imgsz 128` exits 0. Random LRASPP weights label every pixel alike:
    the label criterion then says "not compared", the logits are still compared numerically."""
    out = tmp_path / "lraspp.onnx"
    result = runner.invoke(app, ["export", "lraspp", "--imgsz", "128", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "random weights" in result.output
    meta = _metadata(out)
    assert meta["task"] == "semantic" and meta["outputs"] == ["labels"] and len(meta["class_names"]) == 21
    figures = meta["fidelity"]["sizes"]["128x128"]
    assert figures["checks"]["logits"] == "passed" and figures["logits_tolerance_used"] <= 1.0
    if figures["classes_seen"] < 2:
        assert figures["checks"]["labels"] == "not compared" and meta["fidelity"]["status"] == "passed (logits only)"
    labels = _session(out).run(None, {"images": np.zeros((1, 3, 128, 128), np.float32)})[0]
    assert labels.shape == (1, 128, 128) and labels.dtype == np.int32


def test_int8_and_miou_eval(unet_ckpt, tmp_path):
    """`edgecv export unet --int8` on a semantic graph: QDQ graph, labels kept, mIoU fp32 vs int8 recorded;
    `edgecv eval` routes a semantic artifact to mIoU."""
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "unet", "--weights", str(unet_ckpt), "--imgsz", "64", "--out", str(out),
                                 "--int8", "--calib-samples", "32", "--eval-count", "16"])
    assert result.exit_code == 0, result.output
    int8 = tmp_path / "model_int8_onnxruntime.onnx"
    meta = _metadata(int8)
    assert meta["task"] == "semantic" and meta["precision"] == "int8"
    accuracy = meta["accuracy"]
    assert accuracy["metric"] == "miou" and 0.0 <= accuracy["int8"]["miou"] <= 1.0
    assert abs(accuracy["drop_points"] - 100 * (accuracy["fp32"]["miou"] - accuracy["int8"]["miou"])) < 1e-9
    graph = onnx.load(str(int8)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "ArgMax", "Cast"} <= ops and "NonMaxSuppression" not in ops
    assert [o.name for o in graph.output] == ["labels"]
    labels = _session(int8).run(None, {"images": np.zeros((1, 3, 64, 64), np.float32)})[0]
    assert labels.shape == (1, 64, 64) and labels.dtype == np.int32
    evaluated = runner.invoke(app, ["eval", str(out), "--count", "8", "--json", str(tmp_path / "miou.json")])
    assert evaluated.exit_code == 0, evaluated.output
    assert "mIoU" in evaluated.output
    assert 0.0 <= json.loads((tmp_path / "miou.json").read_text())["miou"] <= 1.0


def test_state_dict_of_another_builder_is_named(deeplab_state):
    from edgecv.models import load_for_export

    with pytest.raises(WeightsError) as info:
        load_for_export("lraspp", deeplab_state)
    message = str(info.value)
    assert "\n" not in message
    assert "expected a state dict of lraspp_mobilenet_v3_large" in message
    assert "edgecv export deeplabv3_mobilenet_v3_large" in message


def test_manifest_identifies_resnet_builders_without_building(tmp_path):
    """Zero tensors shaped from the stored manifest: fcn_resnet50 is recognised by names and shapes."""
    from edgecv.models import load_for_export
    from edgecv.models.tv_segmentation import identify, manifest

    entry = manifest()["builders"]["fcn_resnet50"]
    state = {k: torch.zeros(shape) for k, shape in entry["keys"].items()}
    assert identify(state) == ["fcn_resnet50"]
    path = tmp_path / "fcn.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="found one of fcn_resnet50: export it with `edgecv export fcn_resnet50"):
        load_for_export("deeplabv3_resnet50", path)


def test_wrong_state_dict_one_line_error(tmp_path):
    from edgecv.models import load_for_export

    path = tmp_path / "junk.pth"
    torch.save({"conv.weight": torch.zeros(3, 3), "head.bias": torch.zeros(2)}, path)
    with pytest.raises(WeightsError) as info:
        load_for_export("lraspp", path)
    message = str(info.value)
    assert "\n" not in message and "expected a state dict of lraspp_mobilenet_v3_large" in message
    assert "fits no torchvision segmentation builder" in message
    torch.save([1, 2], path)
    with pytest.raises(WeightsError, match="expected a state dict"):
        load_for_export("fcn", path)


def test_names_must_match_classifier(deeplab_state):
    from edgecv.models import load_for_export

    with pytest.raises(WeightsError, match="--names: expected 21 class names"):
        load_for_export("deeplabv3_mobilenet_v3_large", deeplab_state, class_names=["a", "b"])
    loaded = load_for_export("deeplabv3", deeplab_state, class_names=[f"c{i}" for i in range(21)])
    assert loaded.class_names[3] == "c3" and loaded.task == "semantic"


def test_manifest_matches_installed_torchvision():
    """The stored manifest is what the installed torchvision builds (regenerate with
    tools/tv_segmentation_manifest.py after an upgrade)."""
    from edgecv.models.tv_segmentation import build, manifest

    entry = manifest()["builders"]["lraspp_mobilenet_v3_large"]
    built = {k: list(v.shape) for k, v in build("lraspp_mobilenet_v3_large", 21).state_dict().items()}
    assert built == entry["keys"]
    assert set(entry["class_keys"]) == {"classifier.low_classifier.weight", "classifier.low_classifier.bias",
                                        "classifier.high_classifier.weight", "classifier.high_classifier.bias"}
