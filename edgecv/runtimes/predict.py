"""Run a predictor over a whole source and save what it saw: the API behind ``edgecv predict``.

With ``save_dir``:

* image / folder sources: one annotated image per input, same relative file name;
* video / camera / stream sources: one annotated ``.mp4`` (a fragmented MP4 that plays even after a
  hard kill; see :mod:`~edgecv.runtimes.streams.sinks.video_writers`), named after the video
  file (``clip.avi`` -> ``clip.mp4``), ``camera0.mp4`` or ``stream.mp4``;
* always ``predictions.jsonl``: one line per frame, ``StreamResult.to_dict()`` (``name``,
  ``frame_index``, ``timestamp`` and the ``edgecv.result/1`` document, boxes in original-image
  pixels). It is a live output: opened when the first frame's result is ready and flushed after
  every frame, so a crash keeps every line written so far, and a run
  that fails before its first frame leaves the previous file untouched.

Every option is validated (:class:`~edgecv.errors.OptionError`) and the source opened
(:class:`~edgecv.errors.SourceError`) before anything in ``save_dir`` is touched. Annotated
images are finished files, written atomically (:mod:`edgecv.fileio`); the mp4 is a recording
that grows while the run lasts.

A camera or stream runs until it ends, ``max_frames`` is reached, or Ctrl-C / SIGTERM (which end
the run normally: outputs are finalised and the summary has ``interrupted=True``). The frame
loop itself is :mod:`edgecv.runtimes.streams.pipeline`'s.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgecv.errors import EdgecvError, OptionError, SourceError
from edgecv.fileio import WriteError
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.predictor import Predictor, check_conf
from edgecv.runtimes.sources import FrameSource, SkippedFile, SourceLike
from edgecv.runtimes.streams.pipeline import Stream, check_max_frames, stream
from edgecv.runtimes.streams.readers import StreamSource, check_policy, open_source
from edgecv.runtimes.streams.result import Gap, Sink, StreamResult
from edgecv.runtimes.streams.sinks.callback import CallbackSink
from edgecv.runtimes.streams.sinks.images import ImagesSink
from edgecv.runtimes.streams.sinks.jsonl import JsonlSink
from edgecv.runtimes.streams.sinks.video import VideoSink

JSONL_NAME = "predictions.jsonl"


@dataclass
class PredictSummary:
    """What :func:`predict_source` did."""

    source: str
    kind: str
    frames: int = 0
    detections: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedFile] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    jsonl: Path | None = None
    elapsed_s: float = 0.0
    interrupted: bool = False
    dropped: int = 0  # frames the ``latest`` policy skipped (live sources)
    gaps: list[Gap] = field(default_factory=list)  # stretches without frames a live capture reported
    problems: list[str] = field(default_factory=list)  # the source's own, e.g. "ended at frame 45 of 90"

    @property
    def fps(self) -> float:
        """Frames processed per second, end to end (decode, predict, draw, write)."""
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form (paths as strings) for reports and the CLI."""
        return {
            "source": self.source, "kind": self.kind, "frames": self.frames, "detections": self.detections,
            "per_class": dict(self.per_class), "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "outputs": [str(p) for p in self.outputs], "jsonl": None if self.jsonl is None else str(self.jsonl),
            "elapsed_s": round(self.elapsed_s, 3), "fps": round(self.fps, 2), "interrupted": self.interrupted,
            "dropped": self.dropped,
            "gaps": [{"start": g.start, "end": g.end, "reason": g.reason, "reconnects": g.reconnects}
                     for g in self.gaps],
            "problems": list(self.problems),
        }

    def __str__(self) -> str:
        """A few lines for people: counts per class, speed, what was written, what was skipped."""
        classes = ", ".join(f"{name} {count}" for name, count in sorted(self.per_class.items()))
        lines = [f"{self.source} ({self.kind}): {self.frames} frame{'s' * (self.frames != 1)}, "
                 f"{self.detections} detection{'s' * (self.detections != 1)}{f' ({classes})' if classes else ''} "
                 f"in {self.elapsed_s:.2f} s ({self.fps:.1f} frames/s end to end)"
                 f"{f'; {self.dropped} dropped (latest policy)' if self.dropped else ''}"
                 f"{'; interrupted' if self.interrupted else ''}"]
        written = [str(p) for p in self.outputs] + ([str(self.jsonl)] if self.jsonl else [])
        if written:
            shown = ", ".join(written[:3]) + (f" and {len(written) - 3} more" if len(written) > 3 else "")
            lines.append(f"wrote {shown}")
        lines += [f"skipped {s.path}: {s.reason}" for s in self.skipped]
        lines += [f"gap of {g.seconds:.1f} s ({g.reason}, {g.reconnects} reconnects)" for g in self.gaps]
        lines += [f"source problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def add_result(self, result: StreamResult) -> None:
        """Count one stream result (its detections and the frames dropped before it)."""
        self.add(result.detections)
        self.dropped += result.dropped
        if result.gap is not None:
            self.gaps.append(result.gap)

    def add(self, detections: Detections) -> None:
        """Count one frame's detections."""
        self.frames += 1
        self.detections += len(detections)
        for label in detections.labels:
            self.per_class[label] = self.per_class.get(label, 0) + 1


def video_output_path(frames: FrameSource | StreamSource, save_dir: Path) -> Path | None:
    """Where the annotated mp4 of a video / camera / stream source goes (``None`` for image sources)."""
    if frames.kind in ("video", "bag"):
        return save_dir / f"{Path(frames.label).stem}.mp4"
    if frames.kind == "camera":
        return save_dir / f"{frames.label}.mp4"  # camera0.mp4
    if frames.kind == "stream":
        return save_dir / "stream.mp4"
    if frames.kind == "frames":  # a Python iterable of frames
        return save_dir / "frames.mp4"
    return None


def check_no_overwrite(frames: FrameSource | StreamSource, save_dir: Path) -> None:
    """Refuse a ``save_dir`` whose outputs would overwrite the source's own files."""
    if frames.root is None or save_dir.resolve() != frames.root.resolve():
        return
    video = video_output_path(frames, save_dir)
    if video is None or video.name == frames.label:  # same image names, or clip.mp4 -> clip.mp4
        raise SourceError(f"expected a save_dir other than the source folder {frames.root}, found the same "
                          "folder: the annotated outputs would overwrite the inputs")


def check_options(save_dir: Path | None, conf: float | None, max_frames: int | None) -> float | None:
    """Validate :func:`predict_source`'s options before anything is opened; returns ``conf`` as a float.

    Raises:
        OptionError: ``conf`` outside [0, 1], ``max_frames`` not a positive int, ``save_dir`` an existing file.
    """
    conf = check_conf(conf)
    check_max_frames(max_frames)
    if save_dir is not None and save_dir.exists() and not save_dir.is_dir():
        raise OptionError(f"save_dir: expected a folder (existing or new), found the file {save_dir}")
    return conf


def _progress(show: bool) -> Progress:
    columns = [TextColumn("[bold]predict[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[dets]} detections"), TimeElapsedColumn()]
    return Progress(*columns, disable=not show, transient=False)


def predict_source(predictor: Predictor, source: SourceLike | Iterable[np.ndarray],
                   save_dir: str | os.PathLike[str] | None = None, *, conf: float | None = None,
                   show_progress: bool = True, max_frames: int | None = None, policy: str | None = None,
                   track: Any = False, sinks: Sequence[Sink] = (),
                   on_result: Callable[[StreamResult], object] | None = None,
                   capture: dict[str, Any] | None = None, topic: str | None = None,
                   inflight: int | None = None) -> PredictSummary:
    """Run ``predictor`` over every frame of ``source``; optionally save annotated outputs + JSONL.

    A thin user of :func:`~edgecv.runtimes.streams.pipeline.stream` (the one frame loop).

    Args:
        predictor: an open :class:`~edgecv.runtimes.predictor.Predictor`.
        source: anything :func:`~edgecv.runtimes.sources.iter_source` accepts, a ``FrameSource``,
            or an iterable of BGR frames.
        save_dir: where to write annotated images / the mp4 and ``predictions.jsonl`` (created);
            ``None`` writes nothing.
        conf: extra score threshold for this run (see ``Predictor``).
        show_progress: draw a rich progress bar on stderr.
        max_frames: stop after this many frames (handy for cameras and streams).
        policy: ``"latest"`` | ``"every"``; default by source kind (see ``stream``).
        track: persistent track ids (see ``stream``).
        sinks: more sinks, after the video / images and jsonl ones.
        on_result: called with every :class:`StreamResult`, in the caller's thread.
        capture: options for cameras, URLs and video files (see :func:`~edgecv.runtimes.stream`).
        topic: the image topic of a ROS bag source (``.bag``, ``.db3``, ``.mcap``, a folder with
            ``metadata.yaml``); required for bags, refused for other sources.
        inflight: inferences in flight (see :func:`~edgecv.runtimes.stream`; OpenVINO async requests).

    Image files larger than ``predictor.max_pixels`` are refused before decoding (skipped in a folder).
    Ctrl-C (and SIGTERM while running in the main thread) ends the run normally: outputs are
    finalised and the summary has ``interrupted=True``.

    Raises:
        OptionError: a bad ``conf`` / ``max_frames`` / ``save_dir`` / ``policy``, before anything is opened.
        SourceError: the source cannot be opened, a camera vanishes, or ``save_dir``
            would overwrite the inputs. Outputs written so far are finalised first, and the
            exception carries the run's summary as ``exc.summary``.
        WriteError: an output cannot be written (disk full, permissions).
    """
    out_dir = None if save_dir is None else Path(save_dir)
    conf = check_options(out_dir, conf, max_frames)
    opened = open_source(source, predictor.max_pixels, capture, topic=topic)
    try:
        policy = check_policy(policy, opened)
        if out_dir is not None:
            check_no_overwrite(opened, out_dir)
        summary = PredictSummary(source=opened.label, kind=opened.kind)
        outputs = [] if out_dir is None else _output_sinks(opened, out_dir, summary)
    except BaseException:
        opened.close()
        raise
    counter = CallbackSink(summary.add_result)  # in the sink thread: the summary counts what the outputs hold
    with stream(predictor, opened, policy=policy, track=track, sinks=[counter, *outputs, *sinks],
                max_frames=max_frames, conf=conf, inflight=inflight) as results:
        start = time.perf_counter()
        completed = False
        try:
            _consume(results, summary, show_progress, max_frames, on_result)
            completed = True
        except KeyboardInterrupt:
            summary.interrupted = completed = True
        except EdgecvError as exc:
            exc.summary = summary  # type: ignore[attr-defined]  # the CLI prints it before the error
            raise
        finally:
            _finish(results, outputs, summary, completed, start)
    return summary


def _output_sinks(source: StreamSource, out_dir: Path, summary: PredictSummary) -> list[Sink]:
    """The annotated images or video plus ``predictions.jsonl`` under ``out_dir`` (created)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from exc
    summary.jsonl = out_dir / JSONL_NAME
    video = video_output_path(source, out_dir)
    # a file is tagged with its container's rate; a live source (or an iterable) with its measured one
    fps = source.fps if source.fps and not source.live else None
    annotated: Sink = ImagesSink(out_dir) if video is None else VideoSink(video, fps)
    return [annotated, JsonlSink(summary.jsonl)]


def _consume(results: Stream, summary: PredictSummary, show_progress: bool, max_frames: int | None,
             on_result: Callable[[StreamResult], object] | None) -> None:
    """Iterate the stream: count detections, advance the progress bar, call ``on_result``."""
    known = [n for n in (results.source.total, max_frames) if n]
    with _progress(show_progress) as progress:
        task = progress.add_task(results.source.label, total=min(known) if known else None, dets=0)
        for result in results:
            if on_result is not None:
                on_result(result)
            progress.update(task, completed=summary.frames, dets=summary.detections)


def _finish(results: Stream, outputs: list[Sink], summary: PredictSummary, completed: bool, start: float) -> None:
    """Close the stream (finalising every sink), then record what was written and skipped."""
    try:
        results.close()
    finally:
        for sink in outputs:
            if isinstance(sink, JsonlSink) and completed:
                sink.clear_if_unused()
            if isinstance(sink, ImagesSink):
                summary.outputs += sink.outputs
            elif isinstance(sink, VideoSink) and sink.frames:
                summary.outputs.append(sink.path)
        if results.source.frame_source is not None:
            summary.skipped = list(results.source.frame_source.skipped)
        summary.problems = results.source.problems
        summary.elapsed_s = time.perf_counter() - start
