"""Annotation readable at any resolution: sizes follow the frame, labels stay inside it, track ids
and their colours, the FPS/latency overlay."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.runtimes.detections import Detections
from edgecv.runtimes.draw import (
    DrawStyle, annotate, class_color, detection_label, draw_overlay, label_rect, track_color,
)

NAMES = ("person", "car")
SIZES = [(240, 320), (480, 640), (1080, 1920), (1920, 1080)]


def grey(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), 128, np.uint8)


@pytest.mark.parametrize("h, w", SIZES)
def test_text_is_readable_and_in_proportion(h: int, w: int) -> None:
    style = DrawStyle.for_image(h, w)
    _, text_h, _ = style.text_size("#12 person 0.87")
    assert text_h >= 8  # Hershey capitals below ~8 px are not legible
    assert text_h >= 0.018 * min(h, w) or text_h >= 8
    assert text_h <= max(12, 0.04 * min(h, w))  # ... and they do not swamp the frame
    assert 1 <= style.line_width <= max(1, min(h, w) // 150)


def test_sizes_grow_with_the_frame() -> None:
    small, large = DrawStyle.for_image(240, 320), DrawStyle.for_image(1080, 1920)
    assert large.text_size("person")[1] >= 2 * small.text_size("person")[1]
    assert large.line_width >= 3 * small.line_width and large.text_thickness > small.text_thickness


@pytest.mark.parametrize("h, w", SIZES)
def test_labels_stay_inside_the_frame(h: int, w: int) -> None:
    """Boxes at every edge and corner, and boxes partly outside the frame: the whole label is drawn."""
    style = DrawStyle.for_image(h, w)
    boxes = [(0, 0, 40, 40), (w - 10, 0, w, 30), (0, h - 5, 50, h), (w - 20, h - 20, w + 30, h + 30),
             (-30, -30, 20, 20), (w // 2, h // 2, w // 2 + 10, h // 2 + 10)]
    text = "#123 person 0.87"
    for box in boxes:
        left, top, right, bottom = label_rect(style, text, box, (h, w))
        assert 0 <= left < right <= w and 0 <= top < bottom <= h, (box, (left, top, right, bottom))
        assert right - left >= style.text_size(text)[0]  # nothing cut off
    dets = Detections(np.array(boxes, np.float32), [0.87] * len(boxes), [0] * len(boxes), NAMES,
                      track_ids=[123] * len(boxes))
    drawn = annotate(grey(h, w), dets)
    colour = np.array(track_color(123))
    for box in boxes:  # the label's fill colour is there, at the computed place
        left, top, right, bottom = label_rect(style, text, box, (h, w))
        fill = np.all(drawn[top:bottom, left:right] == colour, axis=2)
        assert fill.mean() > 0.5, (box, fill.mean())


def test_tracked_labels_and_colours_follow_the_track() -> None:
    assert detection_label("person", 0.8712, 12) == "#12 person 0.87"
    assert detection_label("person", 0.8712, -1) == "person 0.87" == detection_label("person", 0.8712)
    assert len({track_color(i) for i in range(20)}) == 20 and track_color(3) != track_color(4)
    frame = grey(240, 320)
    boxes = np.array([[20, 40, 100, 120], [180, 40, 260, 120], [120, 150, 200, 230]], np.float32)
    dets = Detections(boxes, [0.9, 0.8, 0.7], [0, 0, 0], NAMES, track_ids=[3, 4, -1])
    drawn = annotate(frame, dets, show_labels=False)
    right_edge = lambda b: drawn[int(b[1]) + 5:int(b[3]) - 5, int(b[2])]  # noqa: E731  box side, label-free
    assert np.all(right_edge(boxes[0]) == track_color(3))  # same class, different tracks: different colours
    assert np.all(right_edge(boxes[1]) == track_color(4))
    assert np.all(right_edge(boxes[2]) == class_color(0))  # untracked: its class colour
    untracked = annotate(frame, Detections(boxes, [0.9, 0.8, 0.7], [0, 0, 0], NAMES), show_labels=False)
    assert np.all(untracked[50:110, 100] == class_color(0))  # tracking off: class colours as before


def test_overlay_draws_in_place_in_every_corner() -> None:
    lines = ["14.8 fps", "latency 52 ms", "dropped 3  reconnects 0"]
    for h, w in [(240, 320), (1080, 1920)]:
        style = DrawStyle.for_image(h, w)
        for corner in ("top-left", "top-right", "bottom-left", "bottom-right"):
            frame = grey(h, w)
            assert draw_overlay(frame, lines, corner=corner) is frame  # no copy of the frame
            changed = np.any(frame != 128, axis=2)
            ys, xs = np.nonzero(changed)
            assert (ys.min() == 0) == corner.startswith("top") and (ys.max() == h - 1) == corner.startswith("bottom")
            assert (xs.min() == 0) == corner.endswith("left") and (xs.max() == w - 1) == corner.endswith("right")
            assert changed.mean() < 0.12  # a corner panel, not the frame
            assert (frame.min(axis=2) > 200).sum() > 20 * len(lines)  # white text on it
            assert ys.max() - ys.min() + 1 >= len(lines) * style.text_size("Hg")[1]


def test_overlay_with_more_lines_than_fit_and_bad_input() -> None:
    frame = grey(60, 80)
    draw_overlay(frame, [f"line {i}" for i in range(50)])  # only what fits, no error
    assert np.any(frame != 128) and np.all(frame[-2:] == 128)  # the bottom rows stay untouched
    assert np.array_equal(draw_overlay(grey(60, 80), []), grey(60, 80))
    with pytest.raises(ValueError, match=r"expected a BGR uint8 image \[H, W, 3\], found float32"):
        draw_overlay(np.zeros((60, 80, 3), np.float32), ["x"])
    with pytest.raises(ValueError, match="corner: expected one of"):
        draw_overlay(grey(60, 80), ["x"], corner="middle")
