"""A soak of 3,000 frames through the whole pipeline (capture, infer, jsonl + video sinks):
memory and threads do not grow."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edgecv.runtimes import Predictor
from edgecv.runtimes.benchmark import current_rss_mb
from edgecv.runtimes.streams.sinks import JsonlSink, VideoSink

FRAMES, WARMUP = 3000, 300


def test_3000_frames_keep_memory_and_threads_flat(toy_artifact: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(8)]  # frames reused: no input growth
    frames = (pool[i % len(pool)] for i in range(FRAMES))
    threads_before = threading.active_count()
    rss = {}
    with Predictor(toy_artifact, backend_options={"spinning": False}) as predictor:
        sinks = [JsonlSink(tmp_path / "soak.jsonl"), VideoSink(tmp_path / "soak.mp4", fps=30.0)]
        with predictor.stream(frames, sinks=sinks) as results:
            for result in results:
                if result.index in (WARMUP, FRAMES - 1):
                    rss[result.index] = current_rss_mb()
    assert result.index == FRAMES - 1
    growth = rss[FRAMES - 1] - rss[WARMUP]
    print(f"RSS growth {growth:.1f} MB over {FRAMES - WARMUP} frames")
    assert growth < 20, f"RSS grew {growth:.1f} MB over {FRAMES - WARMUP} frames"
    assert threading.active_count() == threads_before  # every stream thread joined
    lines = (tmp_path / "soak.jsonl").read_text().splitlines()
    assert len(lines) == FRAMES
