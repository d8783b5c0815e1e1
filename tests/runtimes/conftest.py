"""A toy edgecv detection artifact built with ``onnx.helper``, so runtime tests need no exporter or torch.

The toy detector looks at five fixed candidate boxes in network-input pixels (the four
quadrants and the centre of a ``S x S`` input). For each box it takes the mean of every
input channel over the box; the score is the largest channel mean and the class is that
channel (class names ``red``, ``green``, ``blue`` for an RGB artifact). Candidates scoring
above ``CONF`` survive, sorted by score, padded to ``K = 5`` -- the four contract outputs.
An all-black image therefore yields no detections and a red patch yields a ``red`` box.
:func:`reference_outputs` is the same computation in numpy.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO_ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("edgecv") is None:  # repo not pip-installed: test the checkout
    sys.path.insert(0, str(REPO_ROOT))

from edgecv.metadata import METADATA_KEY, ArtifactMetadata  # noqa: E402

SIZE = 320
CONF = 0.3
CLASS_NAMES = ["red", "green", "blue"]
H = SIZE // 2
Q = SIZE // 4
CANDIDATES = np.array(
    [[0, 0, H, H], [H, 0, SIZE, H], [0, H, H, SIZE], [H, H, SIZE, SIZE], [Q, Q, SIZE - Q, SIZE - Q]], np.float32
)
K = len(CANDIDATES)


def _region_means(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> str:
    """Nodes computing ``means [B, K, 3]``: per-channel mean of ``images`` over every candidate box."""
    outputs = []
    for j, (x1, y1, x2, y2) in enumerate(CANDIDATES.astype(np.int64)):
        inits += [numpy_helper.from_array(np.array([y1, x1], np.int64), f"starts{j}"),
                  numpy_helper.from_array(np.array([y2, x2], np.int64), f"ends{j}")]
        nodes += [
            helper.make_node("Slice", ["images", f"starts{j}", f"ends{j}", "hw_axes"], [f"region{j}"]),
            helper.make_node("ReduceMean", [f"region{j}"], [f"mean{j}"], axes=[2, 3], keepdims=0),  # [B, 3]
            helper.make_node("Unsqueeze", [f"mean{j}", "axis1"], [f"mean{j}_u"]),  # [B, 1, 3]
        ]
        outputs.append(f"mean{j}_u")
    nodes.append(helper.make_node("Concat", outputs, ["means"], axis=1))
    return "means"


def build_toy_detector(batch: int | str = "batch", with_metadata: bool = True) -> onnx.ModelProto:
    """The toy detector; ``batch`` is a fixed int or a symbolic (dynamic) axis name."""
    inits = [
        numpy_helper.from_array(np.array([2, 3], np.int64), "hw_axes"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([-1], np.int64), "axis_last"),
        numpy_helper.from_array(np.array([K], np.int64), "k"),
        numpy_helper.from_array(np.array(CONF, np.float32), "conf"),
        numpy_helper.from_array(CANDIDATES, "candidates"),
    ]
    nodes: list[onnx.NodeProto] = []
    means = _region_means(nodes, inits)
    nodes += [
        helper.make_node("ReduceMax", [means], ["raw_scores"], axes=[2], keepdims=0),  # [B, K]
        helper.make_node("ArgMax", [means], ["raw_classes"], axis=2, keepdims=0),  # [B, K] int64
        helper.make_node("TopK", ["raw_scores", "k"], ["top_scores", "order"], axis=1, largest=1, sorted=1),
        helper.make_node("Greater", ["top_scores", "conf"], ["valid"]),
        helper.make_node("Cast", ["valid"], ["valid_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["valid"], ["valid_i"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["valid_i", "axis1"], ["num_i64"], keepdims=1),  # [B, 1]
        helper.make_node("Cast", ["num_i64"], ["num_dets"], to=TensorProto.INT32),
        helper.make_node("Mul", ["top_scores", "valid_f"], ["scores"]),
        helper.make_node("GatherElements", ["raw_classes", "order"], ["sorted_classes"], axis=1),
        helper.make_node("Cast", ["sorted_classes"], ["classes_u"], to=TensorProto.INT32),
        helper.make_node("Mul", ["classes_u", "valid_i32"], ["classes"]),
        helper.make_node("Cast", ["valid"], ["valid_i32"], to=TensorProto.INT32),
        helper.make_node("Gather", ["candidates", "order"], ["all_boxes"], axis=0),  # [B, K, 4]
        helper.make_node("Unsqueeze", ["valid_f", "axis_last"], ["valid_f3"]),
        helper.make_node("Mul", ["all_boxes", "valid_f3"], ["boxes"]),
    ]
    graph = helper.make_graph(
        nodes, "edgecv_toy_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("num_dets", TensorProto.INT32, [batch, 1]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, K, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, K]),
         helper.make_tensor_value_info("classes", TensorProto.INT32, [batch, K])],
        inits,
    )
    graph = _topologically_sorted(graph)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if with_metadata:
        helper.set_model_props(model, {METADATA_KEY: toy_metadata(batch).to_json()})
    onnx.checker.check_model(model)
    return model


def _topologically_sorted(graph: onnx.GraphProto) -> onnx.GraphProto:
    """Reorder nodes so every input is produced before use (keeps the node list above readable)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in known for name in n.input)]
        ordered += ready
        known |= {out for n in ready for out in n.output}
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)
    return graph


