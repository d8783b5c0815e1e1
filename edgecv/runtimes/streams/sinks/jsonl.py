"""A JSON-lines sink: one ``edgecv.result/1`` document per result (``StreamResult.to_dict()``),
appended and flushed per frame, so a crash or a kill keeps every finished line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from edgecv.fileio import WriteError, write_bytes
from edgecv.runtimes.streams.result import StreamResult


class JsonlSink:
    """Writes ``path`` line by line.

    The file is opened when the first result arrives (``append=False`` truncates it only then,
    so a run that fails before its first frame leaves the previous file untouched).
    """

    def __init__(self, path: str | os.PathLike[str], append: bool = False) -> None:
        self.path = Path(path)
        self.append = append
        self.lines = 0
        self._handle: IO[str] | None = None

    def write(self, result: StreamResult) -> None:
        """Append ``result`` as one JSON line and flush it."""
        doc = result.to_dict()
        line = json.dumps({"name": doc.pop("name"), **doc}) + "\n"
        try:
            if self._handle is None:
                self._handle = self.path.open("a" if self.append else "w", encoding="utf-8")
            self._handle.write(line)
            self._handle.flush()  # per frame: a crash or kill keeps every finished line
        except OSError as exc:
            raise WriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self.lines += 1

    def clear_if_unused(self) -> None:
        """For a run that completed without a frame: leave an empty file (atomically), so the
        folder never shows a previous run's lines as this run's."""
        if self.lines == 0 and not self.append:
            write_bytes(self.path, b"")

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
