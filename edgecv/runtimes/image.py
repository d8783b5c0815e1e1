"""Reading images and bringing them to the one layout the predictor works on: HxWx3 uint8 BGR.

OpenCV's conventions are the runtime's conventions: frames from ``cv2.imread`` and
``cv2.VideoCapture`` are BGR, so BGR uint8 ``[H, W, 3]`` passes through untouched.
Other common layouts are converted and a *note* says what happened (the predictor turns
notes into one :class:`ImageConversionWarning` per kind); everything else is an
:class:`~edgecv.errors.ImageError` naming what was expected and what was found.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np

from edgecv.errors import ImageError, OptionError
from edgecv.runtimes.image_header import header_size

#: Default limit on the pixels of an image file decoded by :func:`read_image` (``--max-pixels``).
#: 100 MP decodes to 300 MB as BGR uint8 (600 MB at 16 bits, plus one converted copy), which an
#: edge device with 2-4 GB survives beside a running model; it admits every common camera up to
#: 100 MP. A detector sees the image letterboxed to ~320-1280 px anyway, so bigger inputs (200 MP
#: phone modes, gigapixel scans) are better tiled; raise the limit to read them whole.
DEFAULT_MAX_PIXELS = 100_000_000

EXPECTED = "an HxWx3 uint8 BGR image (or HxW / HxWx1 grayscale, HxWx4 BGRA; uint8 or uint16)"

NOTE_GRAY = "grayscale image converted to BGR"
NOTE_BGRA = "4-channel image taken as BGRA and converted to BGR (alpha dropped)"
NOTE_UINT16 = "16-bit image scaled to 8 bits (x / 257)"


class ImageConversionWarning(UserWarning):
    """An input image was converted (grayscale, BGRA or 16-bit) before prediction."""


def _describe(image: np.ndarray) -> str:
    return f"shape {tuple(image.shape)} dtype {image.dtype}"


def to_bgr_uint8(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Return ``(bgr, note)``: ``image`` as HxWx3 uint8 BGR and what was converted (``None`` if nothing).

    Accepted: uint8 or uint16; ``[H, W]`` or ``[H, W, 1]`` grayscale, ``[H, W, 3]`` BGR,
    ``[H, W, 4]`` BGRA. uint16 is scaled by 1/257 (65535 -> 255, rounded). A BGR uint8
    input is returned as is (no copy unless it is not C-contiguous).

    Raises:
        ImageError: not a numpy array, empty, float/other dtype, wrong ndim or 2 channels.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected {EXPECTED} as a numpy array, found {type(image).__name__}")
    if image.size == 0:
        raise ImageError(f"expected {EXPECTED}, found an empty image ({_describe(image)})")
    if image.dtype not in (np.uint8, np.uint16):
        hint = ""
        if image.dtype.kind == "f":
            hint = "; for float images in [0, 1] use (img * 255).round().astype(np.uint8)"
        raise ImageError(f"expected {EXPECTED}, found {_describe(image)}{hint}")
    channels = 1 if image.ndim == 2 else (image.shape[2] if image.ndim == 3 else 0)
    if channels not in (1, 3, 4):
        hint = "; for several images pass a list of HxWx3 arrays" if image.ndim == 4 else ""
        raise ImageError(f"expected {EXPECTED}, found {_describe(image)}{hint}")
    if image.dtype == np.uint8 and channels == 3:
        return (image if image.flags.c_contiguous else np.ascontiguousarray(image)), None
    notes = []
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(np.ascontiguousarray(image), alpha=1.0 / 257.0)
        notes.append(NOTE_UINT16)
    if channels == 1:
        image = cv2.cvtColor(np.ascontiguousarray(image.reshape(image.shape[:2])), cv2.COLOR_GRAY2BGR)
        notes.append(NOTE_GRAY)
    elif channels == 4:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
        notes.append(NOTE_BGRA)
    else:
        image = np.ascontiguousarray(image)
    return image, "; ".join(notes)


def check_max_pixels(max_pixels: int | None) -> int | None:
    """``max_pixels`` if it is ``None`` (no limit) or a positive int.

    Raises:
        OptionError: anything else.
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int)
                                   or max_pixels < 1):
        raise OptionError(f"max_pixels: expected a positive number of pixels or None (no limit), "
                          f"found {max_pixels!r}")
    return max_pixels


