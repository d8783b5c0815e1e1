"""A sink that calls a function with every result (from the pipeline's sink thread, in order)."""

from __future__ import annotations

from typing import Callable

from edgecv.runtimes.streams.result import StreamResult


class CallbackSink:
    """Calls ``fn(result)`` per result and ``on_close()`` (if given) once at the end.

    ``fn`` runs in the sink thread: a slow callback slows the stream (with the ``latest``
    policy, more frames are dropped); it must copy ``result.image`` to keep it.
    """

    def __init__(self, fn: Callable[[StreamResult], object], on_close: Callable[[], object] | None = None) -> None:
        self.fn, self.on_close = fn, on_close
        self._closed = False

    def write(self, result: StreamResult) -> None:
        self.fn(result)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.on_close is not None:
                self.on_close()
