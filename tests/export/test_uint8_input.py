"""``export --input uint8``: the artifact takes uint8 [B, H, W, 3] BGR frames and pre-processes
them in its ``edgecv_pre/`` prefix; it must give the detections of the float-input artifact (real
photos), pass the export's own fidelity check against PyTorch (YOLO-style RGB /255, an
ImageNet-normalised detector, a semantic segmenter), and every reader of the input shape must follow
its NHWC layout (predictor, rect letterbox, OpenVINO, fp16 pass, TensorRT profiles, info, benchmark)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from skimage import data as skdata
from torch import nn

from edgecv.errors import ArtifactError, ExportError
from edgecv.export.api import export_model, export_torch_detector
from edgecv.export.fidelity import box_iou
from edgecv.export.onnx_export import ExportOptions
from edgecv.export.uint8_input import PRE_PREFIX, export_uint8_input
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.models import load_for_export
from edgecv.runtimes import Predictor

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """skimage's bundled photos as BGR uint8 (no download), plus each at half size."""
    full = [cv2.cvtColor(getattr(skdata, name)(), cv2.COLOR_RGB2BGR) for name in PHOTOS]
    return full + [cv2.resize(p, (p.shape[1] // 2, p.shape[0] // 2), interpolation=cv2.INTER_AREA) for p in full]


@pytest.fixture(scope="module")
def photo_folder(photos: list[np.ndarray], tmp_path_factory) -> Path:
    """Two of the half-size photos as PNG files: ``check_images`` for the exports' fidelity checks
    (two images keep the PyTorch side of each check to seconds on a shared CPU)."""
    folder = tmp_path_factory.mktemp("photos")
    for name, image in zip(("astronaut", "coffee"), photos[4:6]):
        cv2.imwrite(str(folder / f"{name}.png"), image)
    return folder


@pytest.fixture(scope="module")
def uint8_dynamic(demo_onnx_dynamic: Path, tmp_path_factory) -> Path:
    """The dynamic demo YOLO (conf 0.1) converted to uint8 input."""
    return export_uint8_input(demo_onnx_dynamic, tmp_path_factory.mktemp("u8") / "model_uint8.onnx")


def read_meta(path: Path) -> ArtifactMetadata:
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return ArtifactMetadata.from_json(props[METADATA_KEY])


def matched_share(a, b, iou: float = 0.99) -> tuple[int, float]:
    """``(pairs, share matched one-to-one with the same class at IoU >= iou)`` of two Detections lists."""
    pairs = matched = 0
    for da, db in zip(a, b):
        pairs += max(len(da), len(db))
        if len(da) and len(db):
            ious = box_iou(da.boxes, db.boxes) * (da.class_ids[:, None] == db.class_ids[None, :])
            while ious.size and ious.max() >= iou:
                i, j = np.unravel_index(np.argmax(ious), ious.shape)
                ious[i, :], ious[:, j] = -1, -1
                matched += 1
    return pairs, (matched / pairs if pairs else 1.0)


def test_graph_and_metadata_describe_uint8_nhwc_bgr(uint8_dynamic: Path) -> None:
    model = onnx.load(str(uint8_dynamic))
    (graph_input,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8 and dims[3] == 3
    prefix = [n for n in model.graph.node if n.name.startswith(PRE_PREFIX)]
    assert [n.name for n in model.graph.node[:4]] == [PRE_PREFIX + op for op in ("Cast", "Transpose", "Gather", "Mul")]
    assert len(prefix) == 4  # YOLO: /255 only, no mean to subtract
    meta = read_meta(uint8_dynamic)
    assert (meta.input_dtype, meta.layout, meta.color_order, meta.input_shape) == ("uint8", "NHWC", "BGR",
                                                                                   [-1, -1, -1, 3])
    assert meta.in_graph["color_order"] == "RGB" and meta.hw_axes == (1, 2)


def test_uint8_artifact_gives_the_float_artifacts_detections_on_photos(demo_onnx_dynamic: Path, uint8_dynamic: Path,
                                                                       photos: list[np.ndarray]) -> None:
    """Same detections (>= 99 % matched at IoU >= 0.99), full-square and rect letterbox."""
    for rect in (False, True):
        with Predictor(demo_onnx_dynamic, rect=rect) as floats, Predictor(uint8_dynamic, rect=rect) as uint8s:
            expected, got = floats(photos), uint8s(photos)
            tensor, _ = uint8s.prepare_tensor([photos[1]])  # coffee, 400x600
        pairs, share = matched_share(expected, got)
        assert pairs >= 10 and share >= 0.99, f"rect={rect}: {share:.3f} of {pairs} matched"
        assert tensor.dtype == np.uint8 and tensor.shape[3] == 3
    assert tensor.shape[1:3] == (224, 320)  # rect letterbox on the NHWC height / width axes


def test_export_check_passes_for_an_imagenet_normalised_detector(photo_folder: Path, tmp_path: Path) -> None:
    """A detector taking ImageNet-normalised RGB (torchvision convention) exported with --input uint8:
    the export's own fidelity check (PyTorch on the float tensor vs ONNX Runtime on uint8) passes on
    real photos, and the prefix subtracts the mean (a Sub node) besides scaling."""
    demo = load_for_export("yolo", None)

    class ImageNetInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = demo.module
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.model(x * self.std + self.mean)

    opts = ExportOptions(input="uint8", conf=0.1, check_images=photo_folder)
    result = export_torch_detector(ImageNetInput().eval(), demo.class_names, tmp_path / "m.onnx", opts,
                                   mean=IMAGENET_MEAN, std=IMAGENET_STD, imgsz=demo.imgsz)
    sizes = result.fidelity["sizes"]
    assert result.fidelity["passed"] and all(f["matched"] == 1.0 for f in sizes.values()), sizes
    assert sum(f["onnx_dets"] for f in sizes.values()) > 0
    names = [n.name for n in onnx.load(str(result.path)).graph.node if n.name.startswith(PRE_PREFIX)]
    assert names == [PRE_PREFIX + op for op in ("Cast", "Transpose", "Gather", "Mul", "Sub")]
    assert result.metadata.in_graph["mean"] == IMAGENET_MEAN and result.metadata.mean == [0.0, 0.0, 0.0]


def test_semantic_export_with_uint8_frames_passes_its_check_and_predicts(photo_folder: Path, tmp_path: Path) -> None:
    """U-Net exported with --input uint8 --frame 256x192: the graph letterboxes 256x192 frames to
    128x128 itself; the check (PyTorch fed the graph's own pre-processed tensor) passes and the label
    map comes back at the frame's size."""
    from edgecv.export.fidelity import default_images

    opts = ExportOptions(input="uint8", frame=(256, 192), check_images=photo_folder)
    result = export_model("unet", out=tmp_path / "unet.onnx", opts=opts, warn_stale=False)
    assert result.fidelity["passed"], result.fidelity["failures"]
    assert result.metadata.input_shape == [1, 192, 256, 3] and result.metadata.task == "semantic"
    assert result.metadata.in_graph["frame"] == [192, 256] and result.metadata.letterbox_size == [128, 128]
    image = cv2.resize(default_images(128, 1)[0], (256, 192), interpolation=cv2.INTER_NEAREST)
    with Predictor(result.path) as predictor:
        semantic = predictor(image)
    assert semantic.shape == (192, 256) and semantic.labels.max() > 0


def test_frame_artifact_letterboxes_in_its_graph_like_the_runtime(demo_onnx: Path, photos: list[np.ndarray],
                                                                   tmp_path: Path) -> None:
    """--frame 1280x720: Resize + Pad in the graph give the runtime letterbox's pixels (rounded half
    up like cv2), hence the float artifact's detections; other frame sizes are refused in one line."""
    from edgecv.errors import ImageError

    path = export_uint8_input(demo_onnx, tmp_path / "frame.onnx", frame_wh=(1280, 720))
    names = [n.name for n in onnx.load(str(path)).graph.node if n.name.startswith(PRE_PREFIX)]
    assert names == [PRE_PREFIX + op for op in ("Cast", "Transpose", "Resize", "Add", "Floor", "Pad", "Gather", "Mul")]
    assert read_meta(path).input_shape == [1, 720, 1280, 3]
    frames = [cv2.resize(p, (1280, 720), interpolation=cv2.INTER_AREA) for p in photos[:4]]
    with Predictor(demo_onnx) as floats, Predictor(path) as framed:
        pairs, share = matched_share(floats(frames), framed(frames))
        with pytest.raises(ImageError, match=r"expected 1280x720 frames .* found 640x480"):
            framed(np.zeros((480, 640, 3), np.uint8))
    assert pairs >= 4 and share >= 0.99, f"{share:.3f} of {pairs}"


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")
def test_openvino_runs_the_uint8_artifact_like_onnxruntime(uint8_dynamic: Path, photos: list[np.ndarray]) -> None:
    with Predictor(uint8_dynamic) as ort, Predictor(uint8_dynamic, backend="openvino",
                                                    backend_options={"precision": "f32"}) as ov:
        pairs, share = matched_share(ort(photos[:4]), ov(photos[:4]), iou=0.95)
    assert pairs >= 5 and share >= 0.99


def test_fp16_pass_keeps_the_prefix_float32(uint8_dynamic: Path, photos: list[np.ndarray]) -> None:
    from edgecv.export.fp16 import export_fp16

    half = export_fp16(uint8_dynamic)
    model = onnx.load(str(half))
    prefix_inits = [i for i in model.graph.initializer if i.name.startswith(PRE_PREFIX + "mul")]
    assert prefix_inits and all(i.data_type == onnx.TensorProto.FLOAT for i in prefix_inits)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    with Predictor(half) as predictor, Predictor(uint8_dynamic) as full:
        pairs, share = matched_share(full(photos[:4]), predictor(photos[:4]), iou=0.9)
    assert pairs >= 5 and share >= 0.9


def test_tensorrt_profiles_follow_the_nhwc_layout(uint8_dynamic: Path, tmp_path: Path) -> None:
    from edgecv.export.tensorrt_build import plan_build

    plan = plan_build(uint8_dynamic, tmp_path / "m.engine")
    assert plan.onnx_input_shape == [-1, -1, -1, 3]
    assert plan.profiles[0].opt == (1, 320, 320, 3)
    plan = plan_build(uint8_dynamic, tmp_path / "m.engine", opt_shape=(4, 320, 480, 3))
    assert (plan.profiles[0].min, plan.profiles[0].max) == ((1, 320, 480, 3), (4, 320, 480, 3))
    with pytest.raises(ExportError, match=r"axis 3 is static .* expected 3, found 640"):
        plan_build(uint8_dynamic, tmp_path / "m.engine", opt_shape=(4, 3, 640, 640))


def test_info_and_benchmark_follow_the_layout(uint8_dynamic: Path) -> None:
    from typer.testing import CliRunner

    from edgecv.cli import app
    from edgecv.runtimes.benchmark import benchmark

    result = benchmark(uint8_dynamic, warmup=1, iters=2, imgsz=(480, 320))
    assert result.input_size == [320, 320] and result.frame_size == [480, 320]
    shown = CliRunner().invoke(app, ["info", str(uint8_dynamic)])
    assert shown.exit_code == 0, shown.output
    assert "[-1, -1, -1, 3] uint8 NHWC BGR" in shown.output and "in the graph (edgecv_pre/): BGR -> RGB" in shown.output


@pytest.mark.parametrize(("changes", "message"), [
    ({"layout": "NHWC"}, r"input_dtype/layout: expected uint8 with NHWC"),
    ({"input_dtype": "uint8"}, r"input_dtype/layout: expected uint8 with NHWC"),
    ({"input_dtype": "uint8", "layout": "NHWC", "input_shape": [1, 3, 320, 320]},
     r"input_shape: expected \[B, H, W, 3\] for layout NHWC"),
])
def test_inconsistent_input_description_is_refused(changes: dict, message: str) -> None:
    meta = ArtifactMetadata(task="detect", class_names=["a"], input_shape=[1, 3, 320, 320])
    for key, value in changes.items():
        setattr(meta, key, value)
    with pytest.raises(ArtifactError, match=message):
        ArtifactMetadata.from_json(meta.to_json())


def test_bad_input_kind_and_double_conversion_are_refused(uint8_dynamic: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"--input: expected one of \['float', 'uint8'\], found 'int8'"):
        export_model("yolo", out=tmp_path / "x.onnx", opts=ExportOptions(input="int8"), warn_stale=False)
    with pytest.raises(ExportError, match="expected an fp32 graph with float32 input"):
        export_uint8_input(uint8_dynamic, tmp_path / "twice.onnx")
    with pytest.raises(ExportError, match="--frame: expected --input uint8"):
        export_model("yolo", out=tmp_path / "x.onnx", opts=ExportOptions(frame=(640, 480)), warn_stale=False)
    with pytest.raises(ExportError, match="--frame: expected a static input"):
        export_model("yolo", out=tmp_path / "x.onnx", opts=ExportOptions(input="uint8", frame=(640, 480),
                                                                      dynamic=True), warn_stale=False)
