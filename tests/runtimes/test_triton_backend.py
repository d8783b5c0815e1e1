"""The ``triton`` backend's own checks: URLs, options, a missing tritonclient, an unreachable server, light imports.
Against a real server it is tested in ``tests/serve/test_triton_e2e.py``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecv.errors import BackendError
from edgecv.runtimes import Predictor
from edgecv.runtimes.backends import open_backend
from edgecv.runtimes.backends.triton import is_server_url, parse_url

REPO_ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_urls() -> None:
    assert parse_url("grpc://127.0.0.1:8001/yolo") == ("grpc", "127.0.0.1:8001", "yolo", "")
    assert parse_url("http://server:8000/edgecv-yolon/3") == ("http", "server:8000", "edgecv-yolon", "3")
    assert is_server_url("grpc://h:1/m") and not is_server_url("model.onnx") and not is_server_url(Path("grpc:/h:1/m"))
    for bad in ("grpc://127.0.0.1/yolo", "grpc://127.0.0.1:8001/", "ftp://h:1/m", "grpc://h:1/m/v1", "grpc://h:1/../m"):
        with pytest.raises(BackendError, match="expected a URL like grpc://host:8001/<model>") as info:
            parse_url(bad)
        assert "\n" not in str(info.value)


def test_file_backends_refuse_urls_and_triton_refuses_files(toy_artifact: Path) -> None:
    with pytest.raises(BackendError, match="backend 'onnxruntime' opens files"):
        open_backend("grpc://127.0.0.1:8001/m", "onnxruntime")
    with pytest.raises(BackendError, match="expected a URL like"):
        open_backend(toy_artifact, "triton")
    with pytest.raises(BackendError, match="expected device None"):
        open_backend("grpc://127.0.0.1:8001/m", device="cuda")
    with pytest.raises(BackendError, match="expected options among \\['timeout'\\]"):
        open_backend("grpc://127.0.0.1:8001/m", precision="f32")


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_unreachable_server_is_a_bounded_one_line_error(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{closed_port()}/yolo"
    start = time.monotonic()
    with pytest.raises(BackendError, match=f"cannot get model 'yolo' from {scheme}://127.0.0.1") as info:
        Predictor(url, backend="triton", backend_options={"timeout": 3})
    assert time.monotonic() - start < 15
    assert "\n" not in str(info.value)


def test_missing_tritonclient_names_the_extra() -> None:
    script = ("import sys; sys.modules['tritonclient'] = None\n"  # as if not installed
              "from edgecv.errors import MissingDependencyError\n"
              "from edgecv.runtimes import Predictor\n"
              "try:\n    Predictor('grpc://127.0.0.1:8001/yolo')\n"
              "except MissingDependencyError as exc:\n    print('MISSING', exc)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "MISSING backend 'triton' (grpc://) needs tritonclient" in result.stdout
    assert "pip install edgecv[triton]" in result.stdout


def test_backend_module_imports_neither_tritonclient_nor_torch() -> None:
    script = ("import sys, edgecv.runtimes, edgecv.runtimes.backends.triton\n"
              "print('HEAVY', sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tritonclient', 'grpc')))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
