"""COCO-style run-length encoding of binary masks, in numpy (the runtime does not need pycocotools).

Format (the one pycocotools and COCO result files use, so a mask written here is read there):

* a mask of an image ``[H, W]`` is flattened in **column-major** order (down the first column,
  then the next), and ``counts`` alternates run lengths of 0s and 1s, starting with 0s
  (a mask whose first pixel is set starts with a run of 0 zeros); ``sum(counts) == H * W``;
* a document stores ``{"size": [H, W], "counts": "<string>"}`` with COCO's **compressed**
  counts string: each count (from the fourth on, minus the count two places before it) is
  written as 5-bit groups, least significant first, each group + 48 as one ASCII character,
  bit 0x20 set on every group but the last, the last group's bit 0x10 being the sign.
  Readers here also accept the uncompressed form (``"counts": [ints]``).

:func:`encode_crop` works from a mask cropped to its box (the runtime never builds the full
``[H, W]`` image for it); :func:`decode_crop` returns the tight crop and its offset.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def encode_crop(crop: np.ndarray, x0: int, y0: int, image_hw: tuple[int, int]) -> np.ndarray:
    """COCO counts (int64 ``[R]``) of an ``image_hw`` mask that is ``crop`` (bool ``[h, w]``)
    placed with its top-left pixel at column ``x0``, row ``y0``, and 0 elsewhere."""
    height, width = image_hw
    total = height * width
    h, w = crop.shape
    if crop.size == 0 or not crop.any():
        return np.array([total], np.int64)
    padded = np.zeros((w, h + 2), np.int8)  # one column of the crop per row, 0 above and below
    padded[:, 1:-1] = crop.T
    cols, rows = np.nonzero(np.diff(padded, axis=1))  # sorted by column, then row: column-major order
    positions = (x0 + cols).astype(np.int64) * height + y0 + rows
    # a run reaching the bottom of a column and one starting at the top of the next are one run
    joined = np.flatnonzero(positions[1:] == positions[:-1])
    if joined.size:
        positions = np.delete(positions, np.concatenate([joined, joined + 1]))
    counts = np.diff(np.concatenate([[0], positions, [total]]))
    return counts[:-1] if counts[-1] == 0 else counts  # a mask ending set ends on its run of 1s (as COCO)


def decode_crop(counts: np.ndarray, image_hw: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """Inverse of :func:`encode_crop` with the tightest crop: ``(crop bool [h, w], x0, y0)``.

    An empty mask gives a ``[0, 0]`` crop at ``(0, 0)``. Only the columns the mask spans are
    materialised, never the whole image.

    Raises:
        ValueError: counts that are negative or do not sum to ``H * W``.
    """
    height, width = image_hw
    counts = np.asarray(counts, np.int64).reshape(-1)
    if counts.size and counts.min() < 0 or int(counts.sum()) != height * width:
        raise ValueError(f"expected non-negative counts summing to {height * width} (= {height} x {width}), "
                         f"found sum {int(counts.sum())}")
    edges = np.cumsum(counts)
    starts, ends = edges[0::2][: counts.size // 2], edges[1::2]
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return np.zeros((0, 0), bool), 0, 0
    first_col, last_col = int(starts[0] // height), int((ends[-1] - 1) // height)
    base = first_col * height
    size = (last_col - first_col + 1) * height + 1
    delta = np.bincount(starts - base, minlength=size) - np.bincount(ends - base, minlength=size)
    block = (np.cumsum(delta[:-1]) > 0).reshape(-1, height).T  # [H, columns spanned]
    rows = np.flatnonzero(block.any(axis=1))
    return np.ascontiguousarray(block[rows[0]:rows[-1] + 1]), first_col, int(rows[0])


def decode_dense(counts: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """The full mask bool ``[H, W]`` of COCO ``counts``."""
    crop, x0, y0 = decode_crop(counts, image_hw)
    out = np.zeros(image_hw, bool)
    out[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return out


def compress(counts: np.ndarray) -> str:
    """COCO's compressed counts string of ``counts`` (see the module docstring); vectorised over
    the counts, one column per 5-bit group."""
    values = np.asarray(counts, np.int64).copy()
    if values.size > 3:
        values[3:] -= np.asarray(counts, np.int64)[1:-2]  # delta to the run of the same kind: short strings
    groups, active = [], np.ones(values.size, bool)
    while active.any():
        group = values & 0x1F
        values >>= 5  # arithmetic shift: a negative delta ends at -1
        more = np.where(group & 0x10, values != -1, values != 0) & active
        groups.append(np.where(active, (group | np.where(more, 0x20, 0)) + 48, 0))
        active = more
    table = np.stack(groups, 1).astype(np.uint8) if groups else np.zeros((0, 1), np.uint8)
    return table[table > 0].tobytes().decode("ascii")  # row-major: each count's groups in order


def decompress(text: str) -> np.ndarray:
    """Counts (int64 ``[R]``) of a COCO compressed counts string.

    Raises:
        ValueError: a character outside COCO's alphabet or a string cut inside a number.
    """
    values: list[int] = []
    value, shift = 0, 0
    for char in text:
        group = ord(char) - 48
        if not 0 <= group < 64:
            raise ValueError(f"expected COCO counts characters ('0'..'o'), found {char!r}")
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:  # the sign bit of the last group
            value -= 1 << shift
        if len(values) > 2:
            value += values[-2]
        values.append(value)
        value, shift = 0, 0
    if shift:
        raise ValueError("expected complete COCO counts, found a string cut inside a number")
    return np.array(values, np.int64)


def to_document(counts: np.ndarray, image_hw: tuple[int, int]) -> dict[str, Any]:
    """``{"size": [H, W], "counts": "<compressed>"}``: one mask of a result document."""
    return {"size": [int(image_hw[0]), int(image_hw[1])], "counts": compress(counts)}


def counts_of(document: dict[str, Any]) -> np.ndarray:
    """The counts of a mask document (compressed string or uncompressed list).

    Raises:
        ValueError: malformed counts (see :func:`decompress`).
    """
    counts = document["counts"]
    return decompress(counts) if isinstance(counts, str) else np.asarray(counts, np.int64)


def rle_problem(value: Any) -> str | None:
    """None when ``value`` looks like a mask document, else what was expected (shape only; the
    counts' sum is checked when decoding)."""
    ok = (isinstance(value, dict) and set(value) == {"size", "counts"} and isinstance(value["size"], list)
          and len(value["size"]) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                              for v in value["size"])
          and (isinstance(value["counts"], str) or (isinstance(value["counts"], list) and all(
              isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value["counts"]))))
    return None if ok else '{"size": [H, W], "counts": COCO RLE string or list of run lengths}'
