"""Writing finished files atomically (the one place edgecv opens an output path for writing),
and hashing files.

Every finished artifact (ONNX graphs of every precision, calibration caches, engines and their
JSON, reports, annotated images) is written to a temporary file in the destination folder and
renamed over the destination only once complete and flushed. A full disk, a file-size limit,
an exception or a kill mid-write leaves the previous file untouched and no partial file behind.
Live outputs that grow for minutes (a stream's jsonl, recordings) are appended and flushed
instead; they are not finished files. Stdlib only: the runtime imports this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from edgecv.errors import EdgecvError


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (weights, graphs, plugin libraries)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class WriteError(EdgecvError):
    """An output file that could not be written (disk full, file-size limit, permissions)."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    For writers that want a file name (``onnx.save``, ``cv2.imwrite``, ``torch.save``). The
    temporary name keeps ``path``'s suffix so suffix-sniffing writers pick the right format.
    On any failure the temporary file is removed, ``path`` is untouched, and an ``OSError``
    becomes a :class:`WriteError` naming the destination.
    """
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
        os.close(fd)
    except OSError as exc:
        raise WriteError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    tmp = Path(name)
    try:
        # mkstemp makes the file 0600: keep the mode of the file being replaced, else rw-r--r--.
        os.chmod(tmp, dest.stat().st_mode & 0o777 if dest.exists() else 0o644)
        yield tmp
        with open(tmp, "rb+") as handle:  # the writer may have closed its own handle: sync by name
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        raise WriteError(f"cannot write {dest}: {exc.strerror or exc}; the previous file, if any, "
                         "is unchanged") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing (``"w"`` or ``"wb"``); rename on success."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: expected mode 'w' or 'wb', found {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()


def write_bytes(path: str | os.PathLike[str], data: bytes | memoryview) -> Path:
    """Atomically write ``data`` to ``path``; returns ``path``."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``; returns ``path``."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def write_json(path: str | os.PathLike[str], doc: Any, **dumps: Any) -> Path:
    """Atomically write ``doc`` as JSON (``dumps`` = ``json.dumps`` keyword arguments)."""
    return write_text(path, json.dumps(doc, **dumps))


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Atomically produce ``path`` with ``writer(tmp_path)`` (e.g. ``lambda p: onnx.save(model, str(p))``).

    A writer that reports failure by returning ``False`` (``cv2.imwrite``) raises WriteError too.
    """
    with atomic_path(path) as tmp:
        if writer(tmp) is False:
            raise WriteError(f"cannot write {path}: the writer reported failure")
    return Path(path)
