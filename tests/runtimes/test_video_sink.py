"""The recording format of VideoSink: a fragmented MP4 whose finished fragments are on disk while
it is still being written, odd frame sizes, and the OpenCV fallback without PyAV."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecv.errors import MissingDependencyError
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.streams.result import StreamResult
from edgecv.runtimes.streams.sinks import video_writers
from edgecv.runtimes.streams.sinks.video import VideoSink

av = pytest.importorskip("av")


def result(index: int, size: tuple[int, int] = (320, 240)) -> StreamResult:
    width, height = size
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2, (index * 7) % (width // 2):(index * 7) % (width // 2) + width // 2] = (0, 0, 255)
    return StreamResult(image=image, detections=Detections.empty(), index=index, name=f"f{index}",
                        timestamp=index / 10.0)


def decoded(path: Path) -> tuple[int, tuple[int, int]]:
    """(frames OpenCV decodes, (width, height))."""
    capture, count = cv2.VideoCapture(str(path)), 0
    assert capture.isOpened(), f"{path} does not open"
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    while capture.read()[0]:
        count += 1
    capture.release()
    return count, size


def test_finished_fragments_are_on_disk_while_recording(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "rec.mp4", fps=10.0)  # a key frame, so a fragment, every 10 frames
    for index in range(25):
        sink.write(result(index))
    snapshot = tmp_path / "snapshot.mp4"  # what a hard kill now would leave: the file as it is on disk
    shutil.copyfile(tmp_path / "rec.mp4", snapshot)
    assert sink.codec == "mpeg4" and decoded(snapshot) == (20, (320, 240))  # two finished 1 s fragments
    sink.close()
    sink.close()  # idempotent
    assert decoded(tmp_path / "rec.mp4")[0] == sink.frames == 25
    with av.open(str(tmp_path / "rec.mp4")) as container:  # tagged 10 fps
        assert float(container.streams.video[0].average_rate) == pytest.approx(10.0)


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_recorded_frames_look_like_the_frames_written(tmp_path: Path, codec: str) -> None:
    """Colours and positions survive the BGR -> I420 -> codec -> BGR round trip (PSNR > 30 dB)."""
    sink = VideoSink(tmp_path / "rec.mp4", fps=10.0, draw=False, codec=codec)
    written = [result(index) for index in range(12)]
    for item in written:
        sink.write(item)
    sink.close()
    with av.open(str(tmp_path / "rec.mp4")) as container:
        assert container.streams.video[0].codec_context.name == {"mpeg4": "mpeg4", "libx264": "h264"}[codec]
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(frames) == 12
    for item, frame in zip(written, frames):
        assert cv2.PSNR(item.image, frame) > 30.0


def test_unknown_codec_names_expected_and_found(tmp_path: Path) -> None:
    from edgecv.errors import OptionError

    with pytest.raises(OptionError, match=r"codec: expected one of \['libx264', 'mpeg4'\], found 'h265'"):
        VideoSink(tmp_path / "x.mp4", codec="h265")


def test_odd_frame_size_is_padded_to_even(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "odd.mp4", fps=10.0)
    for index in range(4):
        sink.write(result(index, (321, 241)))
    sink.write(result(4, (640, 480)))  # another size: resized to the first frame's
    sink.close()
    assert decoded(tmp_path / "odd.mp4") == (5, (322, 242))


def test_without_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # what `import av` does where PyAV is not installed
    monkeypatch.setattr(video_writers, "_warned_fallback", False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgecv\[record\]'"):
        VideoSink(tmp_path / "required.mp4", fragmented=True)
    sink = VideoSink(tmp_path / "fallback.mp4", fps=10.0)
    with caplog.at_level(logging.WARNING):
        for index in range(3):
            sink.write(result(index))
    sink.close()
    assert sink.codec == "mp4v" and decoded(tmp_path / "fallback.mp4")[0] == 3
    assert "hard kill" in caplog.text and "edgecv[record]" in caplog.text


FULL_DISK = """
import resource, signal, sys
import numpy as np
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.streams.result import StreamResult
from edgecv.runtimes.streams.sinks.video import VideoSink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
sink, noise = VideoSink(sys.argv[1], fps=10.0, draw=False), np.random.default_rng(0)
try:
    for index in range(200):
        image = noise.integers(0, 255, (240, 320, 3), dtype=np.uint8)  # incompressible: the limit comes fast
        sink.write(StreamResult(image=image, detections=Detections.empty(), index=index, name="n", timestamp=0.0))
except Exception as exc:
    print(type(exc).__name__, exc)
sink.close()
"""


def test_a_full_disk_is_a_write_error(tmp_path: Path) -> None:
    """A real file-size limit (RLIMIT_FSIZE) in a child process: the encoder's failure is a WriteError."""
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path / "full.mp4")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("WriteError cannot write") and "File too large" in proc.stdout, proc.stdout
