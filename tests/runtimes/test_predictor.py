import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from edgecv.errors import ArtifactError, BackendError, ImageError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes import Detections, Predictor
from edgecv.runtimes.image import ImageConversionWarning
from edgecv.runtimes.preprocess import preprocess_batch, scale_boxes_back

Reference = Callable[[np.ndarray], dict[str, np.ndarray]]


def assert_same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_real_photo_matches_numpy_reference(toy_artifact: Path, chelsea_bgr: np.ndarray,
                                            toy_reference: Reference) -> None:
    with Predictor(toy_artifact) as predictor:
        dets = predictor(chelsea_bgr)
        _, timing = predictor.predict_timed([chelsea_bgr])  # timing per call, not shared predictor state
        assert isinstance(dets, Detections) and predictor.batch_size is None
        tensor, infos = preprocess_batch([chelsea_bgr], predictor.metadata)
    ref = toy_reference(tensor)
    n = int(ref["num_dets"][0, 0])
    assert n > 0 and len(dets) == n
    np.testing.assert_allclose(dets.boxes, scale_boxes_back(ref["boxes"][0, :n], infos[0]), atol=1e-4)
    np.testing.assert_allclose(dets.scores, ref["scores"][0, :n], atol=1e-4)  # float32 sums differ in order
    assert dets.labels == ["red"] * n  # a ginger cat: red dominates every region
    h, w = chelsea_bgr.shape[:2]
    assert (dets.boxes >= 0).all() and (dets.boxes[:, [0, 2]] <= w).all() and (dets.boxes[:, [1, 3]] <= h).all()
    assert set(timing) >= {"preprocess_ms", "infer_ms", "postprocess_ms", "total_ms"}


@pytest.mark.parametrize("shape", [(320, 320, 3), (480, 640, 3), (300, 451, 3)])
def test_black_image_has_no_detections(toy_artifact: Path, shape: tuple[int, int, int]) -> None:
    with Predictor(toy_artifact) as predictor:
        dets = predictor(np.zeros(shape, np.uint8))
    assert len(dets) == 0 and dets.boxes.shape == (0, 4) and dets.class_names == ("red", "green", "blue")


def test_red_patch_found_in_original_coordinates(toy_artifact: Path) -> None:
    """Top-left quadrant of a 640x480 frame is red (BGR 0,0,255): one 'red' box over it, in frame pixels."""
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:240, :320] = (0, 0, 255)
    with Predictor(toy_artifact) as predictor:
        dets = predictor(frame)
    top = dets[dets.scores > 0.5]
    assert top.labels == ["red"]
    np.testing.assert_allclose(top.boxes[0], [0, 0, 320, 240], atol=1.0)


def test_batched_call_equals_individual_calls(toy_artifact: Path, chelsea_bgr: np.ndarray) -> None:
    images = [chelsea_bgr, np.zeros((200, 100, 3), np.uint8), cv2.resize(chelsea_bgr, (640, 200))]
    with Predictor(toy_artifact) as predictor:
        batched = predictor(images)
        assert predictor.predict_timed(images)[1]["images"] == 3
        single = [predictor(image) for image in images]
        assert predictor([]) == []
    assert isinstance(batched, list) and len(batched) == 3
    for a, b in zip(batched, single):
        assert_same(a, b)


def test_fixed_batch_two_chunks_three_images(toy_artifact: Path, toy_artifact_b2: Path,
                                             chelsea_bgr: np.ndarray) -> None:
    images = [chelsea_bgr, np.zeros((50, 60, 3), np.uint8), chelsea_bgr[:, ::-1]]
    with Predictor(toy_artifact_b2) as fixed, Predictor(toy_artifact) as dynamic:
        assert fixed.batch_size == 2
        results = fixed(images)
        assert len(results) == 3
        for got, want in zip(results, dynamic(images)):
            assert_same(got, want)
        assert_same(fixed(chelsea_bgr), dynamic(chelsea_bgr))  # one image, zero-padded to 2


def test_conf_post_filter(toy_artifact: Path, chelsea_bgr: np.ndarray) -> None:
    with Predictor(toy_artifact, conf=0.55) as predictor:
        strict = predictor(chelsea_bgr)
        assert len(strict) and (strict.scores >= 0.55).all()
        everything = predictor(chelsea_bgr, conf=0.3)
        assert len(everything) > len(strict)
        with pytest.warns(UserWarning, match="below the threshold 0.3 baked"):
            predictor(chelsea_bgr, conf=0.1)
    with pytest.raises(ValueError, match=r"conf: expected a score in \[0, 1\]"):
        Predictor(toy_artifact, conf=1.5)


def test_conversion_warns_once_per_kind(toy_artifact: Path) -> None:
    with Predictor(toy_artifact) as predictor, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor(np.zeros((40, 50), np.uint8))
        predictor([np.zeros((40, 50), np.uint8), np.zeros((40, 50, 4), np.uint8)])
        predictor(np.zeros((40, 50, 4), np.uint16))
        predictor(np.zeros((40, 50, 3), np.uint8))
    messages = [str(w.message) for w in caught if issubclass(w.category, ImageConversionWarning)]
    assert len(messages) == 3
    assert "grayscale" in messages[0] and "BGRA" in messages[1] and "16-bit" in messages[2]
    assert all(w.filename == __file__ for w in caught)  # points at the caller, not edgecv internals


