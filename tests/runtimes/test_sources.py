import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecv.errors import ImageError, SourceError
from edgecv.runtimes.image import ImageConversionWarning
from edgecv.runtimes.sources import ImageFiles, VideoFrames, iter_source


def write_images(folder: Path) -> list[str]:
    """b.png, a.jpg, sub/c.bmp (valid), broken.jpg (undecodable), notes.txt (ignored)."""
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "b.png"), np.full((20, 30, 3), 200, np.uint8))
    cv2.imwrite(str(folder / "a.jpg"), np.full((40, 30, 3), 50, np.uint8))
    cv2.imwrite(str(folder / "sub" / "c.bmp"), np.full((10, 10), 9, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (folder / "notes.txt").write_text("not an image")
    return ["a.jpg", "b.png", "sub/c.bmp"]


def test_folder_is_sorted_recursive_and_reports_undecodable(tmp_path: Path) -> None:
    expected = write_images(tmp_path)
    source = iter_source(tmp_path)
    assert isinstance(source, ImageFiles) and source.kind == "folder" and source.total == 4
    with pytest.warns(ImageConversionWarning, match="grayscale"):  # sub/c.bmp is grayscale
        frames = list(source)
    assert [name for name, _ in frames] == expected
    assert all(frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 for _, frame in frames)
    assert [Path(s.path).name for s in source.skipped] == ["broken.jpg"]
    assert "cannot decode" in source.skipped[0].reason


def test_single_image(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((8, 9, 3), np.uint8))
    source = iter_source(str(tmp_path / "one.png"))
    assert source.kind == "image" and [(n, f.shape) for n, f in source] == [("one.png", (8, 9, 3))]
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(ImageError, match="bad.png"):
        list(iter_source(tmp_path / "bad.png"))


def bad_source(folder: Path, kind: str) -> Path:
    """A path that iter_source must refuse."""
    if kind == "empty":
        (folder / "empty").mkdir()
        return folder / "empty"
    if kind == "text":
        (folder / "x.txt").write_text("hi")
        return folder / "x.txt"
    if kind == "video":
        (folder / "v.mp4").write_bytes(b"\0" * 5000)
        return folder / "v.mp4"
    return folder / "absent.jpg"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file or folder"),
        ("empty", "found none"),
        ("text", "unsupported suffix '.txt'"),
        ("video", r"v\.mp4.*OpenCV cannot open"),
    ],
)
def test_sources_that_cannot_open(tmp_path: Path, kind: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        iter_source(bad_source(tmp_path, kind))


def test_video_frames_and_names(toy_video: Path) -> None:
    with iter_source(toy_video) as source:
        assert isinstance(source, VideoFrames) and source.kind == "video"
        assert source.total == 12 and source.fps == pytest.approx(10.0)
        frames = list(source)
    assert [name for name, _ in frames][:2] == ["clip.mp4#000000", "clip.mp4#000001"]
    assert len(frames) == 12 and frames[0][1].shape == (240, 320, 3)
    assert len(list(source)) == 12  # iterating again reopens the file


def test_unopenable_camera_and_stream_name_the_source() -> None:
    with pytest.raises(SourceError, match="camera at camera99"):
        iter_source(99)
    with pytest.raises(SourceError, match="camera at camera98"):
        iter_source("98")
    with pytest.raises(SourceError, match=r"stream at rtsp://127\.0\.0\.1:9/live") as info:
        iter_source("rtsp://user:secret@127.0.0.1:9/live")
    assert "secret" not in str(info.value)


def test_vanishing_camera_raises_after_its_frames(toy_video: Path) -> None:
    """A camera has no natural end: a real capture (here of a file) that stops delivering is an error."""
    source = VideoFrames(str(toy_video), "camera", "camera7")
    names = []
    with pytest.raises(SourceError, match="camera camera7 stopped delivering frames after 12 frames"):
        for name, _ in source:
            names.append(name)
    assert names[-1] == "camera7#000011"


def _open_handles(path: Path) -> int:
    """How many file descriptors of this process point at ``path`` (an open capture holds one)."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


def test_early_break_releases_capture(toy_video: Path) -> None:
    source = iter_source(toy_video)
    assert _open_handles(toy_video) == 1  # opened at iter_source time (errors surface early)
    for _ in source:
        break
    assert _open_handles(toy_video) == 0  # the abandoned loop released the file
    source.close()
    assert len(list(source)) == 12 and _open_handles(toy_video) == 0  # re-opened, read to the end, released
    held = iter(source)
    next(held)
    assert _open_handles(toy_video) == 1
    source.close()  # a caller still holds the suspended loop (e.g. in a traceback): close() must release anyway
    assert _open_handles(toy_video) == 0
    assert list(held) == []  # the released capture ends the loop cleanly
