"""The window sink (``--show``): the annotated stream in an OpenCV window.

OpenCV's window needs two things this project does not guarantee, and missing either is worse
than an exception: with no display, ``cv2.imshow`` of a Qt/GTK build *aborts the process*
(``qt.qpa.xcb: could not connect to display``, SIGABRT: no Python error, recordings unflushed),
and the headless wheel edgecv ships (``opencv-python-headless``) has no window at all. So
:func:`window_problem` checks first, without touching highgui:

1. exactly one OpenCV distribution is installed (``trackers``/``supervision``/``ultralytics``
   pull in the GUI ``opencv-python`` beside the headless one; both write the same ``cv2``
   package, so which one you get depends on install order: reported, never used silently);
2. the imported ``cv2`` has a GUI backend (the ``GUI:`` section of ``cv2.getBuildInformation()``);
3. a display is reachable: ``WAYLAND_DISPLAY``'s socket, or ``DISPLAY``'s X server socket (a set
   but dead ``DISPLAY``, e.g. a stale SSH forward, aborts as surely as none).

:class:`WindowView` raises :class:`~edgecv.errors.MissingDependencyError` naming what is missing.
When both distributions are installed but the imported ``cv2`` does have a GUI and a display is
there, it works and warns loudly, naming both and the fix.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import socket
import sys
import time
import warnings

import cv2
import numpy as np

from edgecv.errors import MissingDependencyError
from edgecv.runtimes.draw import annotate
from edgecv.runtimes.streams.result import StreamResult

log = logging.getLogger(__name__)

#: Every PyPI distribution that installs the ``cv2`` package; the headless ones have no window.
OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-contrib-python", "opencv-python-headless",
                        "opencv-contrib-python-headless")
_FIX = ('pip uninstall -y opencv-python-headless opencv-python && pip install opencv-python  '
        '(reinstall the GUI one alone; ultralytics/trackers keep working with it)')


def installed_opencv() -> list[str]:
    """``"name version"`` of every OpenCV distribution installed in this environment."""
    found = []
    for name in OPENCV_DISTRIBUTIONS:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def gui_backend(build_information: str | None = None) -> str | None:
    """The GUI backend of the imported ``cv2`` (``"QT5"``, ``"GTK3"``, ...), or None for a headless build."""
    info = cv2.getBuildInformation() if build_information is None else build_information
    match = re.search(r"^\s*GUI:\s*(\S*)\s*$", info, re.MULTILINE)
    if match is None or match.group(1).upper() in ("", "NONE", "NO"):
        # some builds state no backend on the "GUI:" line but list one below it
        sub = re.findall(r"^\s*(GTK\+|QT|Win32 UI|Cocoa|WAYLAND|FRAMEBUFFER):\s*YES", info, re.MULTILINE)
        return sub[0] if sub else None
    return match.group(1)


def _x_display_reachable(display: str) -> bool:
    """Whether an X server answers at ``display`` (``":0"``, ``"host:10.0"``, ``"unix:1"``)."""
    match = re.fullmatch(r"(?:(?P<host>[^:/]*)/?)?(?:unix)?:(?P<num>\d+)(?:\.\d+)?", display)
    if match is None:
        return os.path.exists(display)  # macOS launchd socket paths ("/private/tmp/...:0")
    host, number = match.group("host") or "", int(match.group("num"))
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        for address in (path, "\0" + path):  # the filesystem socket, then Linux's abstract one
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(1.0)
                    sock.connect(address)
                return True
            except OSError:
                continue
        if host == "unix":
            return False
        host = "localhost"
    try:
        with socket.create_connection((host, 6000 + number), timeout=1.0):
            return True
    except OSError:
        return False


def display_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why no window can open on a display here, or None when one can (Windows/macOS: always)."""
    env = os.environ if environ is None else environ
    if sys.platform in ("win32", "darwin"):
        return None
    wayland, x_display = env.get("WAYLAND_DISPLAY", ""), env.get("DISPLAY", "")
    if wayland:
        runtime_dir = env.get("XDG_RUNTIME_DIR", "")
        path = wayland if os.path.isabs(wayland) else os.path.join(runtime_dir, wayland)
        if os.path.exists(path):
            return None
    if x_display:
        if _x_display_reachable(x_display):
            return None
        return f"DISPLAY={x_display} is set but no X server answers there (a closed SSH -X session?)"
    if wayland:
        return f"WAYLAND_DISPLAY={wayland} is set but its socket is missing in XDG_RUNTIME_DIR"
    return "neither DISPLAY nor WAYLAND_DISPLAY is set (a headless machine? --serve HOST:PORT shows the stream in a browser)"


