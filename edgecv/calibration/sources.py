"""Calibration data sources, kept apart from the calibration algorithms.

A source yields BGR uint8 images ``[H, W, 3]`` (any size); :func:`iter_batches` turns them into
network tensors with the predictor's own preprocessing (:func:`edgecv.runtimes.preprocess.preprocess_batch`,
driven by the artifact metadata), so calibration sees exactly what inference sees.

Sources: an image folder (recursive; non-images are skipped and reported), a video file (every
n-th frame), a COCO folder / annotations json, or ``"shapes"`` -- the built-in synthetic set drawn
from its ``test`` split with seed :data:`CALIB_SEED` (training uses ``train``, evaluation ``val``).

:func:`check_calibration_data` is the cheap check run *before* an export (the path exists and holds
decodable images, a COCO file or a decodable video); it returns how many images calibration will
see and warns (:class:`CalibrationWarning`) below :data:`MIN_RECOMMENDED` of them.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import cv2
import numpy as np

from edgecv.errors import CalibrationError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.preprocess import graph_frame, preprocess_batch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
#: Seed of the synthetic calibration scenes (distinct from training and validation streams).
CALIB_SEED = 1234
#: Below this many calibration images a warning explains the risk (see :func:`few_images_warning`).
MIN_RECOMMENDED = 32
#: How many leading files of an image folder :func:`check_calibration_data` tries to decode.
_DECODE_PROBE = 5


class CalibrationWarning(UserWarning):
    """Calibration data that works but is likely to give poor int8 ranges (too few images)."""


class CalibrationSource(Protocol):
    """Anything that yields BGR uint8 images and describes itself for the data hash."""

    description: str
    skipped: list[str]

    def images(self) -> Iterator[np.ndarray]: ...


@dataclass
class ImageFolderSource:
    """Images under ``root`` (recursive), sorted by path, then ``samples`` picked by ``seed``."""

    root: Path
    samples: int = 256
    seed: int = 0
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        files = sorted(p for p in self.root.rglob("*") if p.is_file())
        self.files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        self.skipped = [str(p) for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if not self.files:
            raise CalibrationError(f"{self.root}: expected image files ({', '.join(IMAGE_SUFFIXES)}), found "
                                   f"{len(files)} files and no images" + _examples(self.skipped))
        if len(self.files) > self.samples:
            pick = np.random.default_rng(self.seed).choice(len(self.files), self.samples, replace=False)
            self.files = [self.files[i] for i in sorted(pick)]
        self.description = f"folder:{self.root.resolve()}:" + ",".join(p.name for p in self.files)

    def images(self) -> Iterator[np.ndarray]:
        for path in self.files:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.skipped.append(f"{path} (cannot be decoded)")
                continue
            yield image


@dataclass
class VideoSource:
    """Every ``every``-th frame of a video file, at most ``samples`` frames (OpenCV)."""

    path: Path
    samples: int = 256
    every: int = 10
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        capture = cv2.VideoCapture(str(self.path))
        ok = capture.isOpened() and capture.read()[0]
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
        capture.release()
        #: Frames calibration will take (None: the container does not say how many frames it holds).
        self.count = min(self.samples, math.ceil(frames / self.every)) if frames > 0 else None
        if not ok:
            raise CalibrationError(f"{self.path}: expected a readable video file, found none that OpenCV decodes")
        self.description = f"video:{self.path.resolve()}:{self.path.stat().st_size}:every={self.every}"

    def images(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        index = taken = 0
        try:
            while taken < self.samples:
                ok, frame = capture.read()
                if not ok:
                    break
                if index % self.every == 0:
                    taken += 1
                    yield frame
                index += 1
        finally:
            capture.release()


@dataclass
class CocoSource:
    """Images listed by a COCO folder / annotations json (``samples`` picked by ``seed``)."""

    path: Path
    samples: int = 256
    seed: int = 0
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from edgecv.data.coco import CocoFolder
        from edgecv.errors import DatasetError

        try:
            self.coco = CocoFolder.open(self.path)
        except DatasetError as exc:
            raise CalibrationError(str(exc)) from exc
        entries = self.coco.gt["images"]
        if len(entries) > self.samples:
            pick = np.random.default_rng(self.seed).choice(len(entries), self.samples, replace=False)
            entries = [entries[i] for i in sorted(pick)]
        self.entries = entries
        self.description = f"coco:{self.coco.root.resolve()}:" + ",".join(e["file_name"] for e in entries)

    def images(self) -> Iterator[np.ndarray]:
        for entry in self.entries:
            yield self.coco.read(entry)


@dataclass
class SyntheticSource:
    """``samples`` scenes of the built-in shapes set (split ``test``, seed :data:`CALIB_SEED` + ``seed``)."""

    imgsz: int | tuple[int, int] = 320  # a side, or (h, w) for a non-square artifact
    samples: int = 256
    seed: int = 0
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from edgecv.data.synthetic import ShapesDataset

        self.dataset = ShapesDataset("test", self.samples, self.imgsz, seed=CALIB_SEED + self.seed)
        self.description = f"shapes:test:{self.imgsz}:{self.samples}:{CALIB_SEED + self.seed}"

    def images(self) -> Iterator[np.ndarray]:
        for i in range(len(self.dataset)):
            yield self.dataset[i].image


def _examples(paths: list[str], limit: int = 3) -> str:
    return f" (e.g. {', '.join(Path(p).name for p in paths[:limit])})" if paths else ""


def open_source(data: str | Path, metadata: ArtifactMetadata, *, samples: int = 256, seed: int = 0,
                every: int = 10) -> CalibrationSource:
    """``"shapes"`` | a folder of images | a COCO folder (``annotations.json``) or json | a video file.

    Warns (:class:`CalibrationWarning`) when it will yield fewer than :data:`MIN_RECOMMENDED` images.
    """
    # scenes of the artifact's own shape (a 16:9 export calibrates on 16:9 scenes, not on squares padded into
    # it); a --frame artifact takes camera frames of its frame size (its graph letterboxes them)
    h, w = graph_frame(metadata) or (int(v) for v in metadata.letterbox_size)
    source = _open(data, h if h == w else (h, w), samples, seed, every)
    _warn_if_few(source_count(source), data)
    return source


def _open(data: str | Path, imgsz: int | tuple[int, int], samples: int, seed: int, every: int) -> CalibrationSource:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise CalibrationError(f"samples: expected >= 1 (an integer), found {samples!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise CalibrationError(f"every: expected an integer >= 1 (video frame step), found {every!r}")
    if str(data) == "shapes":
        return SyntheticSource(imgsz, samples, seed)
    path = Path(data)
    if not path.exists():
        raise CalibrationError(f"calibration data: expected 'shapes', an image folder, a COCO folder or a video, "
                               f"found no file or folder at {path}")
    if path.suffix == ".json" or (path.is_dir() and (path / "annotations.json").is_file()):
        return CocoSource(path, samples, seed)
    if path.is_dir():
        return ImageFolderSource(path, samples, seed)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(path, samples, every)
    raise CalibrationError(f"calibration data {path}: expected a folder, a .json or a video "
                           f"({', '.join(VIDEO_SUFFIXES)}), found a {path.suffix or 'suffix-less'} file")


def source_count(source: CalibrationSource) -> int | None:
    """How many images ``source`` will yield at most (None: unknown, e.g. a video without a frame count)."""
    if isinstance(source, ImageFolderSource):
        return len(source.files)
    if isinstance(source, CocoSource):
        return len(source.entries)
    if isinstance(source, VideoSource):
        return source.count
    return getattr(source, "samples", None)


def few_images_warning(count: int | None, data: str | Path) -> str | None:
    """The warning for ``count`` calibration images, or None when there are enough (or the count is unknown)."""
    if count is None or count >= MIN_RECOMMENDED:
        return None
    return (f"calibration data {data}: only {count} image{'s' * (count != 1)} (at least {MIN_RECOMMENDED} "
            "recommended, 256 by default): int8 ranges measured on so few images miss activation values real "
            "inputs reach, and the int8 graph clips them (accuracy drops); add images or raise --calib-samples")


def _warn_if_few(count: int | None, data: str | Path) -> None:
    message = few_images_warning(count, data)
    if message:
        # One call site for every caller: Python's default filter then shows a message once per
        # process, so the pre-export check and the calibration itself do not say it twice.
        warnings.warn(message, CalibrationWarning, stacklevel=1)


def check_calibration_data(data: str | Path, *, samples: int = 256, seed: int = 0, every: int = 10) -> int | None:
    """Cheap check of calibration data before anything expensive (an fp32 export) runs.

    Verifies that ``data`` is ``"shapes"``, an image folder with decodable images (the first
    few are decoded), a COCO folder / json whose first image reads, or a video OpenCV decodes.
    Returns how many images calibration will use (None when a video does not state its length)
    and warns (:class:`CalibrationWarning`) below :data:`MIN_RECOMMENDED`.

    Raises:
        CalibrationError: the data is missing, empty or undecodable (expected vs found).
    """
    source = _open(data, 64, samples, seed, every)  # the size only matters for "shapes": no image drawn
    if isinstance(source, ImageFolderSource):
        probe = source.files[:_DECODE_PROBE]
        if all(cv2.imread(str(path), cv2.IMREAD_COLOR) is None for path in probe):
            raise CalibrationError(f"{data}: expected decodable images, found {len(source.files)} image files whose "
                                   f"first {len(probe)} cannot be decoded" + _examples([str(p) for p in probe]))
    elif isinstance(source, CocoSource) and source.entries:
        from edgecv.errors import DatasetError

        try:
            source.coco.read(source.entries[0])
        except DatasetError as exc:
            raise CalibrationError(f"{data}: expected readable COCO images, found: {exc}") from exc
    elif isinstance(source, CocoSource):
        raise CalibrationError(f"{data}: expected a COCO file listing images, found none")
    count = source_count(source)
    _warn_if_few(count, data)
    return count


def iter_batches(source: CalibrationSource, metadata: ArtifactMetadata, batch: int = 8) -> Iterator[np.ndarray]:
    """Preprocessed input tensors ``[b, 3, H, W]`` (the artifact's input dtype), ``b <= batch``.

    Raises :class:`CalibrationError` when the source yields no decodable image.
    """
    pending: list[np.ndarray] = []
    count = 0
    frame = graph_frame(metadata)
    for image in source.images():
        if frame is not None and image.shape[:2] != frame:  # a --frame graph takes frames of exactly that size
            image = cv2.resize(image, (frame[1], frame[0]), interpolation=cv2.INTER_AREA)
        pending.append(image)
        if len(pending) == batch:
            count += len(pending)
            yield preprocess_batch(pending, metadata)[0]
            pending = []
    if pending:
        count += len(pending)
        yield preprocess_batch(pending, metadata)[0]
    if count == 0:
        raise CalibrationError(f"{source.description.split(':')[0]} source: expected at least one readable "
                               f"image, found none" + _examples(source.skipped))


def data_hash(source: CalibrationSource, metadata: ArtifactMetadata) -> str:
    """SHA-256 (hex, 16 chars) of what determines the calibration tensors: the source and the preprocessing."""
    pre = (metadata.letterbox_size, metadata.mean, metadata.std, metadata.color_order, metadata.pad_value)
    if metadata.resize != "letterbox":  # only then: hashes (and caches) of letterbox artifacts stay as they were
        pre += (metadata.resize,)
    if graph_frame(metadata) is not None:  # likewise: the frame the images are resized to
        pre += (graph_frame(metadata),)
    return hashlib.sha256(f"{source.description}|{pre}".encode()).hexdigest()[:16]
