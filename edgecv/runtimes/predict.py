"""Run a predictor over a whole source and save what it saw: the API behind ``edgecv predict``.

With ``save_dir``:

* image / folder sources: one annotated image per input, same relative file name;
* video / camera / stream sources: one annotated ``.mp4`` (``mp4v``), named after the video
  file (``clip.avi`` -> ``clip.mp4``), ``camera0.mp4`` or ``stream.mp4``;
* always ``predictions.jsonl``: one line per frame, ``{"name": ..., **Detections.to_dict()}``
  (boxes in original-image pixels). It is a live output: opened when the first frame's result
  is ready and flushed after every frame, so a crash keeps every line written so far, and a run
  that fails before its first frame leaves the previous file untouched.

Every option is validated (:class:`~edgecv.errors.OptionError`) and the source opened
(:class:`~edgecv.errors.SourceError`) before anything in ``save_dir`` is touched. Annotated
images are finished files, written atomically (:mod:`edgecv.fileio`); the mp4 is a recording
that grows while the run lasts.

A camera or stream runs until it ends, ``max_frames`` is reached, or Ctrl-C (which ends the
run normally: outputs are finalised and the summary has ``interrupted=True``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator

import cv2
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgecv.errors import OptionError, SourceError
from edgecv.fileio import WriteError, write_bytes
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.draw import annotate
from edgecv.runtimes.predictor import Predictor, check_conf
from edgecv.runtimes.sources import Frame, FrameSource, SkippedFile, SourceLike, iter_source

JSONL_NAME = "predictions.jsonl"
DEFAULT_FPS = 30.0


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
        }

    def __str__(self) -> str:
        """A few lines for people: counts per class, speed, what was written, what was skipped."""
        classes = ", ".join(f"{name} {count}" for name, count in sorted(self.per_class.items()))
        lines = [f"{self.source} ({self.kind}): {self.frames} frame{'s' * (self.frames != 1)}, "
                 f"{self.detections} detection{'s' * (self.detections != 1)}{f' ({classes})' if classes else ''} "
                 f"in {self.elapsed_s:.2f} s ({self.fps:.1f} frames/s end to end)"
                 f"{'; interrupted' if self.interrupted else ''}"]
        written = [str(p) for p in self.outputs] + ([str(self.jsonl)] if self.jsonl else [])
        if written:
            shown = ", ".join(written[:3]) + (f" and {len(written) - 3} more" if len(written) > 3 else "")
            lines.append(f"wrote {shown}")
        lines += [f"skipped {s.path}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)

    def add(self, detections: Detections) -> None:
        """Count one frame's detections."""
        self.frames += 1
        self.detections += len(detections)
        for label in detections.labels:
            self.per_class[label] = self.per_class.get(label, 0) + 1


def video_output_path(frames: FrameSource, save_dir: Path) -> Path | None:
    """Where the annotated mp4 of a video / camera / stream source goes (``None`` for image sources)."""
    if frames.kind == "video":
        return save_dir / f"{Path(frames.label).stem}.mp4"
    if frames.kind == "camera":
        return save_dir / f"{frames.label}.mp4"  # camera0.mp4
    if frames.kind == "stream":
        return save_dir / "stream.mp4"
    return None


def check_no_overwrite(frames: FrameSource, save_dir: Path) -> None:
    """Refuse a ``save_dir`` whose outputs would overwrite the source's own files."""
    if frames.root is None or save_dir.resolve() != frames.root.resolve():
        return
    video = video_output_path(frames, save_dir)
    if video is None or video.name == frames.label:  # same image names, or clip.mp4 -> clip.mp4
        raise SourceError(f"expected a save_dir other than the source folder {frames.root}, found the same "
                          "folder: the annotated outputs would overwrite the inputs")


class AnnotatedWriter:
    """Writes annotated frames: image files under ``save_dir`` (same relative names) or one mp4."""

    def __init__(self, frames: FrameSource, save_dir: Path) -> None:
        self.save_dir = save_dir
        self.video_path = video_output_path(frames, save_dir)
        self.fps = frames.fps or DEFAULT_FPS
        self._writer: cv2.VideoWriter | None = None
        self._size = (0, 0)
        self.outputs: list[Path] = []

    def write(self, name: str, image: np.ndarray) -> None:
        """Save ``image`` (BGR uint8) as ``save_dir/name``, or append it to the mp4."""
        if self.video_path is None:
            self._write_image(self.save_dir / name, image)
        else:
            self._write_frame(self.video_path, image)

    def _write_image(self, path: Path, image: np.ndarray) -> None:
        ok, data = cv2.imencode(path.suffix, image)
        if not ok:  # a format OpenCV reads but cannot write in this build: fall back to PNG
            path = path.with_suffix(".png")
            ok, data = cv2.imencode(".png", image)
        if not ok:
            raise WriteError(f"cannot write {path}: OpenCV cannot encode the annotated image")
        write_bytes(path, data.tobytes())  # atomic: a failed write keeps the previous image
        self.outputs.append(path)

    def _write_frame(self, path: Path, image: np.ndarray) -> None:
        if self._writer is None:
            h, w = image.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not writer.isOpened():
                raise WriteError(f"cannot write an mp4 (mp4v) video to {path}")
            self._writer, self._size = writer, (w, h)
            self.outputs.append(path)
        if (image.shape[1], image.shape[0]) != self._size:  # a stream changed resolution: keep the first
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)

    def close(self) -> None:
        """Finalise the mp4 (idempotent)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class JsonlWriter:
    """``predictions.jsonl``, a live output: truncated only when the first line is ready, flushed per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def _io(self, action: str) -> None:
        """Open the file if needed and run ``action`` on it (``""``: only open); OSError -> WriteError."""
        try:
            if self._handle is None:
                self._handle = self.path.open("w", encoding="utf-8")
            if action:
                self._handle.write(action)
                self._handle.flush()  # per frame: a crash or kill keeps every finished line
        except OSError as exc:
            raise WriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def write(self, record: dict) -> None:
        """Append ``record`` as one JSON line and flush it (opening the file on the first record)."""
        self._io(json.dumps(record) + "\n")

    def close(self, completed: bool) -> None:
        """Close the file. A ``completed`` run that recorded no frame still leaves an (empty) file,
        so the folder never shows the previous run's predictions as this run's."""
        if self._handle is None and completed:
            self._io("")
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def check_options(save_dir: Path | None, conf: float | None, max_frames: int | None) -> float | None:
    """Validate :func:`predict_source`'s options before anything is opened; returns ``conf`` as a float.

    Raises:
        OptionError: ``conf`` outside [0, 1], ``max_frames`` not a positive int, ``save_dir`` an existing file.
    """
    conf = check_conf(conf)
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or max_frames < 1):
        raise OptionError(f"max_frames: expected a positive int or None, found {max_frames!r}")
    if save_dir is not None and save_dir.exists() and not save_dir.is_dir():
        raise OptionError(f"save_dir: expected a folder (existing or new), found the file {save_dir}")
    return conf