def check_pixels(width: int, height: int, max_pixels: int | None, where: object) -> None:
    """Raise :class:`ImageError` if a ``width`` x ``height`` image exceeds ``max_pixels``."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(f"{where}: expected an image of at most {max_pixels:,} pixels, found {width}x{height} = "
                         f"{width * height:,} (~{width * height * 3 / 1e9:.1f} GB decoded); if you trust it, raise "
                         "the limit with --max-pixels N (Python: max_pixels=N, None: no limit)")


def read_image(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode the image file at ``path`` as stored (``cv2.IMREAD_UNCHANGED``: depth and alpha kept).

    The result may be grayscale, BGRA or 16-bit; pass it through :func:`to_bgr_uint8`.
    EXIF orientation is not applied (IMREAD_UNCHANGED ignores it). Reads through
    ``np.fromfile`` + ``cv2.imdecode`` so non-ASCII paths work on every OS.

    ``max_pixels`` (``None``: no limit) is checked on the dimensions in the file header before
    decoding (:mod:`~edgecv.runtimes.image_header`), so a small file that would decode to
    gigabytes is refused without allocating them; for a format whose header is not parsed there,
    it is checked on the decoded image.

    Raises:
        ImageError: missing file, a directory, bytes OpenCV cannot decode, or an image above
            ``max_pixels`` (message names the path, the size, the limit and how to raise it).
    """
    check_max_pixels(max_pixels)
    file = Path(path)
    if not file.exists():
        raise ImageError(f"expected an image file at {file}, found no such file")
    if not file.is_file():
        raise ImageError(f"expected an image file at {file}, found a directory or special file")
    try:
        data = np.fromfile(file, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"expected a readable image file at {file}, found: {exc}") from exc
    return decode_checked(data, max_pixels, file, cv2.IMREAD_UNCHANGED,
                          f"expected an image file OpenCV can decode at {file}")


def decode_checked(data: np.ndarray, max_pixels: int | None, where: object, flags: int, expected: str) -> np.ndarray:
    """Decode encoded image bytes (uint8 [N]) with ``cv2.imdecode(data, flags)``, refusing an image
    above ``max_pixels`` from its header before decoding where the header is parsed (else after).

    Raises:
        ImageError: ``"<expected>, found N bytes it cannot decode"``, or the image is too large
            (named by ``where``).
    """
    size = header_size(memoryview(data)) if max_pixels is not None else None
    if size is not None:
        check_pixels(*size, max_pixels, where)
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise ImageError(f"{expected}, found {data.size} bytes it cannot decode")
    if size is None:
        check_pixels(image.shape[1], image.shape[0], max_pixels, where)
    return image


def _caller_stacklevel() -> int:
    """``warnings.warn`` stacklevel of the first frame outside ``edgecv.runtimes`` (the user's call)."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package_dir):
        frame, level = frame.f_back, level + 1
    return level


class ConversionNotes:
    """Warn once per kind of conversion note (``warnings.warn`` with :class:`ImageConversionWarning`)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def report(self, note: str | None) -> None:
        """Warn about each conversion in ``note`` (``"; "``-separated) not reported before.

        The warning points at the user's call (the first frame outside ``edgecv.runtimes``).
        """
        for kind in (note or "").split("; "):
            if kind and kind not in self._seen:
                self._seen.add(kind)
                warnings.warn(f"edgecv: {kind} (shown once per kind)", ImageConversionWarning,
                              stacklevel=_caller_stacklevel())
