"""Sinks: where stream results go, one module each, all following
:class:`~edgecv.runtimes.streams.result.Sink` (``write(result)`` from the pipeline's sink thread,
in order; ``close()`` once, also on Ctrl-C / SIGTERM).

    from edgecv.runtimes.streams.sinks import JsonlSink, VideoSink
    with predictor.stream("clip.mp4", sinks=[VideoSink("out.mp4"), JsonlSink("out.jsonl")]) as s:
        s.run()
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: public sink name -> module defining it (imported on first use)
SINKS = {
    "JsonlSink": "edgecv.runtimes.streams.sinks.jsonl",
    "VideoSink": "edgecv.runtimes.streams.sinks.video",
    "ImagesSink": "edgecv.runtimes.streams.sinks.images",
    "CallbackSink": "edgecv.runtimes.streams.sinks.callback",
    "BrowserView": "edgecv.runtimes.streams.sinks.browser",
    "WindowView": "edgecv.runtimes.streams.sinks.window",
    "McapSink": "edgecv.runtimes.streams.sinks.mcap",
    "FoxgloveView": "edgecv.runtimes.streams.sinks.foxglove",
}

__all__ = sorted(SINKS)


def __getattr__(name: str) -> Any:
    module = SINKS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
