import pytest
import torch

from edgecv.models.yolo import Yolo, YoloConfig, decode, expected_bin
from edgecv.models.yolo_loss import TaskAlignedAssigner, YoloLoss, box_ciou


@pytest.mark.parametrize("size", ["n", "s"])
def test_forward_and_decode_shapes(size):
    model = Yolo(YoloConfig(size, num_classes=3)).eval()
    x = torch.rand(2, 3, 96, 160)
    maps = model(x)
    assert [m.shape[-2:] for m in maps] == [(12, 20), (6, 10), (3, 5)]
    boxes, scores = decode(maps, model.config.reg_max)
    n = 12 * 20 + 6 * 10 + 3 * 5
    assert boxes.shape == (2, n, 4) and scores.shape == (2, n, 3)
    assert torch.all(boxes[..., 2] >= boxes[..., 0]) and torch.all(boxes[..., 3] >= boxes[..., 1])


def test_decode_of_known_maps():
    """Maps whose box logits put all mass on one bin per side decode to exact boxes around each cell centre."""
    reg_max, num_classes, (h, w) = 16, 3, (64, 96)
    sides = torch.tensor([1, 2, 3, 4])  # l, t, r, b in grid units of the level
    box_logits = torch.full((4, reg_max), -50.0)
    box_logits[torch.arange(4), sides] = 50.0  # softmax: one-hot on the chosen bin
    cls_logits = torch.tensor([-2.0, 0.0, 3.0])
    maps = []
    for stride in (8, 16, 32):
        gh, gw = h // stride, w // stride
        channel = torch.cat((box_logits.reshape(-1), cls_logits))  # [4*reg_max + C]
        maps.append(channel[None, :, None, None].expand(2, -1, gh, gw).clone())
    boxes, scores = decode(maps, reg_max)
    expected = []
    for stride in (8, 16, 32):
        ys, xs = torch.meshgrid(torch.arange(h // stride) + 0.5, torch.arange(w // stride) + 0.5, indexing="ij")
        cx, cy = xs.reshape(-1), ys.reshape(-1)
        expected.append(torch.stack((cx - 1, cy - 2, cx + 3, cy + 4), -1) * stride)  # x1, y1, x2, y2 pixels
    expected = torch.cat(expected)
    assert boxes.shape == (2, len(expected), 4) and scores.shape == (2, len(expected), num_classes)
    assert torch.allclose(boxes[0], expected, atol=1e-4) and torch.allclose(boxes[1], expected, atol=1e-4)
    assert torch.allclose(scores, torch.sigmoid(cls_logits).expand_as(scores), atol=1e-6)


def test_expected_bin_is_the_softmax_expectation_even_at_extreme_logits():
    """The written-out DFL equals softmax·bins, and stays finite where a bare exp would overflow."""
    logits = torch.randn(2, 4, 16, 50) * 5
    logits[0, 0, 3] = 1e4  # exp(1e4) = inf without the max shift
    logits[1, 2] = -1e4  # a side whose logits are all far below zero: still a uniform softmax
    bins = torch.arange(16, dtype=torch.float32).reshape(16, 1)
    reference = (logits.softmax(2) * bins).sum(2)
    got = expected_bin(logits, bins)
    assert torch.isfinite(got).all() and torch.allclose(got, reference, atol=1e-5)
    assert torch.allclose(got[0, 0], torch.full((50,), 3.0)) and torch.allclose(got[1, 2], torch.full((50,), 7.5))


def test_sizes_differ_in_width():
    count = lambda s: sum(p.numel() for p in Yolo(YoloConfig(s, 5)).parameters())  # noqa: E731
    assert 2.5e6 < count("n") < 3.5e6 and count("s") > 3 * count("n")


def test_ciou_of_identical_boxes_is_one():
    b = torch.tensor([[10.0, 20.0, 50.0, 80.0]])
    assert torch.allclose(box_ciou(b, b), torch.ones(1), atol=1e-6)
    far = torch.tensor([[200.0, 200.0, 220.0, 230.0]])
    assert box_ciou(b, far) < 0


def test_assigner_picks_anchors_inside_the_box():
    points = torch.stack(torch.meshgrid(torch.arange(8) * 8 + 4.0, torch.arange(8) * 8 + 4.0, indexing="xy"), -1).reshape(-1, 2)
    n = len(points)
    gt = torch.tensor([[[16.0, 16.0, 40.0, 40.0]]])
    boxes = gt.expand(1, n, 4).clone()
    scores = torch.full((1, n, 2), 0.5)
    tb, ts, fg = TaskAlignedAssigner(topk=4)(scores, boxes, points, torch.tensor([[1]]), gt, torch.tensor([[True]]))
    assert fg.sum() == 4
    inside = points[fg[0]]
    assert torch.all((inside > 16) & (inside < 40))
    assert torch.all(ts[0, fg[0], 1] > 0) and torch.all(ts[0, :, 0] == 0)


def test_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = Yolo(YoloConfig("n", 2))
    model.head.init_biases(128)
    loss_fn = YoloLoss(2, model.config.reg_max)
    x = torch.rand(2, 3, 128, 128)
    x[:, :, 32:80, 40:96] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    boxes = torch.tensor([[[40.0, 32.0, 96.0, 80.0]]] * 2)
    labels, valid = torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.bool)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss, parts = loss_fn(model(x), labels, boxes, valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0]
