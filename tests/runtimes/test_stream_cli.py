"""``edgecv predict`` on the stream pipeline, in-process through typer's runner, real files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
from typer.testing import CliRunner

from edgecv.cli import app

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_max_frames_prints_one_line_per_frame(toy_artifact: Path, toy_video: Path) -> None:
    result = run("predict", toy_artifact, "--source", toy_video, "--max-frames", 3)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("clip.mp4#")]
    assert [line.split(":")[0] for line in lines] == ["clip.mp4#000000", "clip.mp4#000001", "clip.mp4#000002"]
    assert all(" ms" in line for line in lines)
    assert "3 frames" in result.output


def test_quiet_prints_only_the_summary(toy_artifact: Path, toy_video: Path) -> None:
    result = run("predict", toy_artifact, "--source", toy_video, "--quiet", "--policy", "latest")
    assert result.exit_code == 0, result.output
    assert "clip.mp4#" not in result.output and "clip.mp4 (video)" in result.output


def test_save_with_max_frames_and_every_policy(tmp_path: Path, toy_artifact: Path, toy_video: Path) -> None:
    result = run("predict", toy_artifact, "--source", toy_video, "--save", tmp_path / "out", "--max-frames", 4,
                 "--policy", "every")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [doc["frame_index"] for doc in lines] == [0, 1, 2, 3]
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()


def test_bad_policy_is_one_line_exit_2(toy_artifact: Path, toy_video: Path) -> None:
    result = run("predict", toy_artifact, "--source", toy_video, "--policy", "newest")
    assert result.exit_code == 2
    assert "policy: expected one of latest, every, found 'newest'" in result.output
    assert "Traceback" not in result.output
