"""What every task module provides, and the checks tasks share.

A task (the metadata's ``task``) is one module in this package with one object ``TASK``
following :class:`Task`: it checks an opened artifact against its output contract (one-line
:class:`~edgecv.errors.ArtifactError`s naming expected vs found) and turns raw outputs plus the
resize information of each image into that task's result type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from edgecv.errors import ArtifactError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.backends import Backend
from edgecv.runtimes.onnx_graph import read_graph
from edgecv.runtimes.preprocess import LetterboxInfo, input_hw, normalisation


@dataclass(frozen=True)
class PostContext:
    """What post-processing needs beside the outputs.

    ``input_hw`` is the ``(H, W)`` of the tensor that was run (a rect letterbox makes it smaller
    than the artifact's size); ``options`` are the task's options (:attr:`Task.options` keys).
    """

    class_names: tuple[str, ...]
    conf: float | None
    input_hw: tuple[int, int]
    options: Mapping[str, Any] = field(default_factory=dict)


class Task(Protocol):
    """One task: its name, its options with their defaults, its check and its post-processing."""

    name: str
    options: Mapping[str, Any]  # option name -> default (``Predictor(task_options=...)``)
    uses_conf: bool  # whether ``conf`` means anything for its results

    def check_artifact(self, metadata: ArtifactMetadata, backend: Backend, options: Mapping[str, Any]) -> None:
        """Raise :class:`ArtifactError` unless the artifact honours this task's output contract, and
        :class:`~edgecv.errors.OptionError` for ``options`` (resolved) it cannot serve."""

    def postprocess(self, outputs: Mapping[str, np.ndarray], infos: Sequence[LetterboxInfo],
                    context: PostContext) -> list[Any]:
        """One result per entry of ``infos`` (batch padding beyond them ignored), in original pixels."""


def check_input(metadata: ArtifactMetadata, backend: Backend) -> None:
    """The checks every task shares: one input named as the metadata says, ``[B, 3, H, W]``, class
    names, a usable input size and normalisation."""
    source = str(backend.path)
    if backend.input_names != [metadata.input_name]:
        raise ArtifactError(f"{source}: expected one model input {metadata.input_name!r} (from the metadata), "
                            f"found {backend.input_names}")
    channels = 3 if metadata.layout == "NHWC" else 1
    if len(metadata.input_shape) != 4 or metadata.input_shape[channels] != 3:
        want = "[B, H, W, 3]" if metadata.layout == "NHWC" else "[B, 3, H, W]"
        raise ArtifactError(f"{source}: expected input_shape {want} (layout {metadata.layout}), "
                            f"found {metadata.input_shape}")
    if not metadata.class_names:
        raise ArtifactError(f"{source}: expected class_names in the metadata, found none")
    input_hw(metadata)
    normalisation(metadata)


def check_output_names(task: str, required: Sequence[str], backend: Backend) -> None:
    """:class:`ArtifactError` unless every name of ``required`` is a model output."""
    missing = [name for name in required if name not in backend.output_names]
    if missing:
        raise ArtifactError(f"{backend.path}: expected {task} outputs {list(required)}, found "
                            f"{backend.output_names} (missing {missing})")


def declared_shapes(path: Path) -> dict[str, list[int | None]]:
    """The shapes an ONNX graph declares for its tensors (``None``: a symbolic axis); empty for a
    non-ONNX artifact or a file this reader cannot parse (the backend that opened it reports that)."""
    if path.suffix.lower() != ".onnx":
        return {}
    try:
        return read_graph(path)[1]
    except (ValueError, OSError):
        return {}


def check_declared_rank(backend: Backend, shapes: Mapping[str, list[int | None]], name: str,
                        layout: str) -> list[int | None] | None:
    """The declared shape of output ``name``; :class:`ArtifactError` if it declares another rank
    than ``layout`` (e.g. ``"[B, H, W]"``) has axes. None when the graph declares nothing."""
    dims = shapes.get(name)
    rank = len(layout.strip("[]").split(","))
    if dims is not None and len(dims) != rank:
        raise ArtifactError(f"{backend.path}: output {name!r}: expected shape {layout}, found a graph "
                            f"declaring {[d if d else '?' for d in dims]}")
    return dims


def check_batch(outputs_batch: int, infos: Sequence[LetterboxInfo]) -> None:
    """:class:`ArtifactError` unless the outputs hold at least one item per image."""
    if outputs_batch < len(infos):
        raise ArtifactError(f"expected outputs for a batch of at least {len(infos)}, found batch {outputs_batch}")
