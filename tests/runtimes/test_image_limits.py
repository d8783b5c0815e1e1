"""The decoded-size limit: image dimensions read from the header and refused before decoding.

A real 20000x20000 PNG (1-bit grey, all black: ~50 KB on disk, 400 MB as an 8-bit image and 1.2 GB
as BGR) is built with zlib in chunks, so the test itself never holds more than a few MB.
"""

from __future__ import annotations

import resource
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgecv.cli import app
from edgecv.errors import ImageError, OptionError
from edgecv.runtimes import Predictor
from edgecv.runtimes.image import DEFAULT_MAX_PIXELS, read_image
from edgecv.runtimes.image_header import header_size
from edgecv.runtimes.sources import iter_source

SIDE = 20_000


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_huge_png(path: Path, side: int = SIDE) -> Path:
    """A valid ``side`` x ``side`` 1-bit greyscale PNG, compressed row block by row block."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte "none" + packed zero bits
    packer = zlib.compressobj(9)
    block = row * 500
    data = b"".join(packer.compress(block) for _ in range(side // 500)) + packer.compress(row * (side % 500))
    data += packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data)
                     + png_chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_huge_png(tmp_path_factory.mktemp("huge") / "huge.png")
    assert path.stat().st_size < 1_000_000
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def test_huge_png_is_refused_before_decoding(huge_png: Path) -> None:
    assert header_size(huge_png.read_bytes()) == (SIDE, SIDE)
    before = peak_rss_mb()
    with pytest.raises(ImageError) as caught:
        read_image(huge_png)
    message = str(caught.value)
    assert "found 20000x20000 = 400,000,000" in message and f"at most {DEFAULT_MAX_PIXELS:,} pixels" in message
    assert str(huge_png) in message and "--max-pixels" in message and "max_pixels=" in message
    assert peak_rss_mb() - before < 100, "the image was decoded (400 MB) instead of refused from its header"


def test_huge_png_in_sources_and_predictor(huge_png: Path, tmp_path: Path, toy_artifact: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(huge_png, folder / "a_huge.png")
    cv2.imwrite(str(folder / "b_small.png"), np.zeros((40, 60, 3), np.uint8))
    with iter_source(folder) as frames:
        names = [name for name, _ in frames]
    assert names == ["b_small.png"] and "20000x20000" in frames.skipped[0].reason
    with pytest.raises(ImageError, match="20000x20000"):
        with iter_source(huge_png) as frames:
            list(frames)
    with Predictor(toy_artifact) as predictor:
        with pytest.raises(ImageError, match="20000x20000"):
            predictor(str(huge_png))


def test_cli_refuses_huge_image_naming_the_flag(huge_png: Path, tmp_path: Path, toy_artifact: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.jsonl").write_text("previous run\n")
    result = CliRunner().invoke(app, ["predict", str(toy_artifact), "--source", str(huge_png), "--save", str(out)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert "20000x20000" in errors[0] and "--max-pixels" in " ".join(result.output.split())
    assert (out / "predictions.jsonl").read_text() == "previous run\n"  # failed before its first frame


def test_limit_is_configurable(tmp_path: Path, toy_artifact: Path, toy_video: Path) -> None:
    small = tmp_path / "small.jpg"
    cv2.imwrite(str(small), np.full((80, 100, 3), 200, np.uint8))
    with pytest.raises(ImageError, match="at most 7,999 pixels, found 100x80 = 8,000 "):
        read_image(small, max_pixels=7999)
    assert read_image(small, max_pixels=8000).shape == (80, 100, 3)
    assert read_image(small, max_pixels=None).shape == (80, 100, 3)
    with Predictor(toy_artifact, max_pixels=7999) as predictor:
        with pytest.raises(ImageError, match="100x80"):
            predictor(small)
    with pytest.raises(ImageError, match="320x240"):  # a video's frame size, refused when opened
        iter_source(toy_video, max_pixels=320 * 240 - 1)
    for bad in (0, -5, 1.5, True, "100"):
        with pytest.raises(OptionError, match="max_pixels"):
            Predictor(toy_artifact, max_pixels=bad)


FORMATS = [".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm", ".pam", ".pfm", ".jp2", ".hdr", ".ras", ".avif", ".gif"]


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("channels", [1, 3])
def test_header_size_matches_the_decoder(suffix: str, channels: int) -> None:
    shape = (37, 53) if channels == 1 else (37, 53, 3)
    image = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    if suffix in (".pfm", ".hdr"):
        image = image.astype(np.float32) / 255
        if suffix == ".hdr" and channels == 1:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    try:
        ok, encoded = cv2.imencode(suffix, image)
    except cv2.error:
        ok = False
    if not ok:
        pytest.skip(f"this OpenCV build cannot encode {suffix} with {channels} channel(s)")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    assert decoded is not None
    assert header_size(encoded.tobytes()) == (decoded.shape[1], decoded.shape[0])


def test_core_formats_are_all_parsed() -> None:
    """The formats edgecv's sources list by suffix must never fall back to decode-then-check."""
    image = np.zeros((48, 64, 3), np.uint8)
    for suffix in (".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm", ".jp2"):
        ok, encoded = cv2.imencode(suffix, image)
        assert ok and header_size(encoded.tobytes()) == (64, 48), suffix
    ok, gray = cv2.imencode(".pgm", image[:, :, 0])
    assert ok and header_size(gray.tobytes()) == (64, 48)
    ok, progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])  # SOF2, not SOF0
    assert ok and header_size(progressive.tobytes()) == (64, 48)
    for variant in (np.zeros((48, 64, 4), np.uint8), np.zeros((48, 64), np.uint16)):  # BGRA, 16-bit
        ok, png = cv2.imencode(".png", variant)
        assert ok and header_size(png.tobytes()) == (64, 48)


def test_header_size_of_unknown_or_truncated_data() -> None:
    ok, jpeg = cv2.imencode(".jpg", np.zeros((10, 10, 3), np.uint8))
    assert header_size(b"not an image at all") is None
    assert header_size(jpeg.tobytes()[:20]) is None  # cut before the frame header
    assert header_size(b"\x89PNG\r\n\x1a\n\x00\x00") is None
    assert header_size(b"II*\x00\xff\xff\xff\x7f") is None  # IFD offset past the end