def test_path_input_and_float_image_error(toy_artifact: Path, chelsea_bgr: np.ndarray, tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "cat.png"), chelsea_bgr)
    with Predictor(toy_artifact) as predictor:
        assert_same(predictor(tmp_path / "cat.png"), predictor(chelsea_bgr))
        with pytest.raises(ImageError, match="float32"):
            predictor(chelsea_bgr.astype(np.float32))
    with pytest.raises(BackendError, match="closed"):
        predictor(chelsea_bgr)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "semantic"}, r"expected semantic outputs \['labels'\], found \['num_dets'.*missing \['labels'\]"),
        ({"task": "segment"}, r"expected segment outputs .*missing \['masks'\]"),
        ({"input_name": "input"}, r"expected one model input 'input'.*found \['images'\]"),
        ({"class_names": []}, "class_names: expected a non-empty list of strings, found \\[\\]"),
        ({"color_order": "HSV"}, "color_order"),
    ],
)
def test_unusable_metadata_is_an_artifact_error(tmp_path: Path, toy_artifact_writer: Callable[..., Path],
                                                changes: dict, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        Predictor(toy_artifact_writer(tmp_path / "changed.onnx", **changes))


def test_invalid_metadata_json(tmp_path: Path, toy_artifact_writer: Callable[..., Path]) -> None:
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Predictor(toy_artifact_writer(tmp_path / "bad.onnx", metadata_text="{not json"))
    newer = ArtifactMetadata(task="detect", class_names=["a"], schema_version=99).to_json()
    with pytest.raises(ArtifactError, match="schema_version <= 2, found 99"):
        Predictor(toy_artifact_writer(tmp_path / "newer.onnx", metadata_text=newer))


@pytest.mark.parametrize(("changes", "message"), [
    ({"class_names": "rgb"}, r"class_names: expected a non-empty list of strings, found 'rgb'"),
    ({"pad_value": "114"}, r"pad_value: expected an integer in \[0, 255\], found '114'"),
    ({"mean": ["0", "0", "0"]}, r"mean: expected a list of 3 finite numbers"),
    ({"input_shape": [1, 3, 320.5, 320]}, r"input_shape: expected \[B, 3, H, W\]"),
    ({"conf_threshold": None}, r"conf_threshold: expected a number in \[0, 1\], found None"),
])
def test_badly_typed_metadata_never_reaches_numpy_or_opencv(tmp_path: Path, toy_artifact_writer: Callable[..., Path],
                                                            changes: dict, message: str) -> None:
    """Before schema v2 a string class_names labelled detections 'r', 'g', 'b' and bad types raised
    TypeError / cv2.error at the first image; now opening the artifact names the field."""
    with pytest.raises(ArtifactError, match=message):
        Predictor(toy_artifact_writer(tmp_path / "typed.onnx", **changes))


def test_class_count_is_checked_against_the_graph(tmp_path: Path, demo_onnx: Path) -> None:
    """The demo graph scores 5 classes (NMS input [B, 5, N]); metadata naming 3 is refused at open."""
    import onnx

    from edgecv.metadata import METADATA_KEY
    from edgecv.runtimes.predictor import graph_class_count

    assert graph_class_count(demo_onnx) == 5
    model = onnx.load(str(demo_onnx))
    prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    meta = ArtifactMetadata.from_json(prop.value)
    meta.class_names = ["circle", "square", "triangle"]
    prop.value = meta.to_json()
    onnx.save(model, str(tmp_path / "three.onnx"))
    with pytest.raises(ArtifactError, match=r"expected 5 class_names \(the graph scores 5 classes\), found 3"):
        Predictor(tmp_path / "three.onnx")
    del model.graph.value_info[:]  # shapes stripped (as in int8 graphs): the graph states nothing
    onnx.save(model, str(tmp_path / "stripped.onnx"))
    assert graph_class_count(tmp_path / "stripped.onnx") is None


def test_onnx_graph_reader_agrees_with_onnx(demo_onnx: Path) -> None:
    """The runtime's onnx-free protobuf reader sees the nodes and shapes the onnx package sees."""
    import onnx

    from edgecv.runtimes.onnx_graph import read_graph

    model = onnx.load(str(demo_onnx))
    nodes, shapes = read_graph(demo_onnx)
    assert [(n.op_type, n.inputs, n.outputs) for n in nodes] == [
        (n.op_type, list(n.input), list(n.output)) for n in model.graph.node]
    declared = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    assert shapes == declared
    # the demo's channel-first head: NMS transposes only the pre-selected [B,4,K] boxes (edgecv.export.nms)
    transpose = next(n for n in nodes if n.op_type == "Transpose" and n.outputs[0].endswith("boxes_bn4"))
    assert transpose.perm == [0, 2, 1]


def test_onnx_graph_reader_refuses_truncated_files(tmp_path: Path, demo_onnx: Path) -> None:
    from edgecv.runtimes.onnx_graph import nms_class_count
    from edgecv.runtimes.predictor import graph_class_count

    data = demo_onnx.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        nms_class_count(cut)
    assert graph_class_count(cut) is None  # the backend opening it reports the corruption, not this reader
