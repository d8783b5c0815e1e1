import json

import numpy as np
import pytest

from edgecv.data import ShapesDataset
from edgecv.data.coco import CocoFolder, mask_to_rle, write_coco
from edgecv.errors import DatasetError


def test_rle_matches_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    m = rng.random((17, 23)) > 0.6
    rle = mask_to_rle(m)
    compressed = mask_utils.frPyObjects(rle, *rle["size"])
    np.testing.assert_array_equal(mask_utils.decode(compressed).astype(bool), m)
    assert sum(rle["counts"]) == m.size


def test_write_and_read_back(tmp_path):
    ds = ShapesDataset("val", 5, 96, seed=2)
    path = write_coco(ds, tmp_path / "coco", show_progress=False)
    folder = CocoFolder.open(tmp_path / "coco")
    assert folder.class_names == list(ds.class_names)
    assert len(folder.gt["images"]) == 5
    assert sum(len(ds[i].boxes) for i in range(5)) == len(folder.gt["annotations"])
    np.testing.assert_array_equal(folder.read(folder.gt["images"][0]), ds[0].image)
    json.loads(path.read_text())


def test_errors(tmp_path):
    with pytest.raises(DatasetError, match="annotations"):
        CocoFolder.open(tmp_path)
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(DatasetError, match="JSON"):
        CocoFolder.open(tmp_path)
    (tmp_path / "annotations.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match="missing"):
        CocoFolder.open(tmp_path)