def window_problem(environ: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """``(error, warning)``: why ``--show`` cannot work here (None if it can), and a warning to give anyway."""
    distributions = installed_opencv()
    backend = gui_backend()
    mixed = None
    if len(distributions) > 1:
        mixed = (f"{len(distributions)} OpenCV distributions are installed at once ({', '.join(distributions)}); "
                 f"they overwrite each other's cv2 package, the one imported has GUI "
                 f"{backend or 'NONE'}; fix: {_FIX}")
    if backend is None:
        found = ", ".join(distributions) or "no OpenCV distribution metadata"
        hint = mixed or f"expected a GUI build (opencv-python), found {found}; fix: {_FIX}"
        return f"--show needs an OpenCV with a window backend: cv2 {cv2.__version__} has GUI: NONE. {hint}", None
    problem = display_problem(environ)
    if problem:
        return f"--show needs a display: {problem}" + (f". Also: {mixed}" if mixed else ""), None
    return None, mixed


def _draw_stats(canvas: np.ndarray, text: str) -> None:
    """Write ``text`` in the top-left corner on a dark band, scaled to the image width."""
    scale = max(0.4, canvas.shape[1] / 1600)
    thickness = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(canvas, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


class WindowView:
    """Show each result, annotated, with FPS and latency, in an OpenCV window (a :class:`Sink`).

    The checks run in the constructor; the window itself is created on the first :meth:`write`,
    in the thread that calls it (highgui wants every call from one thread). ``q``/Esc or closing
    the window sets :attr:`stop_requested`, which the stream's loop may poll to end the stream.
    """

    def __init__(self, title: str = "edgecv", *, environ: dict[str, str] | None = None) -> None:
        error, warning = window_problem(environ)
        if error:
            raise MissingDependencyError(error)
        if warning:
            log.warning(warning)
            warnings.warn(warning, UserWarning, stacklevel=2)
        self.title = title
        self.stop_requested = False
        self.frames_shown = 0
        self._opened = False
        self._last: float | None = None
        self._fps = 0.0

    def write(self, result: StreamResult) -> None:
        """Annotate ``result`` (boxes, labels, FPS, latency) and show it; handle key presses."""
        if self.stop_requested:
            return
        now = time.monotonic()
        if self._last is not None and now > self._last:  # exponential average: steady, yet follows changes
            self._fps = 0.9 * self._fps + 0.1 / (now - self._last) if self._fps else 1.0 / (now - self._last)
        self._last = now
        canvas = annotate(result.image, result.result)
        infer = result.timing.get("infer")
        text = f"{self._fps:.1f} FPS  latency {result.age * 1000:.0f} ms" + (
            f"  infer {infer:.0f} ms" if infer is not None else "") + (
            f"  dropped {result.dropped}" if result.dropped else "")
        _draw_stats(canvas, text)
        if not self._opened:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)  # no Qt toolbar
            cv2.resizeWindow(self.title, canvas.shape[1], canvas.shape[0])
            self._opened = True
        cv2.imshow(self.title, canvas)
        self.frames_shown += 1
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.stop_requested = True

    def close(self) -> None:
        """Destroy the window (idempotent)."""
        if self._opened:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)  # let highgui process the destroy event
            self._opened = False

    def __enter__(self) -> WindowView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
