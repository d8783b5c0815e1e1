"""RTSP test server (Debian's GStreamer RTSP server) on 127.0.0.1, run as a separate process.

    /usr/bin/python3 rtsp_server.py --port 8554 [--fps 25] [--size 320x240] [--codec h264|jpeg]
                                    [--stall-after N] [--end-after N] [--file clip.mp4]

Serves ``rtsp://127.0.0.1:PORT/stream``: frames made by ``frame_stamp.py`` (global frame index and send
time in the pixels) pushed into an ``appsrc`` at ``--fps``, encoded with x264 (zero-latency, a key
frame every second so a reconnecting client decodes quickly) or JPEG. Needs ``python3-gi``,
``gir1.2-gst-rtsp-server-1.0`` and the GStreamer plugins (see .ci/run): run it with the system
python, which has ``gi``. ``--stall-after N``: each client's stream goes silent after N frames
(the RTSP session stays up), the stall a watchdog must notice. ``--end-after N``: each client's stream
ends normally after N frames (end-of-stream into the ``appsrc``: the server sends RTCP BYE, the way a
camera or a media server ends a stream). ``--file clip.mp4``: serve a recorded H.264 MP4 instead, in
real time, as a media server does a recording (its SDP states the duration, so the client knows the
frame count). Prints ``READY <port>`` once listening.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frame_stamp import stamped_frame  # noqa: E402

ENCODERS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate=2000 "
            "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1",
    "jpeg": "jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26",
}


class Feeder:
    """Pushes stamped frames into every configured ``appsrc`` at the stream's frame rate."""

    def __init__(self, fps: int, width: int, height: int, stall_after: int | None,
                 end_after: int | None = None) -> None:
        self.fps, self.width, self.height, self.stall_after = fps, width, height, stall_after
        self.end_after = end_after
        self.sources: dict[Gst.Element, int] = {}  # appsrc -> frames pushed into it
        self.lock = threading.Lock()
        self.start = time.monotonic()

    def add(self, appsrc: Gst.Element) -> None:
        with self.lock:
            self.sources[appsrc] = 0

    def run(self) -> None:
        index = 0
        while True:
            index = max(index + 1, int((time.monotonic() - self.start) * self.fps))
            delay = self.start + index / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            data = stamped_frame(index, self.width, self.height)
            with self.lock:
                sources = [src for src, sent in self.sources.items()
                           if self.stall_after is None or sent < self.stall_after]
            for appsrc in sources:
                buffer = Gst.Buffer.new_wrapped(data)
                with self.lock:
                    if appsrc.emit("push-buffer", buffer) != Gst.FlowReturn.OK:  # client gone: forget it
                        del self.sources[appsrc]
                        continue
                    self.sources[appsrc] += 1
                    if self.sources[appsrc] == self.end_after:  # a normal end of this client's stream
                        appsrc.emit("end-of-stream")
                        del self.sources[appsrc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    parser.add_argument("--stall-after", type=int, default=None)
    parser.add_argument("--end-after", type=int, default=None)
    parser.add_argument("--file", default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    Gst.init(None)
    feeder = Feeder(args.fps, width, height, args.stall_after, args.end_after)
    if args.file:
        launch = (f"( filesrc location={args.file} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 "
                  "config-interval=1 )")
    else:
        launch = (f"( appsrc name=src is-live=true do-timestamp=true format=time "
                  f"caps=video/x-raw,format=BGR,width={width},height={height},framerate={args.fps}/1 "
                  f"! queue leaky=downstream max-size-buffers=2 ! videoconvert ! video/x-raw,format=I420 ! "
                  f"{ENCODERS[args.codec].format(fps=args.fps)} )")
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)  # each client its own pipeline: a reconnecting client starts clean
    if not args.file:
        factory.connect("media-configure",
                        lambda _f, media: feeder.add(media.get_element().get_by_name_recurse_up("src")))
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on 127.0.0.1:{args.port}")
    if not args.file:
        threading.Thread(target=feeder.run, daemon=True).start()
    print(f"READY {args.port}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
