"""The request checks of the serving endpoint, on real encoded images (no Ray needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecv.serve.http_input import RequestRejected, check_length, decode_image, image_bytes


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.coffee()[:, :, ::-1])


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _status(call, *args) -> int:
    with pytest.raises(RequestRejected) as info:
        call(*args)
    assert "\n" not in info.value.reason and info.value.reason
    return info.value.status


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_decodes_like_opencv(photo: np.ndarray, ext: str) -> None:
    data = _encode(photo, ext)
    image = decode_image(image_bytes("image/jpeg" if ext == ".jpg" else "image/png", data, 10**8), 10**8)
    np.testing.assert_array_equal(image, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_images_are_400(photo: np.ndarray, ext: str) -> None:
    data = _encode(photo, ext)
    assert _status(decode_image, data[: len(data) * 2 // 3], None) == 400


def test_not_an_image_is_400() -> None:
    assert _status(decode_image, b"hello, this is text " * 10, None) == 400


def test_too_many_pixels_is_413_before_decoding(photo: np.ndarray) -> None:
    assert _status(decode_image, _encode(photo, ".jpg"), 1000) == 413
    # a format whose header edgecv does not parse is checked after decoding
    assert _status(decode_image, _encode(photo, ".ppm")[:0] + _encode(photo, ".ras"), 1000) == 413


def test_content_types_and_sizes(photo: np.ndarray) -> None:
    data = _encode(photo, ".jpg")
    assert image_bytes("application/octet-stream", data, 10**8) == data
    assert _status(image_bytes, "text/plain", data, 10**8) == 415
    assert _status(image_bytes, None, data, 10**8) == 415
    assert _status(image_bytes, "image/jpeg", data, 100) == 413
    assert _status(image_bytes, "image/jpeg", b"", 100) == 400
    assert _status(check_length, str(50 * 2**20), 40 * 2**20) == 413
    assert _status(check_length, "lots", 100) == 400
    check_length(None, 100)
    check_length("99", 100)


def test_multipart_file_part(photo: np.ndarray) -> None:
    data = _encode(photo, ".jpg")
    boundary = "edgecvBOUNDARY42"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    assert image_bytes(f"multipart/form-data; boundary={boundary}", body, 10**8) == data
    assert _status(image_bytes, "multipart/form-data", b"garbage", 10**8) == 400
