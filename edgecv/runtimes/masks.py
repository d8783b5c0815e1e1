"""Instance masks kept compact: each detection's mask cropped to its box, one bit per pixel.

A dense ``[N, H, W]`` bool array of 100 masks on a 1080p frame is 207 MB; the same masks
cropped to their boxes and bit-packed cost the boxes' area / 8 bytes (a 200 x 300 px object:
7.5 KB). :meth:`InstanceMasks.dense` builds the dense array when it is really wanted.

Coordinates: a crop of shape ``[h, w]`` at ``offsets[i] = (x0, y0)`` covers the original-image
pixels ``x0 <= x < x0 + w``, ``y0 <= y < y0 + h`` (:attr:`InstanceMasks.boxes` gives them as
integer x0, y0, x1, y1 with exclusive x1, y1). Pixels outside the crop are not in the mask.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from edgecv.runtimes import rle

#: What ``InstanceMasks[...]`` accepts, like :class:`~edgecv.runtimes.detections.Detections`.
MaskIndex = int | slice | Sequence[int] | Sequence[bool] | np.ndarray


class InstanceMasks:
    """``N`` binary masks of one image of ``image_shape = (H, W)``, each cropped to its box.

    Args:
        crops: ``N`` bool arrays ``[h_i, w_i]`` (anything castable to bool).
        offsets: int ``[N, 2]``: ``(x0, y0)`` of each crop's top-left pixel in the image.
        image_shape: ``(H, W)`` of the image the masks belong to.

    Behaves like a read-only ``[N, H, W]`` bool array where it matters: ``len``, ``shape``,
    ``dtype``, indexing (int, slice, bool mask, index array: a new :class:`InstanceMasks`),
    ``np.asarray(masks)`` (= :meth:`dense`).
    """

    dtype = np.dtype(bool)

    def __init__(self, crops: Sequence[np.ndarray], offsets: Any, image_shape: tuple[int, int]) -> None:
        height, width = (int(v) for v in image_shape)
        offsets = np.asarray(offsets, np.int64).reshape(-1, 2)
        if offsets.shape[0] != len(crops):
            raise ValueError(f"offsets: expected shape [{len(crops)}, 2] (one per crop), found {offsets.shape}")
        self.image_shape = (height, width)
        self._packed: list[np.ndarray] = []
        sizes = np.zeros((len(crops), 2), np.int64)
        areas = np.zeros(len(crops), np.int64)
        for i, crop in enumerate(crops):
            crop = np.asarray(crop)
            if crop.ndim != 2:
                raise ValueError(f"crops[{i}]: expected a 2-D mask [h, w], found shape {crop.shape}")
            x0, y0 = offsets[i]
            if crop.size and (x0 < 0 or y0 < 0 or x0 + crop.shape[1] > width or y0 + crop.shape[0] > height):
                raise ValueError(f"crops[{i}]: expected inside the {width}x{height} image, found {crop.shape[1]}x"
                                 f"{crop.shape[0]} at x0={x0}, y0={y0}")
            crop = crop.astype(bool, copy=False)
            sizes[i] = crop.shape
            areas[i] = np.count_nonzero(crop)
            self._packed.append(np.packbits(crop, axis=1))
        self._sizes, self._offsets, self._areas = sizes, offsets, areas

    @classmethod
    def empty(cls, image_shape: tuple[int, int]) -> InstanceMasks:
        """No masks."""
        return cls([], np.zeros((0, 2), np.int64), image_shape)

    @classmethod
    def from_dense(cls, masks: Any) -> InstanceMasks:
        """From a dense bool ``[N, H, W]`` array: each mask cropped to its set pixels."""
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"masks: expected shape [N, H, W], found {tuple(masks.shape)}")
        masks = masks.astype(bool, copy=False)
        crops, offsets = [], []
        for mask in masks:
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            if rows.size == 0:
                crops.append(np.zeros((0, 0), bool))
                offsets.append((0, 0))
                continue
            crops.append(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
            offsets.append((cols[0], rows[0]))
        return cls(crops, np.array(offsets, np.int64).reshape(-1, 2), masks.shape[1:])

    def __len__(self) -> int:
        return len(self._packed)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, H, W)``: the shape :meth:`dense` would have."""
        return (len(self), *self.image_shape)

    @property
    def offsets(self) -> np.ndarray:
        """int64 ``[N, 2]``: ``(x0, y0)`` of each crop in the image."""
        return self._offsets.copy()

    @property
    def boxes(self) -> np.ndarray:
        """int64 ``[N, 4]``: x0, y0, x1, y1 (x1, y1 exclusive) of each crop in image pixels."""
        return np.concatenate([self._offsets, self._offsets + self._sizes[:, ::-1]], axis=1)

    @property
    def nbytes(self) -> int:
        """Bytes held by the masks (bit-packed crops plus their offsets, sizes and areas)."""
        return sum(p.nbytes for p in self._packed) + self._sizes.nbytes + self._offsets.nbytes + self._areas.nbytes

    def crop(self, i: int) -> np.ndarray:
        """Mask ``i`` cropped to its box: bool ``[h, w]`` (placed at :attr:`offsets` ``[i]``)."""
        h, w = (int(v) for v in self._sizes[i])
        if h == 0 or w == 0:
            return np.zeros((h, w), bool)
        return np.unpackbits(self._packed[i], axis=1, count=w).view(bool)

    def area(self) -> np.ndarray:
        """int64 ``[N]``: pixels in each mask."""
        return self._areas.copy()

    def dense(self) -> np.ndarray:
        """bool ``[N, H, W]``: every mask at full image size (costs ``N * H * W`` bytes)."""
        out = np.zeros(self.shape, bool)
        for i in range(len(self)):
            (x0, y0), (h, w) = self._offsets[i], self._sizes[i]
            out[i, y0:y0 + h, x0:x0 + w] = self.crop(i)
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        """Each mask at full image size, bool ``[H, W]``, one at a time (as iterating the dense array)."""
        for i in range(len(self)):
            yield self[i].dense()[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        dense = self.dense()
        return dense if dtype is None else dense.astype(dtype)

    def __getitem__(self, index: MaskIndex) -> InstanceMasks:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        picked = np.arange(len(self))[index]
        picked = np.atleast_1d(picked)
        out = InstanceMasks.__new__(InstanceMasks)
        out.image_shape = self.image_shape
        out._packed = [self._packed[i] for i in picked.tolist()]
        out._sizes, out._offsets, out._areas = self._sizes[picked], self._offsets[picked], self._areas[picked]
        return out

    def to_rle(self) -> list[dict[str, Any]]:
        """One COCO RLE document per mask: ``{"size": [H, W], "counts": "<compressed>"}`` (see
        :mod:`edgecv.runtimes.rle`; pycocotools' ``mask.decode`` reads it)."""
        return [rle.to_document(rle.encode_crop(self.crop(i), int(x0), int(y0), self.image_shape), self.image_shape)
                for i, (x0, y0) in enumerate(self._offsets.tolist())]

    @classmethod
    def from_rle(cls, documents: Sequence[dict[str, Any]], image_shape: tuple[int, int] | None = None
                 ) -> InstanceMasks:
        """Read :meth:`to_rle` documents (compressed or uncompressed counts), each cropped tight.

        Raises:
            ValueError: documents of different sizes (or not ``image_shape``), malformed counts.
        """
        sizes = {tuple(doc["size"]) for doc in documents}
        if image_shape is not None:
            sizes.add(tuple(int(v) for v in image_shape))
        if len(sizes) > 1:
            raise ValueError(f"masks: expected one image size for every mask, found {sorted(sizes)}")
        shape = sizes.pop() if sizes else (0, 0)
        crops, offsets = [], []
        for doc in documents:
            crop, x0, y0 = rle.decode_crop(rle.counts_of(doc), shape)
            crops.append(crop)
            offsets.append((x0, y0))
        return cls(crops, np.array(offsets, np.int64).reshape(-1, 2), shape)

    def __repr__(self) -> str:
        return f"InstanceMasks(n={len(self)}, image_shape={self.image_shape}, nbytes={self.nbytes})"
