"""Instance masks kept compact, pasted right, and carried by the result schema as COCO RLE; label maps
as SemanticMap documents. pycocotools is the reference for the RLE (the runtime does not import it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecv.errors import ResultError
from edgecv.runtimes import rle
from edgecv.runtimes.detections import Detections, check_result
from edgecv.runtimes.masks import InstanceMasks
from edgecv.runtimes.preprocess import LetterboxInfo
from edgecv.runtimes.results import read_result
from edgecv.runtimes.semantic_map import SemanticMap
from edgecv.runtimes.tasks import PostContext
from edgecv.runtimes.tasks.segment import TASK as SEGMENT, paste_masks

mask_util = pytest.importorskip("pycocotools.mask")
NAMES = ("background", "cat", "dog")


def random_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Blobs of every kind: touching the image's edges (runs across columns), empty, full, noise."""
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            masks[i] = rng.random((h, w)) > 0.5
        elif kind == 1:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            masks[i, y0:, x0:] = True  # reaches bottom and right: runs join across columns
        elif kind == 2 and i % 8 == 2:
            masks[i] = True
        elif kind == 3:
            yy, xx = np.mgrid[:h, :w]
            masks[i] = (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 3) ** 2
    return masks


@pytest.mark.parametrize("shape", [(7, 5), (1, 1), (64, 48), (1, 40), (33, 1)])
def test_rle_matches_pycocotools_both_ways(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for mask in random_masks(rng, 8, *shape):
        ours = rle.to_document(rle.encode_crop(mask, 0, 0, shape), shape)
        theirs = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert ours == {"size": list(theirs["size"]), "counts": theirs["counts"].decode()}
        assert np.array_equal(mask_util.decode({"size": ours["size"], "counts": ours["counts"].encode()}), mask)
        assert np.array_equal(rle.decode_dense(rle.counts_of(ours), shape), mask)


def test_crop_encoding_equals_dense_and_decodes_tight() -> None:
    rng = np.random.default_rng(0)
    image_hw = (40, 30)
    for _ in range(30):
        h, w = rng.integers(1, 40), rng.integers(1, 30)
        y0, x0 = rng.integers(0, 41 - h), rng.integers(0, 31 - w)
        crop = rng.random((h, w)) > 0.3
        dense = np.zeros(image_hw, bool)
        dense[y0:y0 + h, x0:x0 + w] = crop
        counts = rle.encode_crop(crop, x0, y0, image_hw)
        assert np.array_equal(counts, rle.encode_crop(dense, 0, 0, image_hw))
        tight, tx, ty = rle.decode_crop(counts, image_hw)
        placed = np.zeros(image_hw, bool)
        placed[ty:ty + tight.shape[0], tx:tx + tight.shape[1]] = tight
        assert np.array_equal(placed, dense) and tight.any(0)[[0, -1]].all() and tight.any(1)[[0, -1]].all()
    with pytest.raises(ValueError, match="summing to 1200"):
        rle.decode_crop(np.array([5, 5]), image_hw)
    with pytest.raises(ValueError, match="COCO counts characters"):
        rle.decompress("ab ")


def test_instance_masks_index_dense_and_area() -> None:
    dense = random_masks(np.random.default_rng(1), 6, 30, 20)
    masks = InstanceMasks.from_dense(dense)
    assert masks.shape == (6, 30, 20) and np.array_equal(masks.dense(), dense)
    assert masks.area().tolist() == dense.sum((1, 2)).tolist()
    keep = np.array([True, False, True, False, False, True])
    for index, rows in ((keep, [0, 2, 5]), ([4, 1], [4, 1]), (slice(1, 3), [1, 2]), (3, [3]),
                        (np.array([], np.intp), [])):
        assert np.array_equal(masks[index].dense(), dense[rows])
    assert np.array_equal(InstanceMasks.from_rle(masks.to_rle()).dense(), dense)
    assert all(np.array_equal(a, b) for a, b in zip(masks, dense)) and len(list(masks)) == 6
    with pytest.raises(ValueError, match="inside the 20x30 image"):
        InstanceMasks([np.ones((5, 5))], [[18, 0]], (30, 20))


def test_detections_indexing_keeps_masks_aligned() -> None:
    dense = np.zeros((3, 10, 10), bool)
    for i in range(3):
        dense[i, i:i + 2, i:i + 2] = True
    dets = Detections(np.tile([0, 0, 5, 5], (3, 1)), [0.9, 0.5, 0.7], [0, 1, 2], NAMES, dense)
    picked = dets[dets.scores > 0.6]
    assert picked.class_ids.tolist() == [0, 2] and np.array_equal(picked.masks.dense(), dense[[0, 2]])
    assert np.array_equal(dets[1].masks.dense(), dense[[1]]) and np.array_equal(dets[::-1].masks.dense(), dense[::-1])


def segment_outputs(rng: np.random.Generator, k: int, net: int, frac: float) -> dict[str, np.ndarray]:
    """Segment contract outputs for one image: ``k`` boxes up to ``frac`` of the input side."""
    sizes = rng.uniform(0.05, frac, (k, 2)) * net
    x1y1 = rng.uniform(0, net - sizes)
    boxes = np.concatenate([x1y1, x1y1 + sizes], 1).astype(np.float32)
    return {"num_dets": np.array([[k]], np.int32), "boxes": boxes[None], "scores": np.full((1, k), 0.9, np.float32),
            "classes": np.ones((1, k), np.int32), "masks": rng.random((1, k, 28, 28)).astype(np.float32)}


def test_100_masks_on_a_1080p_frame_stay_small() -> None:
    """The issue's bound: 100 masks on 1080p must not cost the 207 MB a dense [N, H, W] bool would."""
    rng = np.random.default_rng(2)
    info = LetterboxInfo(640 / 1920, 0, 140, (1080, 1920))  # 1920x1080 letterboxed into 640x640
    context = PostContext(NAMES, None, (640, 640))
    typical = SEGMENT.postprocess(segment_outputs(rng, 100, 640, 0.35), [info], context)[0]
    assert len(typical) == 100 and typical.masks.shape == (100, 1080, 1920)
    assert typical.masks.nbytes < 3 * 2**20, typical.masks.nbytes  # objects up to a third of the frame
    huge = {"num_dets": np.array([[100]], np.int32),
            "boxes": np.tile([0, 140, 640, 500], (1, 100, 1)).astype(np.float32),
            "scores": np.full((1, 100), 0.5, np.float32), "classes": np.zeros((1, 100), np.int32),
            "masks": np.ones((1, 100, 28, 28), np.float32)}
    worst = SEGMENT.postprocess(huge, [info], context)[0]  # 100 full-frame boxes: 1 bit per pixel
    assert worst.masks.area().tolist() == [1080 * 1920] * 100
    assert worst.masks.nbytes < 27 * 2**20, worst.masks.nbytes
    assert len(json.dumps(worst.to_dict())) < 100 * 200  # an all-set mask is a few runs in RLE


@pytest.mark.parametrize("info", [LetterboxInfo(0.5, 10, 30, (100, 160)),  # letterbox: scale + pad
                                  LetterboxInfo(0.5, 0, 0, (100, 160), scale_y=0.8)])  # stretch: per axis
def test_paste_puts_the_grid_over_the_box_in_original_pixels(info: LetterboxInfo) -> None:
    """A grid whose left half is set marks exactly the left half of the box's original pixels;
    a box leaving the image keeps its grid spanning the whole box (the part outside is cut)."""
    scale_x, scale_y = info.scales
    original = np.array([[20.0, 10.0, 60.0, 50.0], [140.0, 60.0, 180.0, 120.0]])  # the second leaves the image
    net = original * [scale_x, scale_y, scale_x, scale_y] + [info.pad_x, info.pad_y, info.pad_x, info.pad_y]
    grid = np.zeros((2, 28, 28), np.float32)
    grid[:, :, :14] = 1.0
    masks = paste_masks(grid, net, info).dense()
    expected = np.zeros((2, 100, 160), bool)
    expected[0, 10:50, 20:40] = True
    expected[1, 60:100, 140:160] = True  # left half of x 140..180, clipped at the image's bottom
    assert np.array_equal(masks, expected)


def test_result_document_round_trip_with_masks_and_pycocotools() -> None:
    dense = random_masks(np.random.default_rng(3), 4, 48, 64)
    boxes = np.tile([1, 2, 30, 40], (4, 1))
    dets = Detections(boxes, [0.9, 0.8, 0.7, 0.6], [1, 2, 1, 0], NAMES, dense, track_ids=[3, -1, 5, 6])
    doc = json.loads(dets.to_json())
    assert check_result(doc) == [] and all(isinstance(m["counts"], str) for m in doc["masks"])
    back = read_result(doc, NAMES)
    assert isinstance(back, Detections) and np.array_equal(back.masks.dense(), dense)
    assert back.track_ids.tolist() == [3, -1, 5, 6]
    coco = [{"size": m["size"], "counts": m["counts"].encode()} for m in doc["masks"]]
    assert np.array_equal(np.moveaxis(mask_util.decode(coco), -1, 0), dense)
    empty = Detections(np.zeros((0, 4)), [], [], NAMES, InstanceMasks.empty((48, 64)))
    assert json.loads(empty.to_json())["masks"] == [] and len(read_result(json.loads(empty.to_json()))) == 0
    doc["masks"][1] = {"size": [48, 64]}
    with pytest.raises(ResultError, match=r"masks: expected a list of 4 COCO RLE objects"):
        read_result(doc)
    doc["masks"][1] = {"size": [48, 64], "counts": [5, 3]}
    with pytest.raises(ResultError, match="masks: expected non-negative counts summing to 3072"):
        read_result(doc)


def test_semantic_map_area_document_and_errors() -> None:
    labels = np.zeros((30, 40), np.int32)
    labels[5:15, 0:40] = 1
    labels[20:, 30:] = 2
    semantic = SemanticMap(labels, NAMES)
    assert semantic.area().tolist() == [1200 - 400 - 100, 400, 100]
    assert semantic.counts() == {"background": 700, "cat": 400, "dog": 100}
    assert np.array_equal(semantic.mask("dog"), labels == 2)
    doc = json.loads(semantic.to_json())
    assert check_result(doc) == [] and doc["boxes"] == []
    assert [c["label"] for c in doc["semantic"]["classes"]] == list(NAMES)
    for entry in doc["semantic"]["classes"]:  # each class is a COCO-stuff style RLE pycocotools reads
        coco = {"size": entry["rle"]["size"], "counts": entry["rle"]["counts"].encode()}
        assert np.array_equal(mask_util.decode(coco), labels == entry["class_id"])
    back = read_result(doc)
    assert isinstance(back, SemanticMap) and np.array_equal(back.labels, labels) and back.class_names == NAMES
    del doc["semantic"]["classes"][2]
    with pytest.raises(ResultError, match="cover all 1200 pixels, found 100 uncovered"):
        SemanticMap.from_dict(doc)
    with pytest.raises(ValueError, match=r"labels: expected class ids in \[0, 2\]"):
        SemanticMap(labels + 1, NAMES)
    with pytest.raises(ValueError, match=r"probs: expected shape \[3, 30, 40\]"):
        SemanticMap(labels, NAMES, np.zeros((3, 40, 30), np.float32))
    doc["semantic"]["size"] = [30]
    assert any(p.startswith("semantic: expected") for p in check_result(doc))
