"""Run Ultralytics with nothing downloaded, and pin its runtimes to the threads / precision of a race.

* :func:`offline_config`: a private ``YOLO_CONFIG_DIR`` (``settings.json`` with ``sync`` off, local
  ``Arial.ttf`` / ``Arial.Unicode.ttf`` copied from matplotlib's DejaVu Sans: Ultralytics fetches those
  fonts when it checks a dataset or plots) and ``YOLO_OFFLINE=1``. Set the returned variables in
  ``os.environ`` *before* ``import ultralytics`` (it reads its config dir at import).
* :class:`NetworkAudit`: a ``sys.addaudithook`` hook recording every ``socket.connect`` /
  ``getaddrinfo`` to a non-loopback host and every subprocess that runs ``pip`` (Ultralytics'
  ``check_requirements`` installs missing packages at run time), while recording is on.
* :func:`pin_ultralytics_runtime`: after one ``predict`` has created Ultralytics' runtime, recompile
  its OpenVINO model / recreate its ONNX Runtime session with the race's thread count (and OpenVINO
  precision hint), through the backend object Ultralytics keeps (``predictor.model.backend``); its
  predict code is not touched. Ultralytics compiles OpenVINO with ``PERFORMANCE_HINT=LATENCY`` and no
  thread or precision setting (all cores; bf16 wherever the CPU has it) and opens ONNX Runtime with
  default options (one thread per physical core): equal only on a 2-core machine without bf16.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")


def offline_config(folder: Path) -> dict[str, str]:
    """Write a private Ultralytics config dir under ``folder``; returns the environment that selects it."""
    config = Path(folder) / "Ultralytics"
    config.mkdir(parents=True, exist_ok=True)
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):  # the fonts Ultralytics' dataset check and plotting ask for
        shutil.copyfile(dejavu, config / name)
    settings = {"sync": False, "weights_dir": str(Path(folder) / "weights"), "runs_dir": str(Path(folder) / "runs"),
                "datasets_dir": str(Path(folder) / "datasets")}
    (config / "settings.json").write_text(json.dumps(settings))
    return {"YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(folder), "YOLO_VERBOSE": "False"}


class NetworkAudit:
    """Records non-loopback network attempts and pip subprocesses while :attr:`recording` (one hook per process:
    audit hooks cannot be removed, so later instances reuse the first hook)."""

    _installed: NetworkAudit | None = None

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.recording = False

    @classmethod
    def install(cls) -> NetworkAudit:
        if cls._installed is None:
            cls._installed = cls()
            sys.addaudithook(cls._installed._hook)
        return cls._installed

    def __enter__(self) -> NetworkAudit:
        self.attempts.clear()
        self.recording = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.recording = False

    def _hook(self, event: str, args: tuple) -> None:
        if not self.recording:
            return
        if event == "socket.connect":
            address = args[1]
            host = str(address[0]) if isinstance(address, tuple) else str(address)
        elif event == "socket.getaddrinfo":
            host = str(args[0])
        elif event == "subprocess.Popen":
            command = " ".join(str(part) for part in (args[1] or []))
            if "pip" in command.split() or " -m pip" in command:
                self.attempts.append(f"pip subprocess: {command[:120]}")
            return
        else:
            return
        if host and not host.startswith(LOOPBACK) and not host.startswith("/"):
            self.attempts.append(f"{event} {host}")


def pin_ultralytics_runtime(yolo: Any, threads: int, precision: str | None = None) -> dict[str, str]:
    """Re-open the runtime of ``yolo`` (a ``YOLO`` that has predicted once) with ``threads`` threads and, for
    OpenVINO, ``INFERENCE_PRECISION_HINT=precision`` (``"f32"``, ``"bf16"``; None: the device default).
    Returns the effective settings read back from the runtime, for the table."""
    backend = yolo.predictor.model.backend
    if hasattr(backend, "ov_compiled_model"):
        import openvino as ov

        xml = next(Path(backend_path(yolo)).glob("*.xml"))
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        backend.ov_compiled_model = backend.compile_model(ov.Core().read_model(str(xml)), config=config)
        compiled = backend.ov_compiled_model
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        return {"runtime": "openvino", "threads": str(compiled.get_property("INFERENCE_NUM_THREADS")),
                "precision": hint.to_string() if hasattr(hint, "to_string") else str(hint)}
    if hasattr(backend, "session"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        backend.session = ort.InferenceSession(backend_path(yolo), options, providers=["CPUExecutionProvider"])
        return {"runtime": "onnxruntime", "threads": str(threads), "precision": "fp32"}
    raise TypeError(f"an Ultralytics OpenVINO or ONNX Runtime backend expected, found {type(backend).__name__}")


def backend_path(yolo: Any) -> str:
    """The file / folder ``yolo`` was loaded from (``YOLO(path)`` keeps it as ``ckpt_path`` or ``model``)."""
    return str(getattr(yolo, "ckpt_path", None) or yolo.model)
