"""Calibration data sources, kept apart from the calibration algorithms.

A source yields BGR uint8 images ``[H, W, 3]`` (any size); :func:`iter_batches` turns them into
network tensors with the predictor's own preprocessing (:func:`edgecv.runtimes.preprocess.preprocess_batch`,
driven by the artifact metadata), so calibration sees exactly what inference sees.

Sources: an image folder (recursive; non-images are skipped and reported), a video file (every
n-th frame), a COCO folder / annotations json, or ``"shapes"`` -- the built-in synthetic set drawn
from its ``test`` split with seed :data:`CALIB_SEED` (training uses ``train``, evaluation ``val``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import cv2
import numpy as np

from edgecv.errors import CalibrationError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.preprocess import preprocess_batch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
#: Seed of the synthetic calibration scenes (distinct from training and validation streams).
CALIB_SEED = 1234


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
        capture.release()
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

    imgsz: int = 320
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
    """``"shapes"`` | a folder of images | a COCO folder (``annotations.json``) or json | a video file."""
    if samples < 1:
        raise CalibrationError(f"samples: expected >= 1, found {samples}")
    if str(data) == "shapes":
        return SyntheticSource(int(metadata.letterbox_size[0]), samples, seed)
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


def iter_batches(source: CalibrationSource, metadata: ArtifactMetadata, batch: int = 8) -> Iterator[np.ndarray]:
    """Preprocessed input tensors ``[b, 3, H, W]`` (the artifact's input dtype), ``b <= batch``.

    Raises :class:`CalibrationError` when the source yields no decodable image.
    """
    pending: list[np.ndarray] = []
    count = 0
    for image in source.images():
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
    return hashlib.sha256(f"{source.description}|{pre}".encode()).hexdigest()[:16]
