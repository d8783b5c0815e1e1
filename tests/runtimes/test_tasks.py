"""Tasks end to end: small ``segment`` and ``semantic`` graphs exported from torch in the tests
(:mod:`task_graphs`), run through ONNX Runtime and OpenVINO with letterbox and stretch inputs,
batches, images without objects, graphs that break the contract, streams and the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgecv.errors import ArtifactError, OptionError
from edgecv.runtimes import Predictor
from edgecv.runtimes.detections import Detections, check_result
from edgecv.runtimes.draw import annotate, class_color
from edgecv.runtimes.results import read_result
from edgecv.runtimes.semantic_map import SemanticMap

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))  # tests/ is not a package (pytest importlib mode)
import task_graphs as tg  # noqa: E402

SEG_HW = (320, 320)
SEM_HW = (256, 320)
BACKENDS = ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("openvino") is None, reason="openvino not installed"))]


# --- artifacts and images -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graphs() -> dict[str, onnx.ModelProto]:
    return {"segment": tg.export_task_graph(tg.ColourSegmenter(), tg.SEGMENT_OUTPUTS, SEG_HW),
            "semantic": tg.export_task_graph(tg.ColourLabeller(), tg.SEMANTIC_OUTPUTS, SEM_HW)}


@pytest.fixture(scope="module")
def artifacts(graphs: dict[str, onnx.ModelProto], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("task_artifacts")
    out = {}
    for resize in ("letterbox", "stretch"):
        out[f"segment-{resize}"] = tg.save_artifact(graphs["segment"], tg.task_metadata(
            "segment", tg.SEGMENT_NAMES, SEG_HW, resize), folder / f"segment_{resize}.onnx")
        out[f"semantic-{resize}"] = tg.save_artifact(graphs["semantic"], tg.task_metadata(
            "semantic", tg.SEMANTIC_NAMES, SEM_HW, resize), folder / f"semantic_{resize}.onnx")
    return out


def segment_scene() -> tuple[np.ndarray, np.ndarray]:
    """A 500x300 BGR image (grey) with a red disc and a blue rectangle; their true masks [2, H, W]
    (red first: it scores higher)."""
    image = np.full((300, 500, 3), 70, np.uint8)
    yy, xx = np.mgrid[:300, :500]
    disc = (yy - 120.0) ** 2 + (xx - 150.0) ** 2 <= 60.0 ** 2
    rect = np.zeros((300, 500), bool)
    rect[180:262, 301:423] = True
    image[disc] = (0, 0, 255)
    image[rect] = (255, 0, 0)
    return image, np.stack([disc, rect])


def semantic_scene() -> tuple[np.ndarray, np.ndarray]:
    """A 400x300 BGR image: red and green rectangles and a blue disc on black; the true labels."""
    image = np.zeros((300, 400, 3), np.uint8)
    labels = np.zeros((300, 400), np.int32)
    labels[20:140, 30:200] = 1
    labels[160:290, 50:120] = 2
    yy, xx = np.mgrid[:300, :400]
    labels[(yy - 150) ** 2 + (xx - 290) ** 2 <= 70 ** 2] = 3
    image[labels == 1], image[labels == 2], image[labels == 3] = (0, 0, 255), (0, 255, 0), (255, 0, 0)
    return image, labels


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# --- segment --------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
def test_segment_masks_land_on_the_objects_in_original_pixels(artifacts: dict[str, Path], backend: str,
                                                              resize: str) -> None:
    image, truth = segment_scene()
    with Predictor(artifacts[f"segment-{resize}"], backend=backend) as predictor:
        assert predictor.task.name == "segment"
        dets = predictor(image)
    assert isinstance(dets, Detections) and dets.labels == ["red", "blue"]
    boxes = np.array([[90, 60, 211, 181], [301, 180, 423, 262]], np.float32)
    np.testing.assert_allclose(dets.boxes, boxes, atol=3.0)  # a letterbox pixel is 1.6 original pixels
    assert dets.masks is not None and dets.masks.shape == (2, 300, 500)
    for mask, true in zip(dets.masks.dense(), truth):
        assert iou(mask, true) > 0.97, (resize, iou(mask, true))  # measured 0.98-0.99
    assert dets.masks.nbytes < 8_000  # two crops, bit-packed


@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_batch_of_two_with_an_empty_image(artifacts: dict[str, Path], backend: str) -> None:
    image, truth = segment_scene()
    blank = np.full((240, 320, 3), 70, np.uint8)
    with Predictor(artifacts["segment-letterbox"], backend=backend) as predictor:
        first, second = predictor([image, blank])
        only_red = predictor(image, conf=0.85)
    assert len(first) == 2 and iou(first.masks.dense()[0], truth[0]) > 0.97
    assert len(second) == 0 and second.masks is not None and second.masks.shape == (0, 240, 320)
    assert only_red.labels == ["red"] and np.array_equal(only_red.masks.dense()[0], first.masks.dense()[0])
    doc = json.loads(json.dumps(second.to_dict()))
    assert check_result(doc) == [] and doc["masks"] == []


# --- semantic -------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
def test_semantic_label_map_at_original_resolution(artifacts: dict[str, Path], backend: str, resize: str) -> None:
    image, truth = semantic_scene()
    with Predictor(artifacts[f"semantic-{resize}"], backend=backend) as predictor:
        semantic = predictor(image)
    assert isinstance(semantic, SemanticMap) and semantic.shape == (300, 400) and semantic.probs is None
    assert semantic.labels.dtype == np.int32 and semantic.class_names == tuple(tg.SEMANTIC_NAMES)
    agree = float((semantic.labels == truth).mean())
    assert agree > 0.995, (resize, agree)  # measured 0.9993 letterbox, 0.9968 stretch
    area, true_area = semantic.area(), np.bincount(truth.ravel(), minlength=4)
    assert np.all(np.abs(area - true_area) <= 0.01 * truth.size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_semantic_probs_on_request_and_batch(artifacts: dict[str, Path], backend: str) -> None:
    image, truth = semantic_scene()
    blank = np.zeros((123, 77, 3), np.uint8)
    with Predictor(artifacts["semantic-letterbox"], backend=backend, task_options={"probs": True}) as predictor:
        semantic, empty = predictor([image, blank])
    assert semantic.probs is not None and semantic.probs.shape == (4, 300, 400)
    np.testing.assert_allclose(semantic.probs.sum(0), 1.0, atol=1e-3)
    assert float((semantic.probs.argmax(0) == semantic.labels).mean()) > 0.99
    assert empty.shape == (123, 77) and empty.counts() == {"background": 123 * 77}


def test_benchmark_runs_segment_and_semantic_artifacts(artifacts: dict[str, Path]) -> None:
    from edgecv.runtimes.benchmark import benchmark

    for task in ("segment", "semantic"):
        result = benchmark(artifacts[f"{task}-letterbox"], batch=2, warmup=1, iters=2)
        assert result.whole.p50 > 0 and result.input_size == list(SEG_HW if task == "segment" else SEM_HW)


def test_semantic_rect_letterbox(tmp_path: Path) -> None:
    """A dynamic-size artifact with rect=True runs a 400x300 image at 256x320 instead of 320x320:
    the label map follows the tensor actually run."""
    model = tg.export_task_graph(tg.ColourLabeller(), tg.SEMANTIC_OUTPUTS, (320, 320), dynamic_hw=True)
    meta = tg.task_metadata("semantic", tg.SEMANTIC_NAMES, (320, 320), input_shape=[-1, 3, -1, -1])
    path = tg.save_artifact(model, meta, tmp_path / "dynamic.onnx")
    image, truth = semantic_scene()
    with Predictor(path, rect=True) as predictor:
        tensor, _ = predictor.prepare_tensor([image])
        semantic = predictor(image)
    assert tensor.shape[2:] == (256, 320) and semantic.shape == (300, 400)
    assert float((semantic.labels == truth).mean()) > 0.995


def test_fixed_batch_artifact_pads_and_chunks(graphs: dict[str, onnx.ModelProto], tmp_path: Path) -> None:
    """A batch-2 artifact: one image is padded to 2 (the padding's outputs ignored), three run as 2 + 1."""
    image, truth = semantic_scene()
    meta = tg.task_metadata("semantic", tg.SEMANTIC_NAMES, SEM_HW, input_shape=[2, 3, *SEM_HW], dynamic=False)
    with Predictor(tg.save_artifact(graphs["semantic"], meta, tmp_path / "b2.onnx")) as predictor:
        assert predictor.batch_size == 2
        single, many = predictor(image), predictor([image, image[:100], image[::2, ::2]])
    assert isinstance(single, SemanticMap) and [m.shape for m in many] == [(300, 400), (100, 400), (150, 200)]
    assert float((many[2].labels == truth[::2, ::2]).mean()) > 0.99
    seg_meta = tg.task_metadata("segment", tg.SEGMENT_NAMES, SEG_HW, input_shape=[2, 3, *SEG_HW], dynamic=False)
    with Predictor(tg.save_artifact(graphs["segment"], seg_meta, tmp_path / "seg_b2.onnx")) as predictor:
        results = predictor([segment_scene()[0]] * 3)
    assert [r.labels for r in results] == [["red", "blue"]] * 3


def test_task_options_are_checked(artifacts: dict[str, Path]) -> None:
    with pytest.raises(OptionError, match=r"task_options: expected keys among \['probs'\] for task 'semantic', "
                                          r"found \['mask_threshold'\]"):
        Predictor(artifacts["semantic-letterbox"], task_options={"mask_threshold": 0.5})
    with pytest.raises(OptionError, match=r"task_options\['mask_threshold'\]: expected a number in \(0, 1\)"):
        Predictor(artifacts["segment-letterbox"], task_options={"mask_threshold": 2})
    no_probs = onnx.ModelProto()
    no_probs.CopyFrom(onnx.load(artifacts["semantic-letterbox"]))
    del no_probs.graph.output[1]
    path = artifacts["semantic-letterbox"].with_name("no_probs.onnx")
    onnx.save(no_probs, path)
    with Predictor(path) as predictor:
        assert predictor(np.zeros((20, 30, 3), np.uint8)).probs is None
    with pytest.raises(OptionError, match=r"task option probs: expected an artifact with a 'probs' output, "
                                          r"found outputs \['labels'\]"):
        Predictor(path, task_options={"probs": True})


# --- graphs that break the contract ----------------------------------------------------------------

def _labels_graph(declare_shape: bool) -> onnx.ModelProto:
    """A semantic graph whose ``labels`` keep the channel axis: ``[B, 1, H, W]`` (against the contract)."""
    shape = ["batch", 1, *SEM_HW] if declare_shape else None
    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["images"], ["arg"], axis=1, keepdims=1),
         helper.make_node("Cast", ["arg"], ["labels"], to=TensorProto.INT32)],
        "bad_labels", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, *SEM_HW])],
        [helper.make_tensor_value_info("labels", TensorProto.INT32, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_contract_breaks_are_one_line_artifact_errors(graphs: dict[str, onnx.ModelProto], tmp_path: Path) -> None:
    no_masks = onnx.ModelProto()
    no_masks.CopyFrom(graphs["segment"])
    del no_masks.graph.output[4]
    cases = [
        (no_masks, tg.task_metadata("segment", tg.SEGMENT_NAMES, SEG_HW),
         r"expected segment outputs \['num_dets', 'boxes', 'scores', 'classes', 'masks'\], "
         r"found .*missing \['masks'\]"),
        (graphs["segment"], tg.task_metadata("semantic", tg.SEMANTIC_NAMES, SEG_HW),
         r"expected semantic outputs \['labels'\], found \['num_dets'.*missing \['labels'\]"),
        (_labels_graph(True), tg.task_metadata("semantic", tg.SEMANTIC_NAMES, SEM_HW),
         r"output 'labels': expected shape \[B, H, W\], found a graph declaring \['\?', 1, 256, 320\]"),
        (graphs["semantic"], tg.task_metadata("semantic", ["background", "red", "green"], SEM_HW),
         r"expected 4 class_names \(output 'probs' has 4 classes\), found 3 in the metadata"),
    ]
    for i, (model, meta, message) in enumerate(cases):
        with pytest.raises(ArtifactError, match=message) as caught:
            Predictor(tg.save_artifact(model, meta, tmp_path / f"bad{i}.onnx"))
        assert "\n" not in str(caught.value)
    # a graph that declares no shape is caught on its first outputs
    path = tg.save_artifact(_labels_graph(False), tg.task_metadata("semantic", ["a", "b", "c"], SEM_HW),
                            tmp_path / "undeclared.onnx")
    with Predictor(path) as predictor, pytest.raises(ArtifactError) as caught:
        predictor(np.zeros((50, 60, 3), np.uint8))
    assert str(caught.value) == ("output 'labels': expected shape [B, 256, 320] (one class id per input pixel), "
                                 "found [1, 1, 256, 320]")


# --- drawing, streams and the CLI -----------------------------------------------------------------

@pytest.mark.parametrize("hw", [(240, 320), (1080, 1920)])
def test_drawing_masks_and_label_maps(artifacts: dict[str, Path], hw: tuple[int, int]) -> None:
    image, _ = segment_scene()
    image = cv2.resize(image, hw[::-1], interpolation=cv2.INTER_NEAREST)
    with Predictor(artifacts["segment-letterbox"]) as predictor:
        dets = predictor(image)
    drawn = annotate(image, dets)
    core = cv2.erode(dets.masks.dense()[1].astype(np.uint8), np.ones((hw[0] // 20, hw[0] // 20), np.uint8))
    y, x = np.argwhere(core)[len(np.argwhere(core)) // 2]  # well inside the blue mask: no box line, no label
    expected = (image[y, x] * 0.6 + np.array(class_color(1)) * 0.4).astype(np.uint8)
    assert np.abs(drawn[y, x].astype(int) - expected).max() <= 1  # a translucent fill in the class colour
    assert np.array_equal(drawn[-1, -1], image[-1, -1])  # away from every box: untouched
    with Predictor(artifacts["semantic-letterbox"]) as predictor:
        semantic = predictor(image)
    overlay = annotate(image, semantic)
    assert semantic.labels[-1, 0] == 0 and overlay[-1, 0].max() < 0.5 * image[-1, 0].min()  # the legend's panel
    assert semantic.labels[0, -1] == 0 and np.array_equal(overlay[0, -1], image[0, -1])  # background left clear
    red = tuple(np.argwhere(semantic.labels == 1)[0])
    expected = (image[red] * 0.6 + np.array(class_color(1)) * 0.4).astype(np.uint8)  # annotate: alpha 0.4
    assert np.abs(overlay[red].astype(int) - expected).max() <= 1


def test_stream_sinks_carry_masks_and_label_maps(artifacts: dict[str, Path], tmp_path: Path) -> None:
    from edgecv.runtimes.streams.sinks import JsonlSink, VideoSink

    frames = [segment_scene()[0]] * 3 + [semantic_scene()[0]]
    for task in ("segment", "semantic"):
        jsonl, video = tmp_path / f"{task}.jsonl", tmp_path / f"{task}.mp4"
        with Predictor(artifacts[f"{task}-letterbox"]) as predictor:
            results = list(predictor.stream(frames, sinks=[JsonlSink(jsonl), VideoSink(video, fps=5)]))
        assert len(results) == 4 and video.stat().st_size > 0
        lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
        assert all(check_result(line) == [] for line in lines)
        first = read_result(lines[0])
        if task == "segment":
            assert results[0].semantic is None and len(results[0].detections.masks) == 2
            assert np.array_equal(first.masks.dense(), results[0].detections.masks.dense())
        else:
            assert results[0].result is results[0].semantic and len(results[0].detections) == 0
            assert np.array_equal(first.labels, results[0].semantic.labels)


def test_cli_predict_on_a_folder_with_segment_and_semantic_artifacts(artifacts: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edgecv.cli import app

    source = tmp_path / "images"
    source.mkdir()
    cv2.imwrite(str(source / "objects.png"), segment_scene()[0])
    cv2.imwrite(str(source / "colours.png"), semantic_scene()[0])
    cv2.imwrite(str(source / "blank.jpg"), np.full((90, 120, 3), 70, np.uint8))
    for task in ("segment", "semantic"):
        out = tmp_path / f"out_{task}"
        run = CliRunner().invoke(app, ["predict", str(artifacts[f"{task}-stretch"]), "--source", str(source),
                                       "--save", str(out)])
        assert run.exit_code == 0, run.output
        for name in ("objects.png", "colours.png", "blank.jpg"):
            drawn, original = cv2.imread(str(out / name)), cv2.imread(str(source / name))
            assert drawn.shape == original.shape
            changed = np.abs(drawn.astype(int) - original).max() > 30
            assert changed == (name != "blank.jpg"), (task, name)
        lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert [line["name"] for line in lines] == ["blank.jpg", "colours.png", "objects.png"]
        assert all(check_result(line) == [] for line in lines)
        results = {line["name"]: read_result(line) for line in lines}
        if task == "segment":
            assert results["objects.png"].labels == ["red", "blue"] and len(results["objects.png"].masks) == 2
            assert len(results["blank.jpg"]) == 0
        else:
            assert isinstance(results["colours.png"], SemanticMap)
            assert float((results["colours.png"].labels == semantic_scene()[1]).mean()) > 0.99


LIGHT = """
import sys
import numpy as np
from edgecv.runtimes import Predictor, annotate, read_result
import edgecv.runtimes.tasks.detect, edgecv.runtimes.tasks.segment, edgecv.runtimes.tasks.semantic
for path in sys.argv[1:]:
    with Predictor(path) as predictor:
        result = predictor(np.zeros((48, 64, 3), np.uint8))
    annotate(np.zeros((48, 64, 3), np.uint8), result)
    read_result(result.to_dict())
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "onnx", "pycocotools"))
print("HEAVY", heavy)
"""


def test_tasks_run_without_torch_onnx_or_pycocotools(artifacts: dict[str, Path]) -> None:
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    paths = [str(artifacts["segment-letterbox"]), str(artifacts["semantic-stretch"])]
    run = subprocess.run([sys.executable, "-c", LIGHT, *paths], capture_output=True, text=True, env=env, cwd=repo,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "HEAVY []" in run.stdout, run.stdout


def test_browser_view_shows_the_label_map(artifacts: dict[str, Path]) -> None:
    """The browser sink draws a semantic result like every sink: the served JPEG is the overlay."""
    pytest.importorskip("aiohttp")
    import time
    import urllib.request

    from edgecv.runtimes.streams.result import StreamResult
    from edgecv.runtimes.streams.sinks.browser import BrowserView

    image, _ = semantic_scene()
    with Predictor(artifacts["semantic-letterbox"]) as predictor:
        semantic = predictor(image)
    result = StreamResult(image=image, detections=Detections.empty(semantic.class_names), index=0, name="frame",
                          timestamp=time.time(), semantic=semantic)
    with BrowserView("127.0.0.1", 0) as view, urllib.request.urlopen(view.url + "stream.mjpg", timeout=10) as reader:
        deadline = time.monotonic() + 10
        while view.viewers == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        view.write(result)
        while not reader.readline().startswith(b"--"):
            pass
        headers = {}
        while (line := reader.readline().strip()):
            key, _, value = line.decode().partition(":")
            headers[key.lower()] = value.strip()
        shown = cv2.imdecode(np.frombuffer(reader.read(int(headers["content-length"])), np.uint8), cv2.IMREAD_COLOR)
    expected = annotate(image, semantic).astype(np.float32)
    assert np.abs(shown - expected).mean() < 4 < np.abs(shown - image.astype(np.float32)).mean()


def test_eval_refuses_a_semantic_artifact_in_one_line(artifacts: dict[str, Path]) -> None:
    from edgecv.evaluation import evaluate_model

    with pytest.raises(ArtifactError, match="expected a detect or segment artifact for box mAP, found task 'semantic'"):
        evaluate_model(artifacts["semantic-letterbox"], count=2)