def toy_metadata(batch: int | str) -> ArtifactMetadata:
    fixed = isinstance(batch, int)
    return ArtifactMetadata(
        task="detect", class_names=list(CLASS_NAMES), input_shape=[batch if fixed else -1, 3, SIZE, SIZE],
        letterbox_size=[SIZE, SIZE], max_det=K, conf_threshold=CONF, dynamic=not fixed, model_family="toy-regions",
    )


def reference_outputs(tensor: np.ndarray) -> dict[str, np.ndarray]:
    """numpy twin of the toy graph: ``tensor [B, 3, S, S]`` -> the four contract outputs."""
    means = np.stack([tensor[:, :, y1:y2, x1:x2].mean(axis=(2, 3)) for x1, y1, x2, y2 in CANDIDATES.astype(int)], 1)
    raw_scores, raw_classes = means.max(2), means.argmax(2)
    order = np.argsort(-raw_scores, axis=1, kind="stable")
    scores = np.take_along_axis(raw_scores, order, 1)
    valid = scores > CONF
    return {
        "num_dets": valid.sum(1, keepdims=True).astype(np.int32),
        "boxes": (CANDIDATES[order] * valid[..., None]).astype(np.float32),
        "scores": (scores * valid).astype(np.float32),
        "classes": (np.take_along_axis(raw_classes, order, 1) * valid).astype(np.int32),
    }


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def toy_artifact(artifact_dir: Path) -> Path:
    """Dynamic-batch toy detector with edgecv metadata."""
    path = artifact_dir / "toy_dynamic.onnx"
    onnx.save(build_toy_detector("batch"), path)
    return path


@pytest.fixture(scope="session")
def toy_artifact_b2(artifact_dir: Path) -> Path:
    """Fixed batch-2 toy detector with edgecv metadata."""
    path = artifact_dir / "toy_b2.onnx"
    onnx.save(build_toy_detector(2), path)
    return path


@pytest.fixture(scope="session")
def plain_onnx(artifact_dir: Path) -> Path:
    """A valid ONNX model without edgecv metadata."""
    path = artifact_dir / "plain.onnx"
    onnx.save(build_toy_detector("batch", with_metadata=False), path)
    return path


def write_toy_artifact(path: Path, batch: int | str = "batch", metadata_text: str | None = None,
                       **changes: object) -> Path:
    """Save a toy detector at ``path`` whose metadata is ``metadata_text`` or the default with ``changes``."""
    model = build_toy_detector(batch, with_metadata=False)
    if metadata_text is None:
        meta = toy_metadata(batch)
        for key, value in changes.items():
            setattr(meta, key, value)
        metadata_text = meta.to_json()
    helper.set_model_props(model, {METADATA_KEY: metadata_text})
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def toy_artifact_writer() -> Callable[..., Path]:
    """:func:`write_toy_artifact`: ``writer(path, batch="batch", metadata_text=None, **metadata_changes)``."""
    return write_toy_artifact


