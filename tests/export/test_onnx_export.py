
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgecv.errors import ExportError
from edgecv.export.api import export_torch_detector
from edgecv.export.onnx_export import ExportOptions
from edgecv.metadata import METADATA_KEY, ArtifactMetadata
from edgecv.fileio import sha256_file
from edgecv.models.yolo_io import demo_weights_path


def _metadata(path) -> ArtifactMetadata:
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    return ArtifactMetadata.from_json(props[METADATA_KEY])


def test_demo_export_describes_itself(demo_onnx):
    meta = _metadata(demo_onnx)
    assert meta.task == "detect" and meta.class_names == ["circle", "square", "triangle", "star", "cross"]
    assert meta.input_shape == [1, 3, 320, 320] and meta.letterbox_size == [320, 320]
    assert meta.source_weights_sha256 == sha256_file(demo_weights_path())
    assert meta.fidelity["passed"] and meta.fidelity["sizes"]["320x320"]["max_abs_boxes"] <= 1e-3
    assert meta.versions["onnxruntime"] == ort.__version__


def test_output_contract(demo_onnx):
    sess = ort.InferenceSession(str(demo_onnx), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["num_dets", "boxes", "scores", "classes"]
    from edgecv.data import ShapesDataset

    image = ShapesDataset("val", 1, 320, seed=7)[0].image
    x = image[None, :, :, ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 255
    num, boxes, scores, classes = sess.run(None, {"images": x})
    assert num.dtype == np.int32 and num.shape == (1, 1)
    assert boxes.shape == (1, 100, 4) and boxes.dtype == np.float32
    assert scores.shape == (1, 100) and classes.dtype == np.int32
    n = int(num[0, 0])
    assert np.all(scores[0, :n] > 0.25) and np.all(scores[0, n:] == 0)
    assert np.all(np.diff(scores[0, :n]) <= 0)


def test_dynamic_export_runs_at_other_batch_and_size(demo_onnx_dynamic):
    meta = _metadata(demo_onnx_dynamic)
    assert meta.dynamic and meta.input_shape == [-1, 3, -1, -1]
    assert set(meta.fidelity["sizes"]) == {"320x320", "256x320"}  # checked at a second, non-square size
    sess = ort.InferenceSession(str(demo_onnx_dynamic), providers=["CPUExecutionProvider"])
    num, boxes, scores, classes = sess.run(None, {"images": np.random.rand(3, 3, 256, 384).astype(np.float32)})
    assert boxes.shape == (3, 100, 4) and num.shape == (3, 1)


class Box(nn.Module):
    """A toy detector: 4 fixed candidate boxes, class scores from the image's mean colour."""

    def forward(self, x):
        b = x.shape[0]
        boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [10.0, 10.0, 60.0, 50.0],
                              [11.0, 10.0, 60.0, 50.0], [5.0, 30.0, 20.0, 60.0]]).expand(b, 4, 4)
        logits = x.mean((2, 3))[:, None, :2].expand(b, 4, 2) * torch.tensor([[4.0], [3.0], [2.0], [1.0]])
        return boxes, logits


def test_any_torch_detector_gets_nms_and_metadata(tmp_path):
    result = export_torch_detector(Box(), ["red", "green"], tmp_path / "toy.onnx", ExportOptions(imgsz=64),
                                   scores_are_logits=True, imgsz=64)
    assert result.fidelity["passed"]
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    num, boxes, scores, classes = sess.run(None, {"images": np.ones((1, 3, 64, 64), np.float32)})
    # boxes 1 and 2 overlap (IoU ~0.98): NMS keeps one of them per class
    assert int(num[0, 0]) == 6
    assert _metadata(result.path).class_names == ["red", "green"]


class Sneaky(nn.Module):
    """Traces differently from how it runs eagerly: the fidelity check must catch it."""

    def forward(self, x):
        boxes = torch.tensor([[[0.0, 0.0, 30.0, 30.0]]]).expand(x.shape[0], 1, 4)
        scores = x.mean((1, 2, 3))[:, None, None].expand(-1, 1, 1)
        if torch.jit.is_tracing():
            scores = scores * 0.5
        return boxes, scores


def test_failing_fidelity_says_why(tmp_path):
    with pytest.raises(ExportError, match="fidelity check failed.*max_abs_scores"):
        export_torch_detector(Sneaky(), ["thing"], tmp_path / "bad.onnx", ExportOptions(imgsz=64, conf=0.1), imgsz=64)
    assert (tmp_path / "bad.onnx").is_file()  # kept for inspection


def test_imgsz_must_be_a_stride_multiple(tmp_path):
    with pytest.raises(ExportError, match="multiple of 32"):
        export_torch_detector(Box(), ["a", "b"], tmp_path / "x.onnx", ExportOptions(imgsz=100))
