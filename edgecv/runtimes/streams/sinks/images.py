"""A sink writing one annotated image per result (image and folder sources), atomically."""

from __future__ import annotations

import os
from pathlib import Path

import cv2

from edgecv.fileio import WriteError, write_bytes
from edgecv.runtimes.draw import annotate
from edgecv.runtimes.streams.result import StreamResult


class ImagesSink:
    """Saves ``annotate(result.image, result.result)`` as ``folder / result.name``.

    ``result.name`` is the image's path relative to its source folder (``sub/b.png``); a format
    OpenCV reads but cannot write falls back to PNG. Files are finished outputs: written
    atomically, so a failed write keeps the previous image.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.outputs: list[Path] = []

    def write(self, result: StreamResult) -> None:
        path = self.folder / result.name
        image = annotate(result.image, result.result)
        ok, data = cv2.imencode(path.suffix, image)
        if not ok:
            path = path.with_suffix(".png")
            ok, data = cv2.imencode(".png", image)
        if not ok:
            raise WriteError(f"cannot write {path}: OpenCV cannot encode the annotated image")
        write_bytes(path, data.tobytes())
        self.outputs.append(path)

    def close(self) -> None:
        """Nothing to finalise: every image is complete when written."""
