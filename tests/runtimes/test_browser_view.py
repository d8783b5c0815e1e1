"""The browser view: a real server on 127.0.0.1 fed with real predictions, watched by headless Chromium
(selenium + Debian's chromium-driver) and by MJPEG viewers in separate processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecv.errors import OptionError
from edgecv.runtimes import Predictor
from edgecv.runtimes.draw import annotate
from edgecv.runtimes.streams.result import Gap, StreamResult
from edgecv.runtimes.streams.sinks.browser import BrowserView, exposure_warning, parse_address

pytest.importorskip("aiohttp")

MARK = 32  # a MARK x MARK block in the bottom-right corner carries the frame index (value = 4 * index)


def _scene(base: np.ndarray, index: int) -> np.ndarray:
    """``base`` with a blue square in its top-left quadrant and the frame index stamped in a corner."""
    frame = base.copy()
    h, w = frame.shape[:2]
    frame[h // 8:h // 2 - 8, w // 8:w // 2 - 8] = (255, 0, 0)
    frame[-MARK:, -MARK:] = (4 * index) % 256
    return frame


def _read_mark(jpeg_frame: np.ndarray) -> int:
    return round(float(jpeg_frame[-MARK + 8:-8, -MARK + 8:-8].mean()) / 4)


@pytest.fixture(scope="module")
def results(toy_artifact: Path, chelsea_bgr: np.ndarray) -> list[StreamResult]:
    """60 stream results: real frames, real ONNX Runtime detections, a gap with 2 reconnects at frame 30."""
    out = []
    with Predictor(toy_artifact) as predictor:
        for i in range(60):
            frame = _scene(chelsea_bgr, i)
            t0 = time.perf_counter()
            dets = predictor(frame)
            infer = (time.perf_counter() - t0) * 1000
            gap = Gap(time.time() - 1.5, time.time(), "read failed", reconnects=2) if i == 30 else None
            out.append(StreamResult(frame, dets, i, f"scene#{i}", time.time(), age=0.02 + infer / 1000,
                                    timing={"infer": infer}, dropped=1 if i % 10 == 5 else 0, gap=gap))
    assert any(len(r.detections) for r in out), "the toy detector found nothing to annotate"
    return out


def _feed(view: BrowserView, results: list[StreamResult], stop: threading.Event, fps: float = 30.0,
          loop: bool = False, deadline: float = 30.0) -> threading.Thread:
    """Write ``results`` to ``view`` at ``fps`` from a thread (the pipeline's sink thread), bounded in time."""
    def run() -> None:
        end = time.monotonic() + deadline
        while not stop.is_set() and time.monotonic() < end:
            for result in results:
                if stop.is_set():
                    return
                view.write(result)
                time.sleep(1 / fps)
            if not loop:
                return
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _stats(view: BrowserView) -> dict:
    with urllib.request.urlopen(view.url + "stats.json", timeout=5) as response:
        return json.load(response)


# -- (a) headless Chromium --------------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                    reason="Debian's chromium + chromium-driver not installed (apt-get install chromium chromium-driver)")
def test_page_in_headless_chromium(results: list[StreamResult], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=900,700", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    stop = threading.Event()
    static = results[:1] * 200  # the same annotated scene, so the screenshot can be compared pixel by pixel
    with BrowserView("127.0.0.1", 0) as view:
        feeder = _feed(view, static, stop, fps=20, loop=True)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        try:
            driver.set_page_load_timeout(20)
            driver.get(view.url)
            image = driver.find_element(By.ID, "stream")
            _wait(lambda: driver.execute_script("return arguments[0].naturalWidth", image) > 0, 20,
                  "the stream image to load")
            _wait(lambda: driver.find_element(By.ID, "frames").text not in ("", "-"), 10, "the stats")
            first = int(driver.find_element(By.ID, "frames").text)
            time.sleep(1.2)  # > two polls of the page (every 0.5 s)
            second = int(driver.find_element(By.ID, "frames").text)
            fps = float(driver.find_element(By.ID, "fps").text)
            viewers = driver.find_element(By.ID, "viewers").text
            png = driver.get_screenshot_as_png()
            rect = image.rect
        finally:
            driver.quit()
            stop.set()
            feeder.join(10)
    (tmp_path / "page.png").write_bytes(png)
    if os.environ.get("EDGECV_KEEP_SCREENSHOT"):  # to look at it
        shutil.copy(tmp_path / "page.png", os.environ["EDGECV_KEEP_SCREENSHOT"])
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert second > first, f"stats did not update: frames {first} then {second}"
    assert fps > 5 and viewers == "1"
    x, y, w, h = (round(rect[k]) for k in ("x", "y", "width", "height"))
    expected = annotate(static[0].image, static[0].detections)
    assert (h, w) == expected.shape[:2], f"image shown at {w}x{h}, expected {expected.shape[1::-1]}"
    # the element's position is fractional (centred): take the pixel-aligned crop that fits best
    crops = [shot[y + dy:y + dy + h, x + dx:x + dx + w].astype(int) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    crop = min((c for c in crops if c.shape[:2] == (h, w)), key=lambda c: np.abs(c - expected).mean())
    assert crop.std() > 20, "the stream image is blank"
    drawn = np.abs(expected.astype(int) - static[0].image).max(axis=2) > 60  # the boxes and labels
    assert drawn.sum() > 200
    # what a viewer should see: the annotated frame through one JPEG round trip (thin coloured lines blur)
    _, jpeg = cv2.imencode(".jpg", expected, [cv2.IMWRITE_JPEG_QUALITY, view.quality])
    expected = cv2.imdecode(jpeg, cv2.IMREAD_COLOR).astype(int)
    to_annotated = np.abs(crop - expected)[drawn].mean()
    to_raw = np.abs(crop - static[0].image)[drawn].mean()
    print(f"shown vs annotated {to_annotated:.1f}, vs raw {to_raw:.1f}")
    assert to_annotated < 12 and to_raw > 25, f"annotations not on screen: |shown-annotated| {to_annotated:.1f}, " \
                                              f"|shown-raw| {to_raw:.1f}"


# -- (b) three MJPEG viewers in separate processes ------------------------------------------------------------

VIEWER = r"""
import json, sys, time, urllib.request
import cv2, numpy as np
url, last, delay, mark = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
seen, valid, end = [], True, time.monotonic() + 25
with urllib.request.urlopen(url, timeout=20) as stream:
    while time.monotonic() < end:
        line = stream.readline()
        if not line:
            break                                   # the server closed the stream
        if not line.startswith(b"--"):
            continue
        headers = {}
        while (line := stream.readline().strip()):
            key, _, value = line.decode().partition(":")
            headers[key.lower()] = value.strip()
        data = stream.read(int(headers["content-length"]))
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        valid &= headers.get("content-type") == "image/jpeg" and frame is not None and data[-2:] == b"\xff\xd9"
        if frame is None:
            continue
        seen.append(round(float(frame[-mark + 8:-8, -mark + 8:-8].mean()) / 4))
        if seen[-1] == last:
            break
        time.sleep(delay)                           # a slow viewer
print(json.dumps({"seen": seen, "valid": bool(valid), "shape": list(frame.shape)}))
"""


def test_three_viewer_processes_one_encode_per_frame(results: list[StreamResult]) -> None:
    with BrowserView("127.0.0.1", 0) as view:
        delays = (0.0, 0.0, 0.25)  # two fast viewers and a slow one
        viewers = [subprocess.Popen([sys.executable, "-c", VIEWER, view.url + "stream.mjpg", str(len(results) - 1),
                                     str(delay), str(MARK)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for delay in delays]
        try:
            _wait(lambda: view.viewers == 3, 30, "three viewers to connect")
            stop = threading.Event()
            _feed(view, results, stop, fps=40).join(20)
            outputs = [proc.communicate(timeout=30) for proc in viewers]
        finally:
            for proc in viewers:
                if proc.poll() is None:
                    proc.kill()
        stats = _stats(view)
        assert view.frames_written == len(results) == stats["written"]
        assert view.frames_encoded == view.frames_written == stats["encoded"], "not exactly one encode per frame"
    reports = []
    for proc, (out, err) in zip(viewers, outputs):
        assert proc.returncode == 0, err[-2000:]
        reports.append(json.loads(out))
    height, width = results[0].image.shape[:2]
    for report in reports:
        assert report["valid"] and report["shape"] == [height, width, 3]
        assert report["seen"][-1] == len(results) - 1, "a viewer did not get the newest frame"
        assert report["seen"] == sorted(report["seen"]), "frames out of order"
    slow = reports[2]["seen"]
    print("frames received by the viewers:", [len(r["seen"]) for r in reports])
    assert len(slow) < len(results) // 2, f"the slow viewer was sent {len(slow)} of {len(results)}: a queue?"
    assert stats["gaps"] == 1 and stats["reconnects"] == 2 and stats["dropped"] == 6


def test_no_viewer_no_encode(results: list[StreamResult]) -> None:
    with BrowserView("127.0.0.1", 0) as view:
        for result in results[:10]:
            view.write(result)
        assert view.frames_written == 10 and view.frames_encoded == 0
        assert _stats(view)["frames"] == 10


def test_close_releases_the_port(results: list[StreamResult]) -> None:
    view = BrowserView("127.0.0.1", 0)
    port = view.port
    reader = urllib.request.urlopen(view.url + "stream.mjpg", timeout=5)  # an open viewer must not hold it
    _wait(lambda: view.viewers == 1, 10, "the viewer")
    view.write(results[0])
    assert reader.read(20).startswith(b"--")  # a frame arrives
    view.close()
    reader.read()  # then EOF: the stream ends instead of hanging (the 5 s socket timeout would raise)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    BrowserView("127.0.0.1", port).close()  # the same port again, at once


def test_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(OptionError, match=f"127.0.0.1:{port}"):
            BrowserView("127.0.0.1", port)


# -- (c) a non-loopback bind warns loudly ---------------------------------------------------------------------

def test_non_loopback_warning_logic() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert exposure_warning(host, 8080) is None, host
    for host in ("0.0.0.0", "::", "192.168.1.20", "10.0.0.5"):
        message = exposure_warning(host, 8080)
        assert message and f"{host}:8080" in message and "anyone on the network" in message, host
    assert "every network interface" in exposure_warning("0.0.0.0", 8080)


def test_non_loopback_view_warns_before_binding() -> None:
    """192.0.2.1 (TEST-NET-1) is on no interface here: the warning comes first, then the bind fails cleanly."""
    with pytest.warns(UserWarning, match="anyone on the network"), pytest.raises(OptionError, match="192.0.2.1"):
        BrowserView("192.0.2.1", 0)


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address(":9000") == ("127.0.0.1", 9000)
    assert parse_address("localhost") == ("localhost", 8080)
    assert parse_address("[::1]:8081") == ("::1", 8081)
    with pytest.raises(OptionError, match="HOST:PORT"):
        parse_address("127.0.0.1:http")
