"""Smoke test: the predictor benchmark runs on any edgecv detection artifact (here the toy ones)."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_predictor.py"


@pytest.mark.parametrize("artifact", ["toy_artifact", "toy_artifact_b2"])
def test_bench_runs_and_reports_overhead(artifact: str, request: pytest.FixtureRequest,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_predictor", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = request.getfixturevalue(artifact)
    assert bench.main([str(path), "--runs", "3", "--warmup", "1", "--imgsz", "640x360"]) == 0
    out = capsys.readouterr().out
    assert "whole" in out and "bare" in out and "overhead" in out and "input 320x320" in out
