"""The live views and extra outputs ``edgecv predict`` opens from its flags, as one call:
:func:`open_views` (``--show``, ``--serve``, ``--save-bag``, ``--foxglove``).

Each is checked and opened before the model is (a taken port, a missing display or a bad path fails
in a second, not after the model has loaded); if one fails, those already opened are closed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecv.errors import OptionError


def open_views(*, show: bool = False, serve: str | None = None, save_bag: str | Path | None = None,
               bag_images: bool = True, foxglove: str | None = None) -> list[Any]:
    """Open the sinks asked for, in this order: an OpenCV window (``show``), the browser view at
    ``serve`` ("HOST:PORT"), an MCAP file of ROS 2 detections at ``save_bag`` (with each frame as a
    JPEG when ``bag_images``), a Foxglove WebSocket server at ``foxglove`` ("HOST:PORT"). Views
    with a ``url`` attribute say where to watch.

    Raises:
        OptionError: a bad address or path; whatever a view raises when it cannot open.
    """
    openers = [(show, _window), (serve, _browser), (save_bag, lambda path: _bag(Path(path), bag_images)),
                (foxglove, _foxglove)]
    views: list[Any] = []
    try:
        for value, opener in openers:
            if value:
                views.append(opener(value))
    except BaseException:
        for view in views:
            view.close()
        raise
    return views


def _window(_: Any) -> Any:
    from edgecv.runtimes.streams.sinks.window import WindowView

    return WindowView()


def _browser(address: str) -> Any:
    from edgecv.runtimes.streams.sinks.browser import BrowserView, parse_address

    return BrowserView(*parse_address(address))


def _bag(path: Path, images: bool) -> Any:
    from edgecv.runtimes.streams.sinks.mcap import McapSink

    if path.suffix.lower() != ".mcap" or path.is_dir() or not path.parent.is_dir():
        raise OptionError(f"--save-bag: expected a .mcap file in an existing folder, found {path}")
    return McapSink(path, images=images)


def _foxglove(address: str) -> Any:
    from edgecv.runtimes.streams.sinks.browser import parse_address
    from edgecv.runtimes.streams.sinks.foxglove import FoxgloveView

    try:
        host, port = parse_address(address, default_port=8765)
    except OptionError as exc:  # the browser view's parser names its own option
        raise OptionError(str(exc).replace("--serve", "--foxglove", 1)) from None
    return FoxgloveView(host, port)
