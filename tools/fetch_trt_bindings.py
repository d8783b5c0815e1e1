"""Fetch and unpack the ``tensorrt-cu12-bindings`` wheels whose ``tensorrt.plugin`` sources the tests check against.

    python tools/fetch_trt_bindings.py [CACHE_DIR]

For each version in :data:`VERSIONS`, ``pip download --no-deps`` the wheel (1-2 MB: Python
bindings only, no libnvinfer) and unpack it into ``CACHE_DIR/<version>/`` (default:
``$EDGECV_TRT_BINDINGS_CACHE`` or ``~/.cache/edgecv/trt-bindings``). Nothing is installed: two
TensorRT versions cannot share one environment, and the package would shadow ``tensorrt``.
Already unpacked versions are left alone. ``.ci/run`` calls this before the tests;
tests/plugins/test_trt_signatures.py reads the same folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

#: TensorRT releases checked: the 10.x line edgecv builds with (10.13) and the newest 11.x.
VERSIONS = ("10.13.3.9.post1", "11.4.0.106")
PACKAGE = "tensorrt-cu12-bindings"


def cache_dir() -> Path:
    return Path(os.environ.get("EDGECV_TRT_BINDINGS_CACHE") or Path.home() / ".cache" / "edgecv" / "trt-bindings")


def fetch(version: str, root: Path) -> Path:
    """``root/<version>`` holding the unpacked wheel (``tensorrt_bindings/plugin/*.py``)."""
    target = root / version
    if (target / "tensorrt_bindings" / "plugin" / "_validate.py").is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{PACKAGE}=={version}",
                        "-d", tmp], check=True, timeout=600)
        (wheel,) = Path(tmp).glob("*.whl")
        partial = root / f".{version}.partial"
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial)
        partial.rename(target)
    return target


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    for version in VERSIONS:
        print(f"{PACKAGE} {version}: {fetch(version, root)}")


if __name__ == "__main__":
    main()
