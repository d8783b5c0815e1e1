"""``edgecv serve`` from the command line: option checks before any cluster starts, the light
``edgecv.serve`` import, and SIGTERM shutting down the Ray cluster the command started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
            "COLUMNS": "250", **extra}


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecv.cli", *args], capture_output=True, text=True,
                          env=_env(), cwd=REPO_ROOT, timeout=timeout)


def test_import_is_light() -> None:
    script = "import sys, edgecv.serve; print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch')))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(),
                            cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_fixed_batch_mismatch_refused_before_ray(model_320: Path) -> None:
    """A fixed-batch-1 artifact cannot batch: a warning and per-image calls; a bad port or a
    bad cams.yaml is one line and exit 2, before any cluster starts (fast)."""
    from edgecv.errors import OptionError
    from edgecv.serve.app import BatchingWarning, plan_batching

    with pytest.warns(BatchingWarning, match="fixed batch of 1"):
        assert plan_batching(1, 8)[0] == 1
    assert plan_batching(None, 8)[0] == 8 and plan_batching(4, 4)[0] == 4
    with pytest.raises(OptionError, match="expected 4 .*fixed batch.* found 8"):
        plan_batching(4, 8)
    result = _cli("serve", str(model_320), "--port", "70000")
    assert result.returncode == 2 and "port: expected an integer in 1..65535, found 70000" in result.stderr
    bad = Path(tempfile.mkdtemp()) / "cams.yaml"
    bad.write_text("streams:\n  - name: a\n    source: x.mp4\n    colour: red\n")
    result = _cli("serve", str(model_320), "--streams", str(bad))
    assert result.returncode == 2 and "streams[0]: expected keys among" in result.stderr, result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the cluster's processes")
def test_sigterm_shuts_the_cluster_down(model_320: Path, tmp_path: Path) -> None:
    ray_tmp = tempfile.mkdtemp(prefix="ecvr", dir="/tmp")  # short: Ray's unix socket paths live under it
    try:
        _serve_then_sigterm(model_320, tmp_path, ray_tmp)
    finally:  # whatever failed above, leave none of this test's Ray processes behind
        for pid in _processes_mentioning(ray_tmp):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited between the listing and the kill


def _serve_then_sigterm(model_320: Path, tmp_path: Path, ray_tmp: str) -> None:
    port = _free_port()
    # output to files, not pipes: Ray logs a lot while a busy machine starts it, and a full pipe
    # nobody reads would block the command
    out_file, err_file = (tmp_path / "out.txt").open("w+"), (tmp_path / "err.txt").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "edgecv.cli", "serve", str(model_320), "--port", str(port),
                             "--max-batch", "1", "--threads", "1"], stdout=out_file, stderr=err_file,
                            text=True, env=_env(RAY_TMPDIR=ray_tmp), cwd=REPO_ROOT)
    try:
        deadline, health = time.monotonic() + 400, None  # minutes at load average 20
        while health is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    health = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert health is not None and health["status"] == "ok", (tmp_path / "err.txt").read_text()[-3000:]
        assert _processes_mentioning(ray_tmp), "the cluster's processes should run under RAY_TMPDIR"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        out_file.close()
        err_file.close()
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert proc.returncode == 0, err[-3000:]
    assert f"at http://127.0.0.1:{port}" in out
    deadline = time.monotonic() + 60  # raylet/GCS/workers exit just after ray.shutdown returns
    while _processes_mentioning(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_mentioning(ray_tmp) == []
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)


def test_non_loopback_bind_warns_in_one_line() -> None:
    import warnings

    from edgecv.serve.cluster import PublicBindWarning, check_bind, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("example.org")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_bind("127.0.0.1", 8000)
        assert caught == []
        check_bind("0.0.0.0", 8000)
    assert len(caught) == 1 and caught[0].category is PublicBindWarning
    assert "0.0.0.0:8000" in str(caught[0].message) and "\n" not in str(caught[0].message)
