"""Run the Triton server that nvidia-pytriton bundles, as a separate process on 127.0.0.1, over a model repository.

pytriton's wheel ships ``tritonserver`` (Triton 2.51), its shared libraries
(``nvidia_pytriton.libs``), the Python backend and one Python-backend stub per Python version. It
has no ONNX Runtime or TensorRT backend, so it serves only Python-backend models (edgecv's
``--platform python`` repositories). pytriton's own Python API is not used: the server is started
directly on the repository edgecv wrote, so the ``config.pbtxt`` under test is the one Triton loads.

What it needs here (checked on Debian 12, no network): the stub links ``libpython3.X.so.1.0``,
found in this interpreter's ``LIBDIR`` (put on ``LD_LIBRARY_PATH``), and the Python backend's
shared memory in ``/dev/shm``. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bundled_server() -> Path | None:
    """pytriton's ``tritonserver`` folder, or None when nvidia-pytriton is not installed (nothing imported)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    return folder if (folder / "bin" / "tritonserver").is_file() else None


class TritonServerProcess:
    """``tritonserver`` over ``repo`` with gRPC and HTTP on 127.0.0.1 (free ports), metrics off."""

    def __init__(self, repo: Path, workdir: Path) -> None:
        server = bundled_server()
        if server is None:
            raise RuntimeError("nvidia-pytriton is not installed (pip install --no-deps nvidia-pytriton)")
        self.server, self.repo, self.workdir = server, repo, workdir
        self.grpc_port, self.http_port = free_port(), free_port()
        self.log = workdir / "tritonserver.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _backends(self) -> Path:
        """A backend folder with the Python backend and the stub for this interpreter's Python version."""
        python = self.workdir / "backends" / "python"
        python.mkdir(parents=True, exist_ok=True)
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            link = python / name
            if not link.exists():
                link.symlink_to(self.server / "backends" / "python" / name)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.server / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise RuntimeError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
        shutil.copy(stub, python / "triton_python_backend_stub")  # found by the backend beside itself
        return python.parent

    def _env(self) -> dict[str, str]:
        libs = [str(self.server.parent.parent / "nvidia_pytriton.libs"), str(sysconfig.get_config_var("LIBDIR") or "")]
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")])
        # the stub embeds Python and finds this environment (numpy, onnxruntime) through PATH's python
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def start(self, models: list[str], timeout: float = 90.0) -> None:
        """Start and wait until the server and every model in ``models`` are ready (bounded by ``timeout``)."""
        argv = [str(self.server / "bin" / "tritonserver"), f"--model-repository={self.repo}",
                f"--backend-directory={self._backends()}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
                f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}", "--allow-metrics=false",
                "--exit-timeout-secs=3", "--log-verbose=0"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                                            start_new_session=True)  # own group: the stubs go down with it
        self._wait_ready(models, time.monotonic() + timeout)

    def _wait_ready(self, models: list[str], deadline: float) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")
        try:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if client.is_server_ready(client_timeout=2) and all(
                            client.is_model_ready(name, client_timeout=2) for name in models):
                        return
                except InferenceServerException:
                    pass  # not listening yet: poll again until the deadline
                time.sleep(0.25)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"tritonserver not ready with {models} before the deadline:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self) -> None:
        """SIGINT (Triton's graceful stop), then SIGKILL to the process group after 10 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # a stub left in the server's own process group
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None
