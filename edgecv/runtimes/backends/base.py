"""The protocol every runtime backend implements, and helpers shared by backend loaders.

A backend is a small loader + runner pair: it opens one artifact (reading its edgecv
metadata from wherever that backend's artifacts keep it) and runs a preprocessed batch.
Pre- and post-processing are not its business; :class:`~edgecv.runtimes.predictor.Predictor`
does them identically for every backend.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np

from edgecv.errors import ArtifactError, BackendError
from edgecv.metadata import ArtifactMetadata

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


@runtime_checkable
class Backend(Protocol):
    """An opened artifact that can run batches.

    ``infer(batch)`` takes the input tensor (``[B, 3, H, W]``, the artifact's input dtype)
    and returns every model output by name (for detection: the four contract outputs).
    """

    name: str
    path: Path
    metadata: ArtifactMetadata

    @property
    def input_names(self) -> list[str]: ...

    @property
    def output_names(self) -> list[str]: ...

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class ClosesOnExit:
    """Context-manager half of the protocol for backends: ``with`` closes the backend."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # noqa: ANN204 -- returns the concrete backend
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class NamedTensors:
    """The protocol's ``input_names`` / ``output_names`` for backends that keep ``_input_names`` /
    ``_output_names``: copies, so a caller cannot change the order the backend relies on."""

    _input_names: list[str]
    _output_names: list[str]

    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)


def parse_device(device: str) -> tuple[str, int]:
    """``"cpu"`` -> ``("cpu", 0)``; ``"cuda"`` / ``"cuda:1"`` -> ``("cuda", index)``.

    Raises:
        BackendError: any other string.
    """
    match = _DEVICE.match(str(device).strip().lower())
    if not match:
        raise BackendError(f"expected device 'cpu', 'cuda' or 'cuda:N', found {device!r}")
    return match.group(1), int(match.group(2) or 0)


def check_threads(threads: int | None) -> None:
    """``threads`` must be ``None`` (backend default) or a positive int."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise BackendError(f"expected threads to be a positive integer or None, found {threads!r}")


def check_artifact_file(path: Path) -> None:
    """Raise :class:`ArtifactError` unless ``path`` is an existing regular file."""
    if not path.exists():
        raise ArtifactError(f"expected a model artifact at {path}, found no such file")
    if not path.is_file():
        raise ArtifactError(f"expected a model artifact file at {path}, found a directory or special file")


def describe_file(path: Path) -> str:
    """A short guess at what a file that failed to load is, for error messages."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        return f"an unreadable file ({exc})"
    if size == 0:
        return "an empty file"
    checkpoint = "(a PyTorch checkpoint? turn it into an artifact with `edgecv export`)"
    kinds = (
        (b"PK\x03\x04", f"a zip archive {checkpoint}"),
        (b"version https://git-lfs", "a Git LFS pointer (run `git lfs pull`)"),
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        ((b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"), f"a Python pickle {checkpoint}"),
    )
    for magic, kind in kinds:
        if head.startswith(magic):
            return f"{kind}, {size} bytes"
    return f"{size} bytes that are not a valid model (corrupt, truncated or another format)"
