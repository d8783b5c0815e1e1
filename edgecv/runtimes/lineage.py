"""Lineage of derived graphs: is an int8 / fp16 graph still the child of the fp32 graph beside it?

An int8 or fp16 graph records the fp32 graph it was made from in its metadata:
``parent = {"name": "model.onnx", "sha256": "<hex>"}`` (the path relative to the derived graph's
folder: the file name when they sit side by side). When ``model.onnx`` is re-exported (other
thresholds, other weights) or an interrupted ``export --int8`` leaves an old
``model_int8_<target>.onnx`` behind, the hashes no longer match: the pair is *stale* and the
derived graph describes a model that no longer exists.

Two checks use this module:

* opening a derived graph (:class:`~edgecv.runtimes.Predictor`) warns with
  :class:`StaleArtifactWarning` (:func:`warn_if_stale`);
* re-exporting the fp32 graph lists the derived siblings it made stale (:func:`stale_derivatives`).

A parent that is not beside the derived graph is not an error: a deployment may ship the int8
graph alone. Torch-free; ``onnx`` is imported lazily, only to scan sibling ``.onnx`` files.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

from edgecv.errors import ArtifactError
from edgecv.fileio import sha256_file
from edgecv.metadata import METADATA_KEY, ArtifactMetadata


class StaleArtifactWarning(UserWarning):
    """A derived graph (int8 / fp16) whose fp32 parent beside it has changed since it was made."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file (:func:`edgecv.fileio.sha256_file`), cached per path, mtime and size."""
    file = Path(path)
    stat = file.stat()
    return _sha256(str(file.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    # Keyed by mtime and size too: opening many predictors on one artifact hashes it once,
    # while a re-exported file (new mtime) is hashed again.
    return sha256_file(path)


def parent_record(parent_path: str | os.PathLike[str], derived_path: str | os.PathLike[str],
                  sha256: str | None = None) -> dict[str, str]:
    """The ``parent`` metadata entry of ``derived_path`` made from ``parent_path`` (hashed unless given).

    ``name`` is the parent's path relative to the derived graph's folder: the plain file name
    when both sit side by side, so the pair can be moved together.
    """
    parent, folder = Path(parent_path), Path(derived_path).parent
    name = Path(os.path.relpath(parent.resolve(), folder.resolve())).as_posix()
    return {"name": name, "sha256": sha256 or file_sha256(parent)}


def refresh_command(derived: Path, metadata: ArtifactMetadata, parent: Path) -> str:
    """The command that re-creates ``derived`` from ``parent`` (int8: calibrate; fp16: the fp16 pass)."""
    if derived.suffix in (".engine", ".plan"):
        return f"re-create its {metadata.precision} ONNX graph from {parent}, then `edgecv build` it"
    if metadata.precision == "int8":
        target = metadata.calibration.get("target", "onnxruntime")
        method = metadata.calibration.get("method", "percentile")
        data = metadata.calibration.get("data", "shapes")
        data = f" --data {data}" if data and data != "shapes" else ""
        return f"edgecv calibrate {parent}{data} --target {target} --method {method} --out {derived}"
    return f"python -c \"from edgecv.export.fp16 import export_fp16; export_fp16('{parent}', '{derived}')\""


def stale_message(derived: str | os.PathLike[str], metadata: ArtifactMetadata) -> str | None:
    """One line saying ``derived`` is stale, or ``None`` (not derived, parent absent, or hashes match)."""
    record = metadata.parent if isinstance(metadata.parent, dict) else {}
    name, recorded = record.get("name"), record.get("sha256")
    if not isinstance(name, str) or not isinstance(recorded, str) or not name:
        return None
    derived = Path(derived)
    parent = derived.parent / name
    if parent.resolve() == derived.resolve() or not parent.is_file():
        return None
    try:
        current = file_sha256(parent)
    except OSError:  # unreadable parent (permissions, vanished meanwhile): nothing to compare against
        return None
    if current == recorded:
        return None
    return (f"{derived} ({metadata.precision}) was made from another {parent.name} (sha256 {recorded[:12]} "
            f"recorded, {current[:12]} now: re-exported since, or left over from an interrupted run); "
            f"refresh it with: {refresh_command(derived, metadata, parent)}")


def warn_if_stale(derived: str | os.PathLike[str], metadata: ArtifactMetadata, stacklevel: int = 3) -> bool:
    """Warn (:class:`StaleArtifactWarning`) if ``derived`` is stale; returns whether it is."""
    message = stale_message(derived, metadata)
    if message is not None:
        warnings.warn(message, StaleArtifactWarning, stacklevel=stacklevel)
    return message is not None


def _sibling_metadata(path: Path) -> ArtifactMetadata | None:
    """edgecv metadata of an ``.onnx`` or ``*.engine.json`` / ``*.plan.json`` file, ``None`` if it has none."""
    try:
        if path.suffix == ".json":
            text = path.read_text()
        else:
            import onnx
            from google.protobuf.message import DecodeError  # onnx's own dependency

            try:
                model = onnx.load(str(path), load_external_data=False)
            except DecodeError as exc:
                raise ArtifactError(f"not an ONNX model ({exc})") from exc
            text = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
            if text is None:
                return None
        return ArtifactMetadata.from_json(text, str(path))
    except (OSError, UnicodeDecodeError, ArtifactError) as exc:  # not ours to judge: say why and skip it
        warnings.warn(f"edgecv: skipped {path} while checking derived graphs ({type(exc).__name__}: {exc})",
                      StaleArtifactWarning, stacklevel=3)
        return None


def stale_derivatives(fp32_path: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """Derived graphs beside ``fp32_path`` that name it as parent but hold another hash: ``[(path, message)]``.

    Scans ``*.onnx``, ``*.engine.json`` and ``*.plan.json`` in the same folder (an engine is
    reported by its json).
    """
    fp32 = Path(fp32_path)
    found: list[tuple[Path, str]] = []
    candidates = sorted({*fp32.parent.glob("*.onnx"), *fp32.parent.glob("*.engine.json"),
                         *fp32.parent.glob("*.plan.json")})
    for path in candidates:
        if path.resolve() == fp32.resolve():
            continue
        metadata = _sibling_metadata(path)
        name = metadata.parent.get("name") if metadata is not None and isinstance(metadata.parent, dict) else None
        if not isinstance(name, str) or not name or (path.parent / name).resolve() != fp32.resolve():
            continue
        artifact = path.with_suffix("") if path.suffix == ".json" else path
        message = stale_message(artifact, metadata)
        if message is not None:
            found.append((artifact, message))
    return found

