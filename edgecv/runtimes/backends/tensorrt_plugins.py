"""TensorRT plugin libraries: recorded at build time, found, verified and loaded before deserializing.

An engine that contains a plugin layer can only be deserialized once that plugin's creator is
registered in TensorRT's plugin registry, so the libraries must be loaded *before*
``deserialize_cuda_engine`` (and, at build time, before the ONNX parser meets the plugin node).
Build paths do not exist in a deployment container, so ``model.engine.json`` records each
library as ``{"name": "libfoo.so", "sha256": "..."}`` and the runtime looks it up by name:

1. in the paths the user gives (``Predictor(..., backend_options={"plugin_paths": [...]})``:
   files or folders),
2. beside the engine,
3. in the folders of the :data:`PLUGIN_PATH_ENV` environment variable
   (``EDGECV_TRT_PLUGIN_PATH``, a path list like ``PATH``: ``/opt/plugins:/usr/local/lib``).

The first file with that name *and* the recorded SHA-256 is loaded; a file of that name with
another hash is refused (a plugin built from other sources can compute something else, or
crash), and a library found nowhere is an error that lists every place looked in.

Loading a library (:func:`load_plugin_library`) covers both ways a plugin library registers
itself, as NVIDIA's Polygraphy does:

* ``REGISTER_TENSORRT_PLUGIN`` static registrars run when the library is mapped, so a plain
  ``dlopen`` (``ctypes.CDLL``, global symbols) registers them;
* libraries exporting ``getPluginCreators`` / ``getCreators`` are registered by
  ``IPluginRegistry.load_library``, which returns ``None`` on failure *and* when the library's
  creators are already registered (a second build in one process). Each library is therefore
  loaded once per process (keyed by its resolved path) and the handle kept alive; a ``None``
  from the registry then is only a warning: if a creator is really missing, the parser or
  deserializer fails next and names the plugin.

Stdlib only (plus the caller's ``tensorrt`` module object): the runtime imports this module.
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

from edgecv.errors import ArtifactError, EdgecvError
from edgecv.fileio import sha256_file

#: Environment variable holding extra plugin folders (``os.pathsep``-separated, like ``PATH``).
PLUGIN_PATH_ENV = "EDGECV_TRT_PLUGIN_PATH"
#: Entry points ``IPluginRegistry.load_library`` calls (IPluginV2 creators / IPluginV3 creators).
REGISTRY_ENTRY_POINTS = ("getPluginCreators", "getCreators")

_loaded: dict[Path, Any] = {}  # resolved path -> ctypes handle (kept alive: unloading would drop creators)
_load_lock = threading.Lock()


def plugin_record(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{"name": file name, "sha256": hex digest}``: what ``model.engine.json`` keeps of a library."""
    file = Path(path)
    return {"name": file.name, "sha256": sha256_file(file)}


