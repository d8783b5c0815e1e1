"""The browser view (``--serve HOST:PORT``): watch a headless robot's annotated stream in a browser.

A :class:`BrowserView` is a :class:`~edgecv.runtimes.streams.result.Sink`. It serves, from a
background thread, a small page with

* ``/``            the page: the live image and the stream's figures, refreshed twice a second;
* ``/stream.mjpg`` the annotated stream as MJPEG (``multipart/x-mixed-replace``, one JPEG a part),
  which every browser shows in a plain ``<img>`` and ``curl``/OpenCV/VLC can read;
* ``/stats.json``  the figures the page polls (FPS, latency, dropped frames, gaps, reconnects,
  viewers, encodes), see :meth:`StreamStats.snapshot`.

**One JPEG encode per frame at most**, whatever the number of viewers: :meth:`BrowserView.write`
annotates and encodes once (only while someone watches) and publishes the bytes; every viewer's
handler sends the newest published bytes. Nothing queues per viewer: a slow viewer, still busy
sending an older frame, simply skips to the newest one when it is ready for more.

**Why aiohttp**: one maintained package (aio-libs) that is both the HTTP server and the streaming
response, works offline, runs on an asyncio loop we own in a thread (no signal handlers taken
from the host program, unlike a stand-alone server's ``run()``), accepts a socket we bound
ourselves (so a busy port is a clear error in the constructor, and port 0 works for tests), and
shuts down by cancelling the open streaming handlers, which releases the port at :meth:`close`.
Starlette would need uvicorn beside it, whose shutdown waits on open streaming responses; Flask
would need a WSGI server and a thread per viewer. Install with ``pip install "edgecv[serve-view]"``.

Binding anything but loopback (``0.0.0.0``, a LAN address) logs and warns loudly: the view has no
authentication, so anyone who can reach the address can watch.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import sys
import threading
import time
import warnings
import weakref
from collections import deque
from typing import Any

import cv2

from edgecv.errors import MissingDependencyError, OptionError
from edgecv.runtimes.draw import annotate
from edgecv.runtimes.streams.result import StreamResult

log = logging.getLogger(__name__)

BOUNDARY = "edgecvframe"
_START_TIMEOUT = 10.0  # seconds for the server thread to start listening
_STOP_TIMEOUT = 5.0  # seconds for close() to stop it
# Bytes a viewer's connection may hold in send buffers (kernel + asyncio). Loopback and LAN sockets
# autotune their send buffer up to megabytes: dozens of frames a slow viewer would watch with a
# growing delay. A small buffer makes the write wait instead, and the viewer skips to the newest.
_SEND_BUFFER = 64 * 1024


def parse_address(text: str, default_port: int = 8080) -> tuple[str, int]:
    """``"HOST:PORT"``, ``"HOST"``, ``":PORT"`` or ``"[::1]:PORT"`` → ``(host, port)``; loopback by default."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):  # "host" or a bare IPv6 address
        host, port_text = text.strip(), str(default_port)
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise OptionError(f"--serve: expected HOST:PORT with a port in 0..65535, found {text!r}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is only reachable from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: resolve it; unresolvable names fail later, at bind
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def exposure_warning(host: str, port: int, what: str = "browser view") -> str | None:
    """The warning a bind of ``what`` to ``host:port`` deserves, or None for loopback."""
    if is_loopback(host):
        return None
    where = "every network interface of this machine" if host in ("0.0.0.0", "::", "") else host
    return (f"{what} bound to {host}:{port} ({where}), not loopback: anyone on the network who can "
            f"reach it can watch the stream, there is no authentication; use 127.0.0.1 (the default) "
            f"and an SSH tunnel to watch a remote machine")


class StreamStats:
    """Running figures of a stream, updated from :meth:`update` (one call per result, one thread).

    FPS is measured over the last ``window`` seconds of results; latency is each result's
    ``age`` (capture → result ready); ``dropped`` sums the frames the ``latest`` policy skipped;
    ``gaps``/``reconnects`` count source outages and reopen attempts.
    """

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._times: deque[float] = deque()
        self.frames = 0
        self.dropped = 0
        self.gaps = 0
        self.reconnects = 0
        self.last_gap = ""
        self.latency_ms = 0.0
        self.infer_ms = 0.0
        self.index = -1
        self.name = ""

    def update(self, result: StreamResult, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        self.frames += 1
        self.dropped += result.dropped
        if result.gap is not None:
            self.gaps += 1
            self.reconnects += result.gap.reconnects
            self.last_gap = f"{result.gap.reason} ({result.gap.seconds:.1f} s)"
        self.latency_ms = result.age * 1000.0
        self.infer_ms = float(result.timing.get("infer", 0.0))
        self.index, self.name = result.index, result.name

    @property
    def fps(self) -> float:
        times = self._times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    def snapshot(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict (what ``/stats.json`` returns, plus the view's own keys)."""
        return {"frames": self.frames, "fps": round(self.fps, 2), "latency_ms": round(self.latency_ms, 1),
                "infer_ms": round(self.infer_ms, 1), "dropped": self.dropped, "gaps": self.gaps,
                "reconnects": self.reconnects, "last_gap": self.last_gap, "index": self.index, "name": self.name}


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ background:#111; color:#eee; font:15px system-ui, sans-serif; margin:0; }}
header {{ padding:6px 12px; display:flex; gap:18px; flex-wrap:wrap; background:#222; }}
header b {{ color:#8cf; }}
img {{ display:block; max-width:100vw; max-height:calc(100vh - 40px); margin:auto; }}
</style></head>
<body>
<header id="stats">
 <span>FPS <b id="fps">-</b></span><span>latency <b id="latency_ms">-</b> ms</span>
 <span>infer <b id="infer_ms">-</b> ms</span><span>frames <b id="frames">-</b></span>
 <span>dropped <b id="dropped">-</b></span><span>reconnects <b id="reconnects">-</b></span>
 <span>gaps <b id="gaps">-</b></span><span>viewers <b id="viewers">-</b></span>
 <span id="last_gap"></span>
</header>
<img id="stream" src="/stream.mjpg" alt="live stream">
<script>
async function poll() {{
  try {{
    const s = await (await fetch('/stats.json', {{cache: 'no-store'}})).json();
    for (const k of ['fps','latency_ms','infer_ms','frames','dropped','reconnects','gaps','viewers'])
      document.getElementById(k).textContent = s[k];
    document.getElementById('last_gap').textContent = s.last_gap ? 'last gap: ' + s.last_gap : '';
  }} catch (e) {{ document.getElementById('fps').textContent = 'offline'; }}
}}
poll(); setInterval(poll, {poll_ms});
</script></body></html>
"""


class BrowserView:
    """Serve the annotated stream on ``http://host:port/`` until :meth:`close`.

    ``port=0`` picks a free port (see :attr:`port`). ``quality`` is the JPEG quality (1-100).
    Counters for tests and benchmarks: :attr:`frames_written`, :attr:`frames_encoded`,
    :attr:`viewers` (open MJPEG connections).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, *, quality: int = 80,
                 title: str = "edgecv live", poll_ms: int = 500) -> None:
        try:
            from aiohttp import web
        except ImportError as exc:
            raise MissingDependencyError('the browser view needs aiohttp: pip install "edgecv[serve-view]"') from exc
        if not 1 <= quality <= 100:
            raise OptionError(f"browser view quality: expected 1..100, found {quality}")
        message = exposure_warning(host, port)
        if message:  # before binding: a user must see it even if the bind then fails
            log.warning(message)
            warnings.warn(message, UserWarning, stacklevel=2)
        self.host, self.quality = host, quality
        self.stats = StreamStats()
        self.frames_written = 0
        self.frames_encoded = 0
        self.viewers = 0
        self._page = PAGE.format(title=title, poll_ms=int(poll_ms)).encode()
        self._jpeg: bytes = b""
        self._seq = 0  # increments with every published JPEG
        self._lock = threading.Lock()  # guards stats vs the server thread's reads
        self._closed = False
        sock = self._bind(host, port)
        self.port: int = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._new_frame = asyncio.Event()
        self._runner = web.AppRunner(
            self._app(web), handle_signals=False, access_log=None,
            handler_cancellation=True,  # a viewer that hangs up is gone at once (not at the next frame)
            shutdown_timeout=1.0)  # close(): open viewers get 1 s, then are cancelled
        started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, args=(web, sock, started), name="edgecv-browser-view",
                                        daemon=True)
        self._thread.start()
        if not started.wait(_START_TIMEOUT) or self._error is not None:
            self.close()
            raise OptionError(f"browser view on {host}:{self.port}: the server did not start ({self._error})")
        # a script that never calls close() still stops the server cleanly at exit (finalize runs atexit)
        self._finalizer = weakref.finalize(self, BrowserView._atexit_close, weakref.ref(self))
        log.info("browser view: http://%s:%d/", host if ":" not in host else f"[{host}]", self.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        """A listening socket on ``host:port``; a busy port or a foreign address is a one-line error."""
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise OptionError(f"browser view: expected a host name or address of this machine, "
                              f"found {host!r} ({exc})") from exc
        if sys.platform != "win32":  # restart at once on the same port (on Windows it would allow hijacking)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise OptionError(f"browser view: expected a free port on an address of this machine, "
                              f"found {host}:{port} unusable ({exc.strerror})") from exc
        sock.setblocking(False)
        return sock

    def _app(self, web: Any) -> Any:
        app = web.Application()
        app.router.add_get("/", self._handle_page)
        app.router.add_get("/stream.mjpg", self._handle_stream)
        app.router.add_get("/stats.json", self._handle_stats)
        return app

    def _serve(self, web: Any, sock: socket.socket, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._runner.setup())
            site = web.SockSite(self._runner, sock)
            self._loop.run_until_complete(site.start())
        except OSError as exc:  # e.g. the socket was refused by the OS after bind
            self._error = exc
            sock.close()
            self._loop.close()
            started.set()
            return
        started.set()
        self._loop.run_forever()
        # close() stopped the loop: cancel the viewers' handlers, close the socket, free the port
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    # -- the sink -------------------------------------------------------------------------------

    def write(self, result: StreamResult) -> None:
        """Update the figures; while anyone watches, annotate + encode once and publish the JPEG."""
        with self._lock:
            self.stats.update(result)
            self.frames_written += 1
        if self._closed or self.viewers == 0:  # nobody watches: no encode at all
            return
        ok, buf = cv2.imencode(".jpg", annotate(result.image, result.result),
                               [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:  # an image OpenCV cannot encode is a bug upstream, not a viewer's problem
            log.warning("browser view: JPEG encode failed for frame %s", result.index)
            return
        self.frames_encoded += 1
        self._publish(buf.tobytes())

    def _publish(self, jpeg: bytes) -> None:
        self._jpeg = jpeg  # one reference swap: handlers read either the old or the new bytes
        try:
            self._loop.call_soon_threadsafe(self._wake_viewers)
        except RuntimeError:  # the loop closed between the check and the call (close() racing)
            pass

    def _wake_viewers(self) -> None:
        """On the loop: bump the sequence and wake every waiting viewer (one broadcast Event per frame)."""
        self._seq += 1
        event, self._new_frame = self._new_frame, asyncio.Event()
        event.set()

    def close(self) -> None:
        """Stop the server, end every viewer's stream and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._loop.is_running():
            try:  # wake the viewers (they see _closed and end their streams), then stop the loop
                self._loop.call_soon_threadsafe(self._wake_viewers)
                self._loop.call_soon_threadsafe(self._loop.stop)
            except RuntimeError:  # the loop closed on its own meanwhile
                pass
        self._thread.join(_STOP_TIMEOUT)
        if self._thread.is_alive():
            log.warning("browser view: the server thread did not stop within %.0f s", _STOP_TIMEOUT)
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()

    @staticmethod
    def _atexit_close(ref: weakref.ref[BrowserView]) -> None:
        view = ref()
        if view is not None:
            view.close()

    def __enter__(self) -> BrowserView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the handlers (on the server thread's loop) -----------------------------------------------

    async def _handle_page(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def _handle_stats(self, request: Any) -> Any:
        from aiohttp import web

        with self._lock:
            doc = self.stats.snapshot()
        doc.update(viewers=self.viewers, encoded=self.frames_encoded, written=self.frames_written)
        return web.Response(text=json.dumps(doc), content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    @staticmethod
    def _limit_send_buffer(transport: Any) -> None:
        if transport is None:
            return
        transport.set_write_buffer_limits(high=_SEND_BUFFER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)

    async def _handle_stream(self, request: Any) -> Any:
        from aiohttp import web

        response = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            "Cache-Control": "no-store", "Pragma": "no-cache"})
        await response.prepare(request)
        self._limit_send_buffer(request.transport)
        self.viewers += 1  # only touched on the loop's thread
        sent = self._seq if not self._jpeg else self._seq - 1  # send the current frame at once, if any
        try:
            while not self._closed:
                if self._seq == sent:
                    await self._new_frame.wait()
                    continue
                sent, jpeg = self._seq, self._jpeg  # the newest: frames published meanwhile are skipped
                await response.write(b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (BOUNDARY.encode(), len(jpeg), jpeg))
        except ConnectionError:  # the viewer left
            pass
        finally:
            self.viewers -= 1
            if self.viewers == 0:
                self._jpeg = b""  # the next viewer must not start with a frame from long ago
        return response
