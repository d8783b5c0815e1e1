"""What an HTTP request to the serving endpoint may carry, checked before any model sees it.

A request is refused with a 4xx status and a one-line reason (:class:`RequestRejected`) when:

* the method is not the route's (405), the path is unknown (404);
* the content type is neither an image (``image/*``, ``application/octet-stream``) nor
  ``multipart/form-data`` with one file part (415);
* the body is larger than ``max_body_bytes`` (413; the ``Content-Length`` header is checked
  before the body is read), empty, or holds bytes OpenCV cannot decode (400);
* a JPEG has no end-of-image marker or a PNG no ``IEND`` chunk (400: a truncated upload that
  OpenCV would otherwise decode with grey rows at the bottom and only a libjpeg warning);
* the image's header states more than ``max_pixels`` (413, before decoding: a small file can
  decode to gigabytes, :mod:`edgecv.runtimes.image_header`).

Pure functions over bytes: no Ray, no web framework, so they are tested and reused on their own.
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP

import cv2
import numpy as np

from edgecv.errors import ImageError
from edgecv.runtimes.image import decode_checked
from edgecv.runtimes.image_header import header_size

#: Largest request body accepted by default: a 12 MP JPEG is ~5 MB, a 12 MP PNG up to ~36 MB.
DEFAULT_MAX_BODY_BYTES = 40 * 1024 * 1024

#: Largest decoded image accepted by default (pixels): 40 MP, 120 MB as BGR uint8, per request.
DEFAULT_SERVE_MAX_PIXELS = 40_000_000

IMAGE_TYPES = ("image/", "application/octet-stream")

_JPEG_SOI = b"\xff\xd8"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class RequestRejected(Exception):
    """A request the server answers with ``status`` (4xx) and the one-line ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_length(content_length: str | None, max_body_bytes: int) -> None:
    """Refuse (413) a request whose declared ``Content-Length`` exceeds ``max_body_bytes``
    before its body is read; a malformed header is a 400."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise RequestRejected(400, f"Content-Length: expected an integer, found {content_length[:40]!r}") from None
    if declared > max_body_bytes:
        raise RequestRejected(413, f"body: expected at most {max_body_bytes:,} bytes, found {declared:,} "
                                   "(Content-Length)")


def image_bytes(content_type: str | None, body: bytes, max_body_bytes: int) -> bytes:
    """The encoded image inside a request ``body`` of ``content_type``.

    Raises:
        RequestRejected: 413 body too large, 415 unsupported content type, 400 empty body or a
            multipart body without a file part.
    """
    if len(body) > max_body_bytes:
        raise RequestRejected(413, f"body: expected at most {max_body_bytes:,} bytes, found {len(body):,}")
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.startswith(IMAGE_TYPES):
        data = body
    elif kind == "multipart/form-data":
        data = _multipart_file(content_type or "", body)
    else:
        raise RequestRejected(415, f"Content-Type: expected image/jpeg, image/png, application/octet-stream or "
                                   f"multipart/form-data, found {kind or 'none'!r}")
    if not data:
        raise RequestRejected(400, "body: expected an encoded image (JPEG, PNG, ...), found 0 bytes")
    return data


def _multipart_file(content_type: str, body: bytes) -> bytes:
    """The payload of the first part of a ``multipart/form-data`` body that is a file (has a
    ``filename``) or, failing that, the first part; parsed by the standard library's MIME parser."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
                                                  + body)
    if not message.is_multipart():
        raise RequestRejected(400, "multipart/form-data: expected a body with a boundary and parts, found none")
    parts = [part for part in message.iter_parts() if not part.is_multipart()]
    files = [part for part in parts if part.get_filename()] or parts
    if not files:
        raise RequestRejected(400, "multipart/form-data: expected one part holding the image, found no parts")
    payload = files[0].get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def check_complete(data: bytes) -> None:
    """Refuse (400) a JPEG without its end-of-image marker or a PNG without its ``IEND`` chunk."""
    if data.startswith(_JPEG_SOI) and b"\xff\xd9" not in data[-64:]:  # a few padding bytes may follow EOI
        raise RequestRejected(400, f"image: expected a complete JPEG ending in the FFD9 end-of-image marker, "
                                   f"found {len(data):,} bytes without it (truncated upload?)")
    if data.startswith(_PNG_SIGNATURE) and b"IEND" not in data[-16:]:
        raise RequestRejected(400, f"image: expected a complete PNG ending in its IEND chunk, found {len(data):,} "
                                   "bytes without it (truncated upload?)")


def decode_image(data: bytes, max_pixels: int | None) -> np.ndarray:
    """Decode ``data`` (an encoded image) to BGR uint8 ``[H, W, 3]``.

    The pixel limit is checked on the header first (:func:`~edgecv.runtimes.image_header.header_size`),
    then on the decoded image for formats whose header is not parsed.

    Raises:
        RequestRejected: 413 above ``max_pixels``; 400 truncated or not an image.
    """
    check_complete(data)
    size = header_size(data) if max_pixels is not None else None
    if size is not None:
        _check_pixels(size[0], size[1], max_pixels)
    try:
        image = decode_checked(np.frombuffer(data, np.uint8), None, "image", cv2.IMREAD_COLOR,
                               "image: expected an encoded image OpenCV can decode (JPEG, PNG, ...)")
    except ImageError as exc:
        raise RequestRejected(400, str(exc).splitlines()[0]) from None
    if size is None:
        _check_pixels(image.shape[1], image.shape[0], max_pixels)
    return image


def _check_pixels(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise RequestRejected(413, f"image: expected at most {max_pixels:,} pixels, found {width}x{height} = "
                                   f"{width * height:,}")
