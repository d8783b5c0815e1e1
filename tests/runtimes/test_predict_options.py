"""``edgecv predict --save`` validates everything before touching the output folder (issue 8, section 1).

Measured before the fix: ``--conf 2.0`` printed a ValueError traceback after truncating the previous
predictions.jsonl to 0 bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.errors import ImageError, OptionError
from edgecv.runtimes import Predictor, predict_source
from edgecv.runtimes.predict import JSONL_NAME
from edgecv.runtimes.sources import Frame, FrameSource

PREVIOUS = b'{"name": "from the previous run", "boxes": [[1, 2, 3, 4]]}\n'


@pytest.fixture
def previous_run(tmp_path: Path, chelsea_bgr: np.ndarray) -> tuple[Path, Path]:
    """``(image, save_dir)``: an input image and an output folder holding a previous predictions.jsonl."""
    image = tmp_path / "cat.jpg"
    cv2.imwrite(str(image), chelsea_bgr)
    out = tmp_path / "out"
    out.mkdir()
    (out / JSONL_NAME).write_bytes(PREVIOUS)
    return image, out


def run_cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--conf", "2.0", "conf: expected a score in [0, 1] or None, found 2.0"),
    ("--conf", "-1", "conf: expected a score in [0, 1] or None, found -1.0"),
    ("--threads", "0", "threads"),
    ("--max-pixels", "-3", "max_pixels: expected a positive number of pixels or None (no limit), found -3"),
])
def test_bad_option_leaves_the_previous_output(previous_run: tuple[Path, Path], toy_artifact: Path, option: str,
                                               value: str, message: str) -> None:
    image, out = previous_run
    result = run_cli("predict", toy_artifact, "--source", image, "--save", out, option, value)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (out / JSONL_NAME).read_bytes() == PREVIOUS
    assert sorted(p.name for p in out.iterdir()) == [JSONL_NAME]


def test_max_pixels_flag_is_applied(previous_run: tuple[Path, Path], toy_artifact: Path) -> None:
    image, out = previous_run  # 451x300 = 135,300 pixels
    refused = run_cli("predict", toy_artifact, "--source", image, "--save", out, "--max-pixels", 135_299)
    assert refused.exit_code == 2 and "451x300" in refused.output
    accepted = run_cli("predict", toy_artifact, "--source", image, "--save", out, "--max-pixels", 135_300)
    assert accepted.exit_code == 0, accepted.output
    rows = [json.loads(line) for line in (out / JSONL_NAME).read_text().splitlines()]
    assert [row["name"] for row in rows] == ["cat.jpg"]


def test_api_validates_before_opening(previous_run: tuple[Path, Path], toy_artifact: Path) -> None:
    image, out = previous_run
    with Predictor(toy_artifact) as predictor:
        for bad in ({"conf": 1.5}, {"conf": float("nan")}, {"max_frames": 0}):
            with pytest.raises(OptionError):
                predict_source(predictor, image, out, show_progress=False, **bad)
        with pytest.raises(OptionError, match="expected a folder"):
            predict_source(predictor, image, out / JSONL_NAME, show_progress=False)
    assert (out / JSONL_NAME).read_bytes() == PREVIOUS


class WatchedFrames(FrameSource):
    """Three real frames; before handing out each next frame, it reads what predictions.jsonl holds."""

    kind = "folder"

    def __init__(self, frames: list[np.ndarray], jsonl: Path) -> None:
        super().__init__("watched", None)
        self.frames, self.jsonl, self.seen = frames, jsonl, []
        self.total = len(frames)

    def __iter__(self) -> Iterator[Frame]:
        for i, frame in enumerate(self.frames):
            if i:
                self.seen.append(self.jsonl.read_text().count("\n"))
            yield f"frame{i}.png", frame


def test_jsonl_is_flushed_after_every_frame(tmp_path: Path, toy_artifact: Path, chelsea_bgr: np.ndarray) -> None:
    source = WatchedFrames([chelsea_bgr] * 3, tmp_path / "out" / JSONL_NAME)
    with Predictor(toy_artifact) as predictor:
        summary = predict_source(predictor, source, tmp_path / "out", show_progress=False)
    assert summary.frames == 3 and source.seen == [1, 2]  # lines on disk while the run was still going
    assert len((tmp_path / "out" / JSONL_NAME).read_text().splitlines()) == 3


def test_failure_on_first_frame_keeps_the_previous_jsonl(tmp_path: Path, previous_run: tuple[Path, Path],
                                                          toy_artifact: Path) -> None:
    _, out = previous_run
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with Predictor(toy_artifact) as predictor:
        with pytest.raises(ImageError, match="cannot decode"):
            predict_source(predictor, broken, out, show_progress=False)
    assert (out / JSONL_NAME).read_bytes() == PREVIOUS


def test_empty_completed_run_clears_the_previous_jsonl(tmp_path: Path, previous_run: tuple[Path, Path],
                                                       toy_artifact: Path) -> None:
    _, out = previous_run
    folder = tmp_path / "only_broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not an image")
    with Predictor(toy_artifact) as predictor:
        summary = predict_source(predictor, folder, out, show_progress=False)
    assert summary.frames == 0 and len(summary.skipped) == 1
    assert (out / JSONL_NAME).read_bytes() == b""  # this run's (empty) predictions, not the previous run's
