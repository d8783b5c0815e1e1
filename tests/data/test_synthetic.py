import numpy as np
import pytest

from edgecv.data import CLASS_NAMES, ShapesDataset


def test_deterministic_and_splits_disjoint():
    a, b = ShapesDataset("train", 4, 128, seed=3), ShapesDataset("train", 4, 128, seed=3)
    np.testing.assert_array_equal(a[2].image, b[2].image)
    np.testing.assert_array_equal(a[2].boxes, b[2].boxes)
    val = ShapesDataset("val", 4, 128, seed=3)
    assert not np.array_equal(a[0].image, val[0].image)


def test_labels_are_consistent():
    ds = ShapesDataset("val", 20, (96, 160), seed=1)
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        assert s.image.shape == (96, 160, 3) and s.image.dtype == np.uint8
        n = len(s.boxes)
        assert s.masks.shape == (n, 96, 160) and s.class_ids.shape == (n,)
        assert s.semantic.shape == (96, 160) and s.semantic.max() <= len(CLASS_NAMES)
        for box, mask, cls in zip(s.boxes, s.masks, s.class_ids):
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(box.astype(int))
            assert np.all(s.semantic[mask] == cls + 1)  # visible masks own their pixels
            seen.add(int(cls))
        # masks are disjoint: occlusion was resolved
        assert s.masks.sum(0).max(initial=0) <= 1
    assert len(seen) >= 4  # the classes are varied


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("nope")
    with pytest.raises(IndexError):
        ShapesDataset("val", 2)[2]
