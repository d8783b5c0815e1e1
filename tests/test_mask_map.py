"""Mask mAP (pycocotools ``segm``) in the evaluation: hand-built cases whose figures are known."""

import numpy as np
import pytest

from edgecv.data.coco import coco_dict
from edgecv.data.synthetic import Sample
from edgecv.evaluation import evaluate
from edgecv.runtimes.detections import Detections
from edgecv.runtimes.masks import InstanceMasks

NAMES = ["circle", "square"]
H, W = 40, 60  # not square: masks must be pasted at the image's own size


class _Data:
    """The interface :func:`evaluate` reads (gt, class names, category ids, read)."""

    def __init__(self, samples):
        self.samples = samples
        self.gt = coco_dict(samples, NAMES, [f"{i}.png" for i in range(len(samples))])
        self.class_names, self.category_ids = NAMES, [1, 2]

    def read(self, entry):
        return self.samples[entry["id"] - 1].image


def _square(x0, y0, side):
    mask = np.zeros((H, W), bool)
    mask[y0:y0 + side, x0:x0 + side] = True
    return mask


def _sample(mask, cls):
    ys, xs = np.nonzero(mask)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    return Sample(np.zeros((H, W, 3), np.uint8), box, np.array([cls], np.int32), mask[None], np.zeros((H, W), np.uint8))


def _predictor(masks_per_image, boxes_per_image, classes=(1, 1)):
    """One detection per image (in call order): its box, class and dense mask at the image's size."""
    calls = iter(range(10**6))

    def predict(images):
        out = []
        for image in images:
            i = next(calls)
            out.append(Detections(boxes_per_image[i], np.array([0.9], np.float32), np.array([classes[i]], np.int32),
                                  NAMES, masks=InstanceMasks.from_dense(masks_per_image[i][None])))
            assert image.shape[:2] == (H, W)
        return out

    return predict


def test_mask_iou_two_thirds_scores_four_of_ten_thresholds():
    """Truth: a 10x10 square; prediction: the same box, the mask shifted 2 px (IoU 80/120 = 0.667).
    Box AP is 1 at every threshold; mask AP is 1 at IoU 0.50..0.65 and 0 above: mAP50-95 = 0.4."""
    truth = _square(20, 10, 10)
    data = _Data([_sample(truth, 1)])
    result = evaluate(_predictor([_square(22, 10, 10)], [data.samples[0].boxes]), data, show_progress=False)
    assert result.map50_95 == pytest.approx(1.0)
    assert result.mask_map50_95 == pytest.approx(0.4) and result.mask_map50 == pytest.approx(1.0)
    assert result.mask_per_class["square"] == pytest.approx(0.4) and result.to_dict()["mask_map50_95"] == result.mask_map50_95


def test_right_boxes_with_wrong_masks_score_zero_mask_map():
    """Boxes exact, masks elsewhere in the image: box mAP 1, mask mAP 0 (the masks are really scored)."""
    truths = [_square(5, 5, 12), _square(40, 20, 15)]
    data = _Data([_sample(truths[0], 0), _sample(truths[1], 1)])
    boxes = [s.boxes for s in data.samples]
    result = evaluate(_predictor([truths[1], truths[0]], boxes, (0, 1)), data, show_progress=False)
    assert result.map50_95 == pytest.approx(1.0) and result.mask_map50_95 == pytest.approx(0.0)
    result = evaluate(_predictor(truths, boxes, (0, 1)), data, show_progress=False)
    assert result.mask_map50_95 == pytest.approx(1.0) and result.mask_map50 == pytest.approx(1.0)


def test_box_only_predictor_reports_no_mask_figures():
    data = _Data([_sample(_square(20, 10, 10), 1)])
    result = evaluate(lambda ims: [Detections(data.samples[0].boxes, np.array([0.9], np.float32),
                                              np.array([1], np.int32), NAMES)], data, show_progress=False)
    assert result.map50_95 == pytest.approx(1.0) and result.mask_map50_95 is None and result.mask_per_class == {}


def test_box_only_ground_truth_leaves_mask_figures_out():
    """A dataset without masks still gets box mAP for a mask model; mask figures stay None."""
    truth = _square(20, 10, 10)
    data = _Data([_sample(truth, 1)])
    for annotation in data.gt["annotations"]:
        del annotation["segmentation"]
    result = evaluate(_predictor([truth], [data.samples[0].boxes]), data, show_progress=False)
    assert result.map50_95 == pytest.approx(1.0) and result.mask_map50_95 is None