def parse_records(value: Any, source: str) -> list[dict[str, str | None]]:
    """The ``tensorrt.plugins`` list of an engine json as records (``sha256`` None for old name-only entries).

    Raises:
        ArtifactError: not a list of names or ``{"name", "sha256"}`` objects.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise ArtifactError(f"{source}: expected 'tensorrt.plugins' to be a list, found {type(value).__name__}")
    records: list[dict[str, str | None]] = []
    for item in value:
        if isinstance(item, str):  # written before hashes were recorded
            records.append({"name": item, "sha256": None})
        elif isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("sha256"), str):
            records.append({"name": item["name"], "sha256": item["sha256"]})
        else:
            raise ArtifactError(f"{source}: expected each plugin as {{'name': ..., 'sha256': ...}}, found {item!r}")
    return records


def search_dirs(engine_path: Path, user_paths: Sequence[str | os.PathLike[str]] = (),
                env: dict[str, str] | None = None) -> list[Path]:
    """Where a recorded plugin is looked for, in order: user paths, the engine's folder, :data:`PLUGIN_PATH_ENV`.

    A user path may be a library file (matched by name) or a folder; both are returned as given.
    """
    environ = os.environ if env is None else env
    from_env = [Path(p) for p in environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p]
    return [Path(p) for p in user_paths] + [engine_path.parent] + from_env


def _candidates(name: str, places: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for place in places:
        path = place if place.name == name and place.is_file() else place / name
        if path.is_file() and path not in found:
            found.append(path)
    return found


def resolve_plugins(records: Sequence[dict[str, str | None]], engine_path: Path,
                    user_paths: Sequence[str | os.PathLike[str]] = (), env: dict[str, str] | None = None) -> list[Path]:
    """The file to load for each recorded plugin, hash-verified (see the module docstring for the order).

    Raises:
        ArtifactError: a library found nowhere (every place looked in is named), or found only
        with another SHA-256 (each file and its hash are named).
    """
    places = search_dirs(engine_path, user_paths, env)
    resolved: list[Path] = []
    for record in records:
        name, want = str(record["name"]), record["sha256"]
        candidates = _candidates(name, places)
        if not candidates:
            looked = ", ".join(str(p) for p in places)
            raise ArtifactError(f"{engine_path}: expected plugin library {name} (recorded when the engine was built), "
                                f"found it nowhere; looked in: {looked}. Put it beside the engine, add its folder to "
                                f"{PLUGIN_PATH_ENV}, or pass backend_options={{'plugin_paths': [...]}}")
        if want is None:
            warnings.warn(f"{engine_path}: plugin {name} has no recorded SHA-256 (engine json written by an older "
                          f"edgecv); loading {candidates[0]} unverified. Rebuild the engine to record it.", stacklevel=2)
            resolved.append(candidates[0])
            continue
        hashes = {path: sha256_file(path) for path in candidates}
        match = next((path for path, digest in hashes.items() if digest == want), None)
        if match is None:
            found = "; ".join(f"{path} has {digest[:16]}..." for path, digest in hashes.items())
            raise ArtifactError(f"{engine_path}: expected plugin library {name} with SHA-256 {want[:16]}..., found "
                                f"only other builds: {found}. Use the library the engine was built with, or rebuild "
                                "the engine against this one")
        resolved.append(match)
    return resolved


def _exports_registry_entry(handle: Any) -> bool:
    """Whether a dlopened library exports an entry point ``IPluginRegistry.load_library`` calls."""
    for symbol in REGISTRY_ENTRY_POINTS:
        try:
            getattr(handle, symbol)
        except AttributeError:
            continue
        return True
    return False


def load_plugin_library(trt: Any, path: str | os.PathLike[str], error: type[EdgecvError] = ArtifactError) -> bool:
    """Load one plugin library into this process (once), registering its creators with TensorRT.

    Returns True when this call loaded it, False when it was already loaded by an earlier call.

    Raises:
        ``error``: the library cannot be mapped (missing file, missing dependency, wrong
        architecture), with the loader's message.
    """
    file = Path(path).resolve()
    with _load_lock:
        if file in _loaded:
            return False
        try:
            # RTLD_GLOBAL: the plugin's symbols must be visible to TensorRT's own libraries.
            handle = ctypes.CDLL(str(file), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise error(f"cannot load TensorRT plugin library {file}: {exc}") from exc
        if _exports_registry_entry(handle):
            registry = trt.get_plugin_registry()
            if registry.load_library(str(file)) is None:
                warnings.warn(f"TensorRT's plugin registry did not register {file} (its creators may already be "
                              "registered in this process); continuing: a missing creator fails at parse / "
                              "deserialize time", stacklevel=2)
        _loaded[file] = handle
        return True


def load_plugins(trt: Any, paths: Sequence[str | os.PathLike[str]], error: type[EdgecvError] = ArtifactError) -> None:
    """:func:`load_plugin_library` for each path, in order."""
    for path in paths:
        load_plugin_library(trt, path, error)
