"""Calibration data sources: folders, videos, COCO, synthetic; errors name expected vs found."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecv.calibration.sources import (CocoSource, ImageFolderSource, SyntheticSource, VideoSource, data_hash,
                                        iter_batches, open_source)
from edgecv.errors import CalibrationError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.preprocess import preprocess_batch

META = ArtifactMetadata(task="detect", class_names=["a"], input_shape=[1, 3, 64, 64], letterbox_size=[64, 64])


def _image(seed: int, shape=(48, 80, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def test_folder_recursive_skips_and_reports_non_images(tmp_path):
    (tmp_path / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "a.png"), _image(0))
    cv2.imwrite(str(tmp_path / "sub" / "b.jpg"), _image(1))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    source = open_source(tmp_path, META, samples=10)
    assert isinstance(source, ImageFolderSource)
    batches = list(iter_batches(source, META, batch=8))
    assert sum(b.shape[0] for b in batches) == 2
    assert any("notes.txt" in s for s in source.skipped) and any("broken.png" in s for s in source.skipped)


def test_preprocessing_is_the_predictors(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _image(3))
    batch = next(iter_batches(open_source(tmp_path, META), META, batch=1))
    expected, _ = preprocess_batch([cv2.imread(str(tmp_path / "a.png"))], META)
    np.testing.assert_array_equal(batch, expected)


def test_empty_folder_and_missing_path_errors(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(CalibrationError, match="expected image files.*found 1 files and no images.*readme.md"):
        open_source(tmp_path, META)
    with pytest.raises(CalibrationError, match="found no file or folder"):
        open_source(tmp_path / "nope", META)
    with pytest.raises(CalibrationError, match="samples: expected >= 1"):
        open_source("shapes", META, samples=0)


def test_all_unreadable_images_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"garbage")
    with pytest.raises(CalibrationError, match="expected at least one readable image, found none"):
        list(iter_batches(open_source(tmp_path, META), META))


def test_video_every_nth_frame(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 48))
    for i in range(25):
        writer.write(_image(i))
    writer.release()
    source = open_source(path, META, samples=100, every=10)
    assert isinstance(source, VideoSource)
    assert len(list(source.images())) == 3  # frames 0, 10, 20
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    with pytest.raises(CalibrationError, match="expected a readable video"):
        open_source(bad, META)


def test_coco_and_synthetic_sources(tmp_path):
    from edgecv.data.coco import write_coco
    from edgecv.data.synthetic import ShapesDataset

    write_coco(ShapesDataset("val", 5, 64), tmp_path, show_progress=False)
    coco = open_source(tmp_path, META, samples=3)
    assert isinstance(coco, CocoSource) and len(list(coco.images())) == 3
    synth = open_source("shapes", META, samples=4)
    assert isinstance(synth, SyntheticSource) and synth.dataset.split == "test"
    assert data_hash(synth, META) == data_hash(open_source("shapes", META, samples=4), META)
    assert data_hash(synth, META) != data_hash(open_source("shapes", META, samples=4, seed=1), META)


def test_check_calibration_data_before_export(tmp_path):
    """The cheap pre-export check: counts what calibration will see, refuses unusable data."""
    from edgecv.calibration.sources import CalibrationWarning, check_calibration_data

    for i in range(40):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), _image(i, (16, 16, 3)))
    assert check_calibration_data(tmp_path, samples=256) == 40
    with pytest.warns(CalibrationWarning, match=r"only 10 images \(at least 32 recommended.*miss activation "
                                                r"values real inputs reach.*clips them"):
        assert check_calibration_data(tmp_path, samples=10) == 10
    assert check_calibration_data("shapes", samples=64) == 64
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("a.jpg", "b.png"):
        (broken / name).write_bytes(b"not an image")
    with pytest.raises(CalibrationError, match="expected decodable images, found 2 image files whose first 2 cannot"):
        check_calibration_data(broken)
    with pytest.raises(CalibrationError, match="found no file or folder"):
        check_calibration_data(tmp_path / "missing")
    (tmp_path / "junk.mp4").write_bytes(b"junk")
    with pytest.raises(CalibrationError, match="expected a readable video file"):
        check_calibration_data(tmp_path / "junk.mp4")


def test_check_counts_video_frames_and_coco_images(tmp_path):
    from edgecv.calibration.sources import CalibrationWarning, check_calibration_data
    from edgecv.data.coco import write_coco
    from edgecv.data.synthetic import ShapesDataset

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    for i in range(50):
        writer.write(_image(i, (32, 32, 3)))
    writer.release()
    with pytest.warns(CalibrationWarning, match="only 5 images"):
        assert check_calibration_data(video, every=10) == 5
    coco = write_coco(ShapesDataset("val", 3, 64, seed=0), tmp_path / "coco", show_progress=False)
    with pytest.warns(CalibrationWarning, match="only 3 images"):
        assert check_calibration_data(coco) == 3
    (tmp_path / "coco" / "images").rename(tmp_path / "coco" / "moved")
    with pytest.raises(CalibrationError, match="expected readable COCO images"):
        check_calibration_data(tmp_path / "coco")
