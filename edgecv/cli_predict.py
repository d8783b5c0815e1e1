"""The ``edgecv predict`` command: an artifact over images, video, cameras and streams.

Registered on :data:`edgecv.cli.app` when :mod:`edgecv.cli` imports this module. Thin like the rest
of the CLI: :func:`edgecv.runtimes.predict_source` runs the stream, :func:`open_views` the live views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from edgecv.cli import app, console, user_errors
from edgecv.errors import EdgecvError


@app.command()
@user_errors
def predict(
    artifact: str = typer.Argument(..., help="Exported model (.onnx, or .engine with its .json), or a model on a "
                                   "Triton server: grpc://HOST:8001/NAME (backend triton)."),
    source: str = typer.Option(..., help="Image, folder of images, video file, camera index or stream URL."),
    save: Optional[Path] = typer.Option(None, help="Folder for annotated images/video and predictions.jsonl."),
    conf: Optional[float] = typer.Option(None, help="Extra score threshold above the artifact's."),
    threads: Optional[int] = typer.Option(None, help="Inference threads."),
    backend: str = typer.Option("auto", help="auto (by suffix), onnxruntime, openvino, tensorrt or triton."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N; default: the backend's own."),
    rect: bool = typer.Option(False, "--rect", help="Letterbox to the smallest stride-multiple rectangle "
                              "(a 640x480 frame runs at 480x640); needs an artifact exported with --dynamic."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", help="Refuse images (and video frames) larger "
                                             "than this many pixels, before decoding; default 100000000; 0: no limit."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many frames."),
    policy: Optional[str] = typer.Option(None, help="latest (keep only the newest frame; default for cameras and "
                                         "streams) or every (every frame in order; default for files)."),
    track: bool = typer.Option(False, "--track", help="Persistent track ids (needs the 'track' extra)."),
    quiet: bool = typer.Option(False, "--quiet", help="Without --save: do not print one line per frame."),
    show: bool = typer.Option(False, "--show", help="Show the annotated stream in a window (needs a display "
                              "and a GUI OpenCV; says what is missing)."),
    stall_timeout: float = typer.Option(2.0, help="Cameras / streams: seconds without a frame before the "
                                        "source is reopened (with backoff up to 1 s)."),
    give_up_after: Optional[float] = typer.Option(None, help="Cameras / streams: end with an error after this "
                                                  "many seconds without frames; default: keep reconnecting."),
    serve: Optional[str] = typer.Option(None, help="Serve the annotated stream + stats to a browser at HOST:PORT "
                                        "(e.g. 127.0.0.1:8080; needs the 'serve-view' extra)."),
    topic: Optional[str] = typer.Option(None, help="ROS bag sources (.bag, .db3, .mcap, a folder with "
                                        "metadata.yaml): the sensor_msgs/Image or CompressedImage topic to read."),
    save_bag: Optional[Path] = typer.Option(None, "--save-bag", help="Write ROS 2 detections to this .mcap "
                                            "(vision_msgs/Detection2DArray + Foxglove ImageAnnotations per frame; "
                                            "needs the 'ros' extra)."),
    save_bag_images: bool = typer.Option(True, "--save-bag-images/--no-save-bag-images",
                                         help="With --save-bag: also write each frame as a JPEG CompressedImage."),
    foxglove: Optional[str] = typer.Option(None, help="Serve image, box annotations, detections and stats to "
                                           "Foxglove at HOST:PORT (e.g. 127.0.0.1:8765; needs the 'ros' extra)."),
) -> None:
    """Run an exported model over images, a folder, a video, a camera or a stream; save annotated output.

    Ctrl-C / SIGTERM end the run normally (outputs finalised, summary printed, exit 0); a source
    error prints the summary and the files written, then exits 2.
    """
    from edgecv.runtimes import Predictor, predict_source
    from edgecv.runtimes.backends.triton import is_server_url
    from edgecv.runtimes.image import DEFAULT_MAX_PIXELS
    from edgecv.runtimes.streams.sinks.views import open_views

    model = artifact if is_server_url(artifact) else Path(artifact)  # a URL stays a string: Path folds its "//"

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else (max_pixels or None)
    per_frame = None if save or quiet or show or serve or foxglove else _print_result
    # checked (display, free port, paths) before the model is opened
    views = open_views(show=show, serve=serve, save_bag=save_bag, bag_images=save_bag_images, foxglove=foxglove)
    _announce_views(views)
    try:
        with Predictor(model, backend=backend, device=device, threads=threads, rect=rect,
                       max_pixels=limit, backend_options=_stream_backend_options(backend, artifact)) as predictor:
            try:
                summary = predict_source(predictor, int(source) if source.isdigit() else source, save, conf=conf,
                                         max_frames=max_frames, policy=policy, track=track, sinks=views,
                                         capture={"stall_timeout": stall_timeout, "give_up_after": give_up_after},
                                         show_progress=per_frame is None, on_result=per_frame, topic=topic)
            except EdgecvError as exc:
                if getattr(exc, "summary", None) is not None:  # what ran and what was written, then the error
                    console.print(escape(str(exc.summary)), highlight=False)
                raise
    finally:
        for view in views:  # idempotent: the stream closes them too when it ran
            view.close()
    console.print(escape(str(summary)), highlight=False)
    _report_bags(views)


def _announce_views(views: list) -> None:
    """Print where to watch: the browser view (http://) or the Foxglove server (ws://)."""
    for view in views:
        if getattr(view, "url", None):
            where = "Foxglove: open a WebSocket connection to" if view.url.startswith("ws") else "watch at"
            console.print(f"[green]{where}[/] {view.url}")


def _stream_backend_options(backend: str, artifact: str) -> dict[str, bool]:
    """Backend options for a stream: ONNX Runtime without spinning threads.

    A stream decodes, draws and encodes beside inference: ONNX Runtime's spinning threads would
    take those cores (measured 1.00x -> 1.14x pipelined vs naive on a 1080p clip, bench_stream.py).
    """
    on_ort = backend == "onnxruntime" or (backend == "auto" and artifact.endswith(".onnx"))
    return {"spinning": False} if on_ort else {}


def _report_bags(views: list) -> None:
    """One line per --save-bag sink: the file and its Detection2DArray message count."""
    for view in views:
        if getattr(view, "messages", None) is not None:
            console.print(escape(f"wrote {view.path} ({view.messages} Detection2DArray messages)"), highlight=False)


def _print_result(result) -> None:
    """One short line per frame: name, detections per class (label maps: share of pixels per class), latency."""
    counts: dict[str, int] = {}
    for label in result.detections.labels:
        counts[label] = counts.get(label, 0) + 1
    found = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "nothing"
    if result.semantic is not None:
        pixels = max(1, result.semantic.labels.size)
        found = ", ".join(f"{name} {n / pixels:.0%}" for name, n in result.semantic.counts().items())
    ms = sum(result.timing.get(k, 0.0) for k in ("pre", "infer", "post"))
    dropped = f", {result.dropped} dropped" if result.dropped else ""
    console.print(escape(f"{result.name}: {found} ({ms:.1f} ms{dropped})"), highlight=False)

