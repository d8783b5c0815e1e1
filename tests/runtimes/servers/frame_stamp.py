"""Stamp a frame index and a send time into a frame's pixels, and read them back after lossy coding.

Used by the test servers (run under Debian's ``/usr/bin/python3``, which has no numpy: the encoder
is pure Python) and by the tests (the decoder takes a numpy image). Layout: the top three rows of
``BLOCK``x``BLOCK`` blocks, 32 blocks each, white = 1, black = 0, most significant bit first:
row 0 the frame index, rows 1-2 the send time in microseconds since the epoch (64 bits). Blocks
of 10 px survive JPEG and H.264 at ordinary quality.
"""

from __future__ import annotations

import time

BLOCK = 10
BITS = 32
WIDTH = BLOCK * BITS  # 320: the narrowest frame that holds a stamp
STAMP_ROWS = 3


def _row_bytes(value: int) -> bytes:
    """One pixel row (BGR, WIDTH px) of the blocks encoding the 32-bit ``value``."""
    white, black = b"\xff" * (3 * BLOCK), b"\x00" * (3 * BLOCK)
    return b"".join(white if (value >> (BITS - 1 - i)) & 1 else black for i in range(BITS))


def stamped_frame(index: int, width: int = WIDTH, height: int = 240, send_time: float | None = None) -> bytes:
    """A BGR ``height`` x ``width`` frame (raw bytes, row-major) carrying ``index`` and ``send_time``.

    Below the stamp: mid grey with a white bar that moves with the index (so encoders see motion).
    """
    if width < WIDTH or height < BLOCK * STAMP_ROWS + 10:
        raise ValueError(f"expected a frame of at least {WIDTH}x{BLOCK * STAMP_ROWS + 10}, found {width}x{height}")
    micros = int((time.time() if send_time is None else send_time) * 1e6)
    pad = b"\x80" * (3 * (width - WIDTH))
    rows = [index & 0xFFFFFFFF, (micros >> 32) & 0xFFFFFFFF, micros & 0xFFFFFFFF]
    out = bytearray()
    for value in rows:
        out += (_row_bytes(value) + pad) * BLOCK
    bar = (index * 4) % max(1, width - 20)
    body = b"\x80" * (3 * bar) + b"\xff" * 60 + b"\x80" * (3 * (width - bar - 20))
    out += body * (height - BLOCK * STAMP_ROWS)
    return bytes(out)


def read_stamp(image) -> tuple[int, float]:
    """``(index, send_time)`` from a decoded BGR frame (numpy [H, W, 3] uint8) made by :func:`stamped_frame`."""
    values = []
    for row in range(STAMP_ROWS):
        y = row * BLOCK + BLOCK // 2
        value = 0
        for i in range(BITS):
            x = i * BLOCK + BLOCK // 2
            centre = image[y - 2:y + 2, x - 2:x + 2]
            value = (value << 1) | int(centre.mean() > 128)
        values.append(value)
    return values[0], ((values[1] << 32) | values[2]) / 1e6
