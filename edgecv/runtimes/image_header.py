"""Image dimensions read from the file header, before any pixel is decoded.

A small compressed file can decode to gigabytes (a 426 KB PNG decodes to 20000x20000), so the
pixel limit of :func:`edgecv.runtimes.image.read_image` is checked on the header first.
:func:`header_size` knows the formats OpenCV decodes by content: PNG, JPEG (every SOF variant),
BMP, GIF, WebP (VP8, VP8L, VP8X), TIFF and BigTIFF (first image), PBM/PGM/PPM/PAM/PFM, JPEG 2000
(JP2 box or raw codestream), Radiance HDR, Sun raster, AVIF/HEIF (``ispe``) and OpenEXR
(``dataWindow``). It returns ``None`` for anything else or a truncated header; the caller then
decodes and checks the result (OpenCV's own cap, ``OPENCV_IO_MAX_IMAGE_PIXELS``, still bounds it).
Pure Python on a bytes-like buffer, no OpenCV.
"""

from __future__ import annotations

import re
import struct
from typing import Callable, Optional

Size = Optional[tuple[int, int]]  # (width, height)

# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI: no length field


def _png(data: bytes) -> Size:
    if data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _jpeg(data: bytes) -> Size:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in _SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    return None


def _bmp(data: bytes) -> Size:
    header = struct.unpack("<I", data[14:18])[0]
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height means top-down rows


def _gif(data: bytes) -> Size:
    return struct.unpack("<HH", data[6:10])


def _webp(data: bytes) -> Size:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14-bit width-1 and height-1 packed after the 0x2F signature
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1, height-1
        return (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    return None


def _tiff(data: bytes) -> Size:
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43
    if big:  # BigTIFF: 64-bit offsets and counts, 20-byte entries
        offset = struct.unpack(order + "Q", data[8:16])[0]
        count = struct.unpack(order + "Q", data[offset:offset + 8])[0]
        first, entry, value_at = offset + 8, 20, 12
    else:
        offset = struct.unpack(order + "I", data[4:8])[0]
        count = struct.unpack(order + "H", data[offset:offset + 2])[0]
        first, entry, value_at = offset + 2, 12, 8
    found: dict[int, int] = {}
    for i in range(min(count, 4096)):
        at = first + i * entry
        tag, kind = struct.unpack(order + "HH", data[at:at + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG (LONG8 in BigTIFF)
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if fmt is None:
                return None
            size = struct.calcsize(fmt)
            found[tag] = struct.unpack(order + fmt, data[at + value_at:at + value_at + size])[0]
    return (found[256], found[257]) if len(found) == 2 else None


_PNM_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n?)*(\d+)")


def _pnm(data: bytes) -> Size:
    if data[:2] == b"P7":  # PAM: "WIDTH n" / "HEIGHT n" header lines up to ENDHDR
        header = data[:4096].split(b"ENDHDR")[0]
        width, height = re.search(rb"\bWIDTH\s+(\d+)", header), re.search(rb"\bHEIGHT\s+(\d+)", header)
        return (int(width.group(1)), int(height.group(1))) if width and height else None
    first = _PNM_TOKEN.match(data, 2)  # P1-P6, PF, Pf: width then height, comments allowed
    second = _PNM_TOKEN.match(data, first.end()) if first else None
    return (int(first.group(1)), int(second.group(1))) if second else None


def _jp2(data: bytes) -> Size:
    at = data.find(b"ihdr", 0, 1 << 16)
    if at < 0:
        return None
    height, width = struct.unpack(">II", data[at + 4:at + 12])
    return width, height


def _j2k(data: bytes) -> Size:  # raw codestream: SIZ segment right after SOC
    xsiz, ysiz, x0, y0 = struct.unpack(">IIII", data[8:24])
    return xsiz - x0, ysiz - y0


def _hdr(data: bytes) -> Size:  # Radiance: "-Y 480 +X 640" (any orientation) after the blank line
    match = re.search(rb"\n\n([-+])([XY]) (\d+) ([-+])([XY]) (\d+)", data[:65536])
    if not match:
        return None
    first, second = int(match.group(3)), int(match.group(6))
    return (second, first) if match.group(2) == b"Y" else (first, second)


def _sun(data: bytes) -> Size:
    return struct.unpack(">II", data[4:12])


def _isobmff(data: bytes) -> Size:  # AVIF / HEIF: the largest ImageSpatialExtents box (a grid's canvas)
    sizes = [struct.unpack(">II", data[m.start() + 8:m.start() + 16]) for m in re.finditer(b"ispe", data[:1 << 20])]
    return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None


def _exr(data: bytes) -> Size:
    at = data.find(b"dataWindow\x00box2i\x00", 0, 1 << 16)
    if at < 0:
        return None
    x0, y0, x1, y1 = struct.unpack("<iiii", data[at + 21:at + 37])  # after the names and the int32 size
    return x1 - x0 + 1, y1 - y0 + 1


#: (magic test, parser): the first whose test accepts the buffer parses it.
_FORMATS: list[tuple[Callable[[bytes], bool], Callable[[bytes], Size]]] = [
    (lambda d: d.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    (lambda d: d.startswith(b"\xff\xd8"), _jpeg),
    (lambda d: d.startswith(b"BM"), _bmp),
    (lambda d: d[:6] in (b"GIF87a", b"GIF89a"), _gif),
    (lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", _webp),
    (lambda d: d[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    (lambda d: re.match(rb"P[1-7Ff]\s", d[:3]) is not None, _pnm),
    (lambda d: d.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"), _jp2),
    (lambda d: d.startswith(b"\xff\x4f\xff\x51"), _j2k),
    (lambda d: d.startswith((b"#?RADIANCE", b"#?RGBE")), _hdr),
    (lambda d: d.startswith(b"\x59\xa6\x6a\x95"), _sun),
    (lambda d: d[4:8] == b"ftyp", _isobmff),
    (lambda d: d.startswith(b"v/1\x01"), _exr),
]


def header_size(data: bytes | bytearray | memoryview) -> Size:
    """``(width, height)`` of the encoded image in ``data`` from its header, or ``None`` if unknown.

    ``None`` means: a format not listed in the module docstring, or a header too short or
    malformed to read (the decoder will then reject the file or decode it).
    """
    buffer = data if isinstance(data, bytes) else bytes(data)  # TIFF may keep its IFD at the end of the file
    for accepts, parse in _FORMATS:
        if accepts(buffer):
            try:
                size = parse(buffer)
            except (struct.error, ValueError, IndexError, OverflowError):
                return None
            if size is None or size[0] <= 0 or size[1] <= 0:  # e.g. a JPEG whose height comes later (DNL)
                return None
            return int(size[0]), int(size[1])
    return None
