"""torchvision single-stage detectors (SSDlite, RetinaNet, FCOS) through edgecv's export pipe.

Tiny configurations only: SSDlite320 (the real builder) at 128 / 192 px, RetinaNet and FCOS as
torchvision's own classes on a ResNet-18 + 32-channel FPN (:mod:`tv_fixtures`) at 128 / 160 px.
The fidelity reference is torchvision's own model (its post-processing included), never the rewrite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.errors import ExportError, OptionError, WeightsError
from edgecv.export.api import export_model
from edgecv.export.fidelity import mixed_images
from edgecv.export.onnx_export import ExportOptions, export_detector
from edgecv.models import LOADERS, TV_SINGLE_STAGE_BUILDERS, TV_SINGLE_STAGE_SHORT
from edgecv.models.tv_single import detector_from_model, load_tv_single
from edgecv.models.tv_weights import coco_names, fit, fitting_builders, manifest
from edgecv.runtimes import Predictor
from edgecv.runtimes.detections import Detections

sys.path.insert(0, str(Path(__file__).parent))
from tv_fixtures import lively_state_dict, tiny_model  # noqa: E402

SSDLITE = "ssdlite320_mobilenet_v3_large"
CONF = 0.1  # the lively random heads put hundreds of (image, class) scores above it
MIN_DETS = 100  # a comparison over fewer detections proves little


@pytest.fixture(scope="module")
def ssdlite_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lively_state_dict(SSDLITE, 128, tmp_path_factory.mktemp("tv") / "ssdlite.pt")


def _check_report(report: dict, size: int, min_dets: int = MIN_DETS) -> dict:
    """The fidelity figures at ``size``: torchvision was the reference and enough detections matched."""
    assert report["passed"] and report["status"] == "passed", report
    assert "reference" in report and "eval" in report["reference"]
    figures = report["sizes"][f"{size}x{size}"]
    assert figures["torch_dets"] >= min_dets and figures["onnx_dets"] >= min_dets, figures
    assert figures["matched"] >= 0.99
    return figures


def test_names_table() -> None:
    assert set(TV_SINGLE_STAGE_BUILDERS) | set(TV_SINGLE_STAGE_SHORT) <= set(LOADERS)
    assert set(TV_SINGLE_STAGE_SHORT.values()) <= set(TV_SINGLE_STAGE_BUILDERS)
    assert set(manifest()["builders"]) == set(TV_SINGLE_STAGE_BUILDERS)


@pytest.fixture(scope="module")
def ssdlite_128(ssdlite_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """``edgecv export ssdlite`` at 128 px with the fidelity check (the second size: the CLI test, 160 px)."""
    out = tmp_path_factory.mktemp("ssdlite") / "model.onnx"
    return export_model("ssdlite", ssdlite_weights, out, ExportOptions(imgsz=128, conf=CONF), warn_stale=False)


@pytest.mark.slow
def test_ssdlite_export_fidelity_and_predictor(ssdlite_128) -> None:
    _check_report(ssdlite_128.fidelity, 128)
    meta = ssdlite_128.metadata
    assert meta.model_family == SSDLITE and meta.resize == "stretch" and meta.mean == [0.5] * 3
    assert len(meta.class_names) == 80 and "N/A" not in meta.class_names and "__background__" not in meta.class_names
    assert meta.class_names[0] == "person" and meta.training["torchvision_labels"].startswith("1,2,3,")
    with Predictor(ssdlite_128.path, backend="onnxruntime") as predictor:
        dets = predictor(mixed_images(256)[0])  # an image twice the input size: boxes mapped back
    assert isinstance(dets, Detections) and len(dets) > 0
    assert set(dets.labels) <= set(meta.class_names)
    assert dets.boxes.min() >= 0 and dets.boxes[:, 2].max() <= 256 + 1e-3


def _node_ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.mark.slow
def test_batch2_graph_and_zero_detections(ssdlite_weights: Path, ssdlite_128, tmp_path: Path) -> None:
    one, two = ssdlite_128.path, tmp_path / "b2.onnx"
    export_model("ssdlite", ssdlite_weights, two, ExportOptions(imgsz=128, conf=CONF, batch=2, check=False),
                 warn_stale=False)
    ops1, ops2 = _node_ops(one), _node_ops(two)
    assert len(ops1) == len(ops2) and "Loop" not in ops2  # no per-image unrolling
    images = mixed_images(128)[:2]
    with Predictor(one, backend="onnxruntime") as p1, Predictor(two, backend="onnxruntime") as p2:
        singles, pair = [p1(image) for image in images], p2.predict_batch(images)
    for a, b in zip(singles, pair):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    # A threshold no softmax score reaches: every image has zero detections, nothing crashes.
    none = tmp_path / "none.onnx"
    result = export_model("ssdlite", ssdlite_weights, none, ExportOptions(imgsz=128, conf=0.999), warn_stale=False)
    assert result.fidelity["status"] == "passed (raw outputs only)"  # never "passed" on nothing
    assert result.fidelity["sizes"]["128x128"]["matched"] is None
    with Predictor(none, backend="onnxruntime") as predictor:
        assert all(len(d) == 0 for d in predictor.predict_batch(images))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["retinanet", "fcos"])
def test_retinanet_fcos_fidelity_two_sizes(kind: str, tmp_path: Path) -> None:
    model = tiny_model(kind)
    for imgsz in (128, 160):
        detector = detector_from_model(model, coco_names(), name=f"{kind}-tiny", imgsz=imgsz)
        out = tmp_path / f"{kind}{imgsz}.onnx"
        images = mixed_images(imgsz, many=2)  # 2 busy scenes, one with a single object, one empty
        result = export_detector(detector, out, ExportOptions(imgsz=imgsz, conf=0.3, max_candidates=None),
                                 fidelity_images=images)
        _check_report(result.fidelity, imgsz, min_dets=50)
        assert result.metadata.resize == "letterbox" and result.metadata.std == [0.229, 0.224, 0.225]
    with Predictor(out, backend="onnxruntime") as predictor:
        dets = predictor(mixed_images(160)[1])
    assert isinstance(dets, Detections) and len(dets) > 0


def test_manifest_identifies_builders(ssdlite_weights: Path) -> None:
    for builder, entry in manifest()["builders"].items():  # uninitialised tensors of the stored shapes
        state = {k: torch.empty(shape) for k, shape in entry["keys"].items()}
        assert fitting_builders(state) == [builder]
    state = torch.load(ssdlite_weights, weights_only=True)
    assert fit(SSDLITE, state) == (91, "")
    with pytest.raises(WeightsError, match=f"fits {SSDLITE}.*edgecv export {SSDLITE}") as info:
        load_tv_single("ssd300_vgg16", ssdlite_weights)
    assert "\n" not in str(info.value)


def test_custom_head_and_names(tmp_path: Path) -> None:
    path = lively_state_dict(SSDLITE, 128, tmp_path / "five.pt", num_classes=5)
    assert fit(SSDLITE, torch.load(path, weights_only=True)) == (5, "")
    detector = load_tv_single(SSDLITE, path, class_names=["a", "b", "c", "d"])  # background implied
    assert detector.class_names == ["a", "b", "c", "d"]
    assert load_tv_single(SSDLITE, path).class_names == ["class_1", "class_2", "class_3", "class_4"]
    with pytest.raises(OptionError, match="expected 5 .*found 2"):
        load_tv_single(SSDLITE, path, class_names=["a", "b"])
    with pytest.raises(WeightsError, match="--num-classes 7.*5 classes"):
        load_tv_single(SSDLITE, path, num_classes=7)


def test_bad_state_dicts(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    torch.save({"conv.weight": torch.zeros(3, 3)}, junk)
    with pytest.raises(WeightsError, match="fits no torchvision single-stage builder") as info:
        load_tv_single("retinanet_resnet50_fpn", junk)
    assert "\n" not in str(info.value)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(WeightsError, match="expected a torchvision state dict"):
        load_tv_single(SSDLITE, listed)
    result = CliRunner().invoke(app, ["export", "fcos", "--weights", str(junk), "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "fits no torchvision" in result.output


def test_dynamic_refused(ssdlite_weights: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--dynamic.*anchors"):
        export_model("ssdlite", ssdlite_weights, tmp_path / "d.onnx", ExportOptions(imgsz=128, dynamic=True))


@pytest.mark.slow
def test_cli_export_ssdlite(ssdlite_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.onnx"
    result = CliRunner().invoke(app, ["export", "ssdlite", "--imgsz", "160", "--weights", str(ssdlite_weights),
                                      "--conf", str(CONF), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "fidelity check passed" in result.output
    with Predictor(out, backend="onnxruntime") as predictor:
        _check_report(predictor.metadata.fidelity, 160)  # the second SSDlite size