@pytest.fixture(scope="session")
def toy_reference() -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    return reference_outputs


@pytest.fixture(scope="session")
def chelsea_bgr() -> np.ndarray:
    """A real photo (skimage's cat, 300x451), BGR uint8."""
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[:, :, ::-1])


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (320, 240), fps: float = 10.0) -> Path:
    """An mp4 (mp4v) of ``frames`` frames ``size = (w, h)``: a red square moving over black."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), "this OpenCV build cannot write mp4v"
    for i in range(frames):
        frame = np.zeros((height, width, 3), np.uint8)
        x = (i * 13) % (width - width // 2)
        frame[: height // 2, x:x + width // 2] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from the video at ``path`` (BGR uint8), in order."""
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture(scope="session")
def read_frames() -> Callable[[Path], list[np.ndarray]]:
    """:func:`decoded_frames`: ``read_frames(path)`` -> every decoded frame of a video."""
    return decoded_frames


@pytest.fixture
def toy_video(tmp_path: Path) -> Path:
    """``tmp_path/clips/clip.mp4``: 12 frames, 320x240, 10 fps."""
    (tmp_path / "clips").mkdir()
    return write_video(tmp_path / "clips" / "clip.mp4")


# --- backends: demo YOLO exported small, OpenVINO / TensorRT availability, GPU skips -------------------------


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def tensorrt_gpu_available() -> tuple[bool, str]:
    """``(True, "")`` when TensorRT imports and a CUDA device answers; else ``(False, why)``."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # the cu12 bindings raise OSError/ImportError without libnvinfer
        return False, f"TensorRT is not importable ({type(exc).__name__}: {str(exc)[:80]})"
    try:
        from cuda.bindings import runtime as cudart

        error, count = cudart.cudaGetDeviceCount()
    except Exception as exc:
        return False, f"cuda-python cannot query devices ({type(exc).__name__})"
    if int(error) != 0 or count < 1:
        return False, "no CUDA device on this machine"
    return True, ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every ``@pytest.mark.gpu`` test, with the reason, where TensorRT + a GPU are absent."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    ok, why = tensorrt_gpu_available()
    if ok:
        return
    skip = pytest.mark.skip(reason=f"gpu test: {why}")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_onnx_160(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo YOLO at 160x160, batch 1 (export without the fidelity check: it is tested elsewhere)."""
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    out = tmp_path_factory.mktemp("demo160") / "model.onnx"
    return export_model("yolo", out=out, opts=ExportOptions(imgsz=160, conf=0.2, check=False)).path


@pytest.fixture(scope="session")
def demo_onnx_192_dynamic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo YOLO with dynamic batch/size, letterbox 192."""
    from edgecv.export.api import export_model
    from edgecv.export.onnx_export import ExportOptions

    out = tmp_path_factory.mktemp("demo192") / "model.onnx"
    return export_model("yolo", out=out, opts=ExportOptions(imgsz=192, dynamic=True, conf=0.2, check=False)).path


@pytest.fixture(scope="session")
def shapes_frames() -> list[np.ndarray]:
    """Four synthetic validation scenes (BGR uint8, 192x192) that the demo model detects objects in."""
    from edgecv.data.synthetic import ShapesDataset

    data = ShapesDataset("val", length=4, imgsz=192, seed=3)
    return [np.ascontiguousarray(data[i].image) for i in range(4)]


@pytest.fixture
def fake_engine(tmp_path: Path) -> Path:
    """A non-plan ``model.engine`` with a valid edgecv json beside it (TensorRT 10.13.3.9, sm 8.6)."""
    import json

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a real plan")
    meta = ArtifactMetadata(task="detect", class_names=["a", "b"], input_shape=[1, 3, 64, 64],
                            letterbox_size=[64, 64], max_det=10)
    doc = json.loads(meta.to_json())
    doc["tensorrt"] = {"version": "10.13.3.9", "compute_capability": "8.6", "input_name": "images",
                       "profiles": [{"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [1, 3, 64, 64]}]}
    (tmp_path / "model.engine.json").write_text(json.dumps(doc))
    return engine
