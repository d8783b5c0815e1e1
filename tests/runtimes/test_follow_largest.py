"""examples/follow_largest.py on a recording written here: a circle on the left, then on the right."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^t=\d+\.\d{3} seq=(\d+|-) age=(\d+\.\d{3}|-) turn=([+-]\d\.\d{2})"
                  r"( offset=([+-]\d\.\d{2}) target=\w+| hold| search)$")


def write_drive(path: Path, fps: float = 10.0, frames: int = 30) -> Path:
    """320x240 mp4: a textured background (like the demo model's training scenes) and a filled
    circle drifting on the left for the first half, on the right for the second."""
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 35, size=(5, 5, 3)).astype(np.float32)
    background = np.clip(cv2.resize(noise, (320, 240), interpolation=cv2.INTER_CUBIC) + 110
                         + rng.normal(0, 8, size=(240, 320, 3)), 0, 255).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (320, 240))
    assert writer.isOpened()
    half = frames // 2
    for i in range(frames):
        frame = background.copy()
        x = 50 + 3 * i if i < half else 200 + 3 * (i - half)  # left half, then right half
        cv2.circle(frame, (x, 120), 45, (40, 200, 240), -1)
        writer.write(frame)
    writer.release()
    return path


def test_follow_largest_steers_towards_the_object(tmp_path: Path, demo_onnx_160: Path) -> None:
    video = write_drive(tmp_path / "drive.mp4")
    done = subprocess.run([sys.executable, str(REPO / "examples" / "follow_largest.py"), str(demo_onnx_160),
                           "--source", str(video), "--rate", "10", "--duration", "30"],
                          capture_output=True, text=True, timeout=90,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("done: ") and "last error: None" in lines[-1]
    commands = lines[:-1]
    assert len(commands) >= 40  # ~3 s of recording polled at 30 Hz
    bad = [line for line in commands if not LINE.match(line)]
    assert not bad, bad[:5]
    turns = [float(m.group(3)) for m in map(LINE.match, commands) if m.group(4).startswith(" offset")]
    assert len(turns) >= 10
    assert turns[0] < 0 < turns[-1]  # left first, right at the end
    switch = next(i for i, turn in enumerate(turns) if turn > 0)
    assert all(t < 0 for t in turns[:switch]) and all(t > 0 for t in turns[switch:])  # one switch, no flapping
    assert all(abs(t) <= 0.5 for t in turns)  # the turn rate is clamped
    seqs = [int(m.group(1)) for m in map(LINE.match, commands) if m.group(1) != "-"]
    assert seqs == sorted(seqs)
