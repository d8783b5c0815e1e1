"""``--show``: the clear error without a display (where a bare imshow aborts), and the window under Xvfb."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edgecv.errors import MissingDependencyError
from edgecv.runtimes.streams.sinks.window import WindowView, display_problem, gui_backend, installed_opencv

REPO_ROOT = Path(__file__).resolve().parents[2]
HAS_GUI = gui_backend() is not None


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def test_no_display_is_a_clear_error_not_an_abort() -> None:
    """Without a display, WindowView raises naming what is missing; the process lives on."""
    with pytest.raises(MissingDependencyError) as info:
        WindowView(environ={})
    message = str(info.value)
    if HAS_GUI:
        assert "needs a display" in message and "DISPLAY" in message and "--serve" in message
    else:
        assert "GUI: NONE" in message and "opencv-python" in message


def test_dead_display_is_reported() -> None:
    """A DISPLAY that is set but has no X server behind it (stale SSH forward) is caught too."""
    problem = display_problem({"DISPLAY": ":987"})
    assert problem is not None and "DISPLAY=:987" in problem and "no X server" in problem


@pytest.mark.skipif(not HAS_GUI, reason="this OpenCV has no GUI backend, so imshow cannot abort")
def test_bare_imshow_aborts_where_windowview_raises() -> None:
    """Why the check exists: OpenCV's own imshow kills the process (SIGABRT) with no display."""
    script = "import cv2, numpy as np; cv2.imshow('x', np.zeros((8, 8, 3), np.uint8)); print('alive')"
    bare = subprocess.run([sys.executable, "-c", script], check=False, env=_env(), capture_output=True, text=True, timeout=60)
    assert bare.returncode != 0 and "alive" not in bare.stdout
    guarded = ("from edgecv.errors import MissingDependencyError\n"
               "from edgecv.runtimes.streams.sinks.window import WindowView\n"
               "try:\n    WindowView()\nexcept MissingDependencyError as e:\n    print('clear:', e)\n")
    ours = subprocess.run([sys.executable, "-c", guarded], check=False, env=_env(), capture_output=True, text=True, timeout=60)
    assert ours.returncode == 0 and "clear: --show needs a display" in ours.stdout, ours.stderr


def test_headless_build_information_is_recognised() -> None:
    headless = "  GUI:                           NONE\n\n  Media I/O:\n    ZLib: YES\n"
    qt = "  GUI:                           QT5\n    QT:                          YES (ver 5.15)\n"
    gtk = "  GUI:\n    GTK+:                        YES (ver 3.24)\n"
    assert gui_backend(headless) is None
    assert gui_backend(qt) == "QT5" and gui_backend(gtk) == "GTK+"


def test_two_opencv_distributions_are_reported_not_used_silently() -> None:
    """Here (ultralytics pulls opencv-python beside the headless one) the mix must be named."""
    found = installed_opencv()
    assert found, "no OpenCV distribution metadata found"
    if len(found) < 2:
        pytest.skip(f"only one OpenCV distribution installed ({found[0]})")
    from edgecv.runtimes.streams.sinks.window import window_problem

    error, warning = window_problem({})
    text = error or ""
    text += warning or ""
    assert all(name.split()[0] in text for name in found), text


WINDOW_SCRIPT = """
import sys, time, warnings, numpy as np
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.streams.result import StreamResult
from edgecv.runtimes.streams.sinks.window import WindowView
warnings.simplefilter("ignore")
view = WindowView("edgecv-test")
for i in range(20):
    img = np.zeros((240, 320, 3), np.uint8); img[60:180, 80:200] = (0, 0, 255)
    dets = Detections(np.array([[80, 60, 200, 180]], np.float32), np.array([0.9], np.float32),
                      np.array([0], np.int32), ("red",))
    view.write(StreamResult(img, dets, i, f"test#{i}", time.time(), age=0.03, timing={"infer": 7.0}))
    time.sleep(0.02)
import subprocess
subprocess.run(["import", "-window", "root", sys.argv[1]], check=True, timeout=20)
view.close()
print("shown", view.frames_shown)
"""


@pytest.mark.skipif(not HAS_GUI, reason="no GUI-capable OpenCV importable (install opencv-python)")
@pytest.mark.skipif(shutil.which("Xvfb") is None or shutil.which("import") is None,
                    reason="Xvfb / ImageMagick import not installed (apt-get install xvfb imagemagick)")
def test_window_under_xvfb(tmp_path: Path) -> None:
    """The real window on a virtual X server: a screenshot of the root window shows the annotated frame."""
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        number = xvfb.stdout.readline().strip()  # Xvfb picks a free display and writes its number
        assert number.isdigit(), f"Xvfb did not start: {number!r}"
        shot = tmp_path / "root.png"
        run = subprocess.run([sys.executable, "-c", WINDOW_SCRIPT, str(shot)], check=False, env=_env(DISPLAY=f":{number}"),
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and "shown 20" in run.stdout, run.stderr[-2000:]
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (480, 640)
    b, g, r = (image[..., c].astype(int) for c in range(3))
    red = (r > 200) & (g < 60) & (b < 60)
    assert red.sum() > 120 * 120 * 0.5, f"the red object is not on screen ({red.sum()} red pixels)"
    white = (image.min(axis=2) > 200).sum()
    assert white > 50, "no stats text (white on black) on screen"
