import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecv.errors import SourceError
from edgecv.runtimes import Predictor, annotate, predict_source
from edgecv.runtimes.draw import class_color
from edgecv.runtimes.predict import JSONL_NAME
from edgecv.runtimes.sources import VideoFrames


def make_folder(folder: Path, chelsea_bgr: np.ndarray) -> None:
    (folder / "nested").mkdir(parents=True)
    cv2.imwrite(str(folder / "cat.jpg"), chelsea_bgr)
    cv2.imwrite(str(folder / "black.png"), np.zeros((120, 160, 3), np.uint8))
    cv2.imwrite(str(folder / "nested" / "cat_small.png"), cv2.resize(chelsea_bgr, (150, 100)))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("artifact", ["toy_artifact", "toy_artifact_b2"])
def test_folder_with_corrupt_image(tmp_path: Path, chelsea_bgr: np.ndarray, artifact: str,
                                   request: pytest.FixtureRequest) -> None:
    make_folder(tmp_path / "in", chelsea_bgr)
    with Predictor(request.getfixturevalue(artifact)) as predictor:
        summary = predict_source(predictor, tmp_path / "in", tmp_path / "out", show_progress=False)
        cat = predictor(chelsea_bgr)
    assert summary.kind == "folder" and summary.frames == 3
    assert [Path(s.path).name for s in summary.skipped] == ["corrupt.jpg"]
    names = ["black.png", "cat.jpg", "nested/cat_small.png"]
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in summary.outputs) == names
    for name in names:
        saved, original = cv2.imread(str(tmp_path / "out" / name)), cv2.imread(str(tmp_path / "in" / name))
        assert saved is not None and saved.shape == original.shape
    rows = read_jsonl(tmp_path / "out" / JSONL_NAME)
    assert summary.jsonl == tmp_path / "out" / JSONL_NAME
    assert [row["name"] for row in rows] == names
    assert rows[0]["boxes"] == [] and len(rows[1]["boxes"]) == len(cat) and rows[1]["labels"][0] == "red"
    assert summary.detections == sum(len(row["boxes"]) for row in rows) == summary.per_class["red"]
    text = str(summary)  # what `edgecv predict` prints
    assert f"3 frames, {summary.detections} detections (red {summary.detections})" in text
    assert "corrupt.jpg" in text.splitlines()[-1] and "and 1 more" in text


def test_video_to_annotated_mp4(tmp_path: Path, toy_artifact: Path, toy_video: Path, read_frames) -> None:
    with Predictor(toy_artifact) as predictor:
        summary = predict_source(predictor, toy_video, tmp_path / "out", show_progress=True)
    assert summary.kind == "video" and summary.frames == 12 and summary.detections > 0
    assert summary.outputs == [tmp_path / "out" / "clip.mp4"]
    assert cv2.VideoCapture(str(summary.outputs[0])).isOpened()
    frames = read_frames(summary.outputs[0])
    assert len(frames) == 12 and frames[0].shape == (240, 320, 3)
    rows = read_jsonl(tmp_path / "out" / JSONL_NAME)
    assert [row["name"] for row in rows] == [f"clip.mp4#{i:06d}" for i in range(12)]


def test_without_save_dir_writes_nothing(tmp_path: Path, toy_artifact: Path, toy_video: Path) -> None:
    with Predictor(toy_artifact) as predictor:
        summary = predict_source(predictor, toy_video, show_progress=False, max_frames=5, conf=0.9)
    assert summary.frames == 5 and summary.outputs == [] and summary.jsonl is None and summary.detections == 0
    assert sorted(p.name for p in toy_video.parent.iterdir()) == ["clip.mp4"]
    assert summary.fps > 0 and summary.to_dict()["frames"] == 5
    with Predictor(toy_artifact) as predictor, pytest.raises(ValueError, match="max_frames"):
        predict_source(predictor, toy_video, max_frames=0)


def test_refuses_to_overwrite_inputs(tmp_path: Path, toy_artifact: Path, toy_video: Path,
                                     chelsea_bgr: np.ndarray) -> None:
    make_folder(tmp_path / "in", chelsea_bgr)
    with Predictor(toy_artifact) as predictor:
        with pytest.raises(SourceError, match="would overwrite the inputs"):
            predict_source(predictor, tmp_path / "in", tmp_path / "in", show_progress=False)
        with pytest.raises(SourceError, match="would overwrite the inputs"):
            predict_source(predictor, toy_video, toy_video.parent, show_progress=False)


def test_vanishing_camera_still_finalises_outputs(tmp_path: Path, toy_artifact: Path, toy_video: Path) -> None:
    camera = VideoFrames(str(toy_video), "camera", "camera3")
    with Predictor(toy_artifact) as predictor, pytest.raises(SourceError, match="stopped delivering"):
        predict_source(predictor, camera, tmp_path / "out", show_progress=False)
    capture = cv2.VideoCapture(str(tmp_path / "out" / "camera3.mp4"))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    capture.release()
    assert len(read_jsonl(tmp_path / "out" / JSONL_NAME)) == 12


def test_annotate_draws_a_copy_in_class_colours(toy_artifact: Path) -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:240, :320] = (0, 0, 255)
    with Predictor(toy_artifact) as predictor:
        dets = predictor(frame)
    drawn = annotate(frame, dets)
    assert drawn is not frame and drawn.shape == frame.shape and drawn.dtype == np.uint8
    assert (frame[240:] == 0).all()  # input untouched
    changed = np.any(drawn != frame, axis=2)
    assert changed.any()
    colour = np.array(class_color(0))
    assert np.any(np.all(drawn == colour, axis=2))  # box lines in the class colour
    assert np.array_equal(annotate(frame, dets[dets.scores > 2]), frame)  # nothing to draw
