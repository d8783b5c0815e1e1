from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecv.errors import ImageError
from edgecv.runtimes.image import NOTE_BGRA, NOTE_GRAY, NOTE_UINT16, read_image, to_bgr_uint8


def test_bgr_uint8_passes_through_untouched() -> None:
    image = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    out, note = to_bgr_uint8(image)
    assert out is image and note is None


def test_non_contiguous_bgr_made_contiguous() -> None:
    image = np.zeros((4, 6, 3), np.uint8)[:, ::2]
    out, note = to_bgr_uint8(image)
    assert out.flags.c_contiguous and note is None and out.shape == (4, 3, 3)


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1)])
def test_grayscale_to_bgr(shape: tuple[int, ...]) -> None:
    gray = np.full(shape, 77, np.uint8)
    out, note = to_bgr_uint8(gray)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and (out == 77).all()
    assert note == NOTE_GRAY


def test_bgra_drops_alpha() -> None:
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 10, 200, 0
    out, note = to_bgr_uint8(bgra)
    assert out.shape == (4, 5, 3) and (out[..., 0] == 10).all() and (out[..., 2] == 200).all()
    assert note == NOTE_BGRA


def test_uint16_scaled_to_uint8() -> None:
    image = np.array([[0, 257, 65535]], np.uint16)[..., None].repeat(3, axis=2)
    out, note = to_bgr_uint8(image)
    assert out.dtype == np.uint8 and out[0, :, 0].tolist() == [0, 1, 255]
    assert note == NOTE_UINT16
    out, note = to_bgr_uint8(np.full((2, 2), 65535, np.uint16))
    assert out.shape == (2, 2, 3) and (out == 255).all()
    assert note is not None and NOTE_UINT16 in note and NOTE_GRAY in note


@pytest.mark.parametrize(
    ("image", "found"),
    [
        (np.zeros((4, 5, 3), np.float32), "dtype float32"),
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((4, 5, 2), np.uint8), r"shape \(4, 5, 2\)"),
        (np.zeros((2, 4, 5, 3), np.uint8), r"shape \(2, 4, 5, 3\)"),
        (np.zeros(5, np.uint8), r"shape \(5,\)"),
        (np.zeros((4, 5, 3), np.int16), "dtype int16"),
        ([[1, 2], [3, 4]], "found list"),
    ],
)
def test_unsupported_images_raise(image: np.ndarray, found: str) -> None:
    with pytest.raises(ImageError, match=rf"expected an HxWx3 uint8 BGR image.*{found}"):
        to_bgr_uint8(image)


def test_read_image_unchanged(tmp_path: Path) -> None:
    image = np.arange(60, dtype=np.uint16).reshape(6, 10) * 1000
    cv2.imwrite(str(tmp_path / "deep.png"), image)
    read = read_image(tmp_path / "deep.png")
    assert read.dtype == np.uint16 and read.shape == (6, 10)
    np.testing.assert_array_equal(read, image)


def test_read_image_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageError, match=r"bad\.jpg.*17 bytes it cannot decode"):
        read_image(bad)
    with pytest.raises(ImageError, match="directory"):
        read_image(tmp_path)