def _chunks(frames: Iterable[Frame], size: int, limit: int | None) -> Iterator[list[Frame]]:
    """Lists of up to ``size`` frames, stopping after ``limit`` frames in total."""
    chunk: list[Frame] = []
    for count, frame in enumerate(frames, 1):
        chunk.append(frame)
        if len(chunk) == size or count == limit:
            yield chunk
            chunk = []
        if count == limit:
            break
    if chunk:
        yield chunk


def _progress(show: bool) -> Progress:
    columns = [TextColumn("[bold]predict[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[dets]} detections"), TimeElapsedColumn()]
    return Progress(*columns, disable=not show, transient=False)


def predict_source(predictor: Predictor, source: SourceLike, save_dir: str | os.PathLike[str] | None = None, *,
                   conf: float | None = None, show_progress: bool = True, max_frames: int | None = None
                   ) -> PredictSummary:
    """Run ``predictor`` over every frame of ``source``; optionally save annotated outputs + JSONL.

    Args:
        predictor: an open :class:`~edgecv.runtimes.predictor.Predictor`.
        source: anything :func:`~edgecv.runtimes.sources.iter_source` accepts, or a ``FrameSource``.
        save_dir: where to write annotated images / the mp4 and ``predictions.jsonl`` (created);
            ``None`` writes nothing.
        conf: extra score threshold for this run (see ``Predictor``).
        show_progress: draw a rich progress bar on stderr.
        max_frames: stop after this many frames (handy for cameras and streams).

    Image files larger than ``predictor.max_pixels`` are refused before decoding (skipped in a folder).

    Raises:
        OptionError: a bad ``conf`` / ``max_frames`` / ``save_dir``, before anything is opened.
        SourceError: the source cannot be opened, a camera / stream vanishes, or ``save_dir``
            would overwrite the inputs. Outputs written so far are finalised first.
        WriteError: an output cannot be written (disk full, permissions).
    """
    out_dir = None if save_dir is None else Path(save_dir)
    conf = check_options(out_dir, conf, max_frames)
    with iter_source(source, max_pixels=predictor.max_pixels) as frames:
        summary = PredictSummary(source=frames.label, kind=frames.kind)
        jsonl = None
        if out_dir is not None:
            check_no_overwrite(frames, out_dir)
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WriteError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from exc
            summary.jsonl = out_dir / JSONL_NAME
            jsonl = JsonlWriter(summary.jsonl)
        writer = None if out_dir is None else AnnotatedWriter(frames, out_dir)
        start = time.perf_counter()
        completed = False
        try:
            _run(predictor, frames, summary, writer, jsonl, conf, show_progress, max_frames)
            completed = True
        except KeyboardInterrupt:
            if frames.kind not in ("camera", "stream"):
                raise
            summary.interrupted = completed = True
        finally:
            if jsonl is not None:
                jsonl.close(completed)
            if writer is not None:
                writer.close()
                summary.outputs = writer.outputs
            summary.skipped = list(frames.skipped)
            summary.elapsed_s = time.perf_counter() - start
    return summary


def _run(predictor: Predictor, frames: FrameSource, summary: PredictSummary, writer: AnnotatedWriter | None,
         jsonl: JsonlWriter | None, conf: float | None, show_progress: bool, max_frames: int | None) -> None:
    """The frame loop of :func:`predict_source`: batches of the predictor's batch size, progress bar."""
    known = [n for n in (frames.total, max_frames) if n]
    with _progress(show_progress) as progress:
        task = progress.add_task(frames.label, total=min(known) if known else None, dets=0)
        for chunk in _chunks(frames, predictor.batch_size or 1, max_frames):
            results = predictor([frame for _, frame in chunk], conf=conf)
            for (name, frame), dets in zip(chunk, results):
                _record(summary, name, frame, dets, writer, jsonl)
            progress.update(task, advance=len(chunk), dets=summary.detections)


def _record(summary: PredictSummary, name: str, frame: np.ndarray, dets: Detections,
            writer: AnnotatedWriter | None, jsonl: JsonlWriter | None) -> None:
    summary.add(dets)
    if writer is not None:
        writer.write(name, annotate(frame, dets))
    if jsonl is not None:
        jsonl.write({"name": name, **dets.to_dict()})
