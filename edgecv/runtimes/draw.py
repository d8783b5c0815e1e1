"""Draw results (:class:`~edgecv.runtimes.detections.Detections` with their instance masks, or a
:class:`~edgecv.runtimes.semantic_map.SemanticMap`) and a stats overlay on BGR images with OpenCV.

Instance masks are translucent fills in their detection's colour, under the box and label; a
label map is a translucent colour overlay (class colours, a class named ``background`` left
clear) with a small legend of the classes present, largest first.

Readable at any resolution: line width and text size follow the image's short side
(:meth:`DrawStyle.for_image`), so a 320x240 frame and a 1080p frame carry labels of the same
apparent size, and every label is kept inside the frame. With tracking, a label reads
``"#12 person 0.87"`` and each track keeps its colour (colours follow the track id, not the class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from edgecv.runtimes.detections import Detections
from edgecv.runtimes.image import to_bgr_uint8
from edgecv.runtimes.masks import InstanceMasks
from edgecv.runtimes.semantic_map import SemanticMap

#: BGR colours, one per class id (cycled). Distinct, saturated, readable with black or white text.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
    (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
    (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
    (200, 149, 255), (199, 55, 255),
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Consecutive track ids step 7 places through the 20-colour palette (7 and 20 coprime: every
# colour is used), so neighbouring ids, often neighbouring objects, get clearly different colours.
_TRACK_STEP = 7


def class_color(class_id: int) -> tuple[int, int, int]:
    """The BGR colour of ``class_id``."""
    return PALETTE[int(class_id) % len(PALETTE)]


def track_color(track_id: int) -> tuple[int, int, int]:
    """The BGR colour of track ``track_id`` (>= 0); constant for the life of the track."""
    return PALETTE[(int(track_id) * _TRACK_STEP) % len(PALETTE)]


@dataclass(frozen=True)
class DrawStyle:
    """Sizes of what is drawn, in pixels of the image drawn on."""

    line_width: int  # box outline
    font_scale: float  # cv2.putText scale (1.0 = ~22 px capital height)
    text_thickness: int
    pad: int  # space between text and the edge of its filled background

    @classmethod
    def for_image(cls, height: int, width: int, line_width: int | None = None) -> DrawStyle:
        """Sizes for an image of ``height`` x ``width``: text ~2 % of the short side, at least ~9 px.

        The short side sets the scale so that a portrait or a very wide frame gets the same
        label size as a 4:3 one of that height; below ~9 px Hershey text is unreadable, so
        small frames keep that floor (labels then take a larger share of the frame).
        """
        short = max(1, min(height, width))
        font_scale = max(0.4, short / 1000)
        return cls(line_width=line_width or max(1, round(short / 300)), font_scale=font_scale,
                   text_thickness=max(1, round(font_scale * 1.6)), pad=max(1, round(short / 400)))

    def text_size(self, text: str) -> tuple[int, int, int]:
        """``(width, height, baseline)`` of ``text`` in pixels."""
        (w, h), baseline = cv2.getTextSize(text, _FONT, self.font_scale, self.text_thickness)
        return w, h, baseline


def _text_color(color: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = color
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 150 else (255, 255, 255)


def label_rect(style: DrawStyle, text: str, box: tuple[int, int, int, int],
               image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where the label of ``box`` (x1, y1, x2, y2) goes: ``(left, top, right, bottom)`` inside the image.

    Above the box when there is room, else just inside its top edge; shifted left/up so that
    it never leaves the image (``image_size`` = (height, width)).
    """
    h, w = image_size
    tw, th, baseline = style.text_size(text)
    width, height = tw + 2 * style.pad, th + baseline + 2 * style.pad
    x1, y1 = box[0], box[1]
    top = y1 - height if y1 - height >= 0 else max(0, y1)
    top = max(0, min(top, h - height))
    left = max(0, min(x1, w - width))
    return left, top, left + width, top + height


def _draw_label(canvas: np.ndarray, text: str, box: tuple[int, int, int, int], color: tuple[int, int, int],
                style: DrawStyle) -> None:
    """A filled label with ``text`` at :func:`label_rect`."""
    left, top, right, bottom = label_rect(style, text, box, canvas.shape[:2])
    _, th, _ = style.text_size(text)
    cv2.rectangle(canvas, (left, top), (right - 1, bottom - 1), color, cv2.FILLED)
    cv2.putText(canvas, text, (left + style.pad, top + style.pad + th), _FONT, style.font_scale,
                _text_color(color), style.text_thickness, cv2.LINE_AA)


def detection_label(label: str, score: float, track_id: int | None = None) -> str:
    """``"#12 person 0.87"`` (tracked), ``"person 0.87"`` (untracked or no tracking)."""
    text = f"{label} {score:.2f}"
    return text if track_id is None or track_id < 0 else f"#{track_id} {text}"


def annotate(image: np.ndarray, detections: Detections | SemanticMap, *, line_width: int | None = None,
             show_labels: bool = True, mask_alpha: float = 0.4) -> np.ndarray:
    """Return a BGR uint8 copy of ``image`` with the result drawn.

    ``image`` is anything :func:`~edgecv.runtimes.image.to_bgr_uint8` accepts; boxes are xyxy
    in its pixels (as a predictor returns them). Labels read ``"name score"``, prefixed with
    ``#id`` for tracked detections (``detections.track_ids`` >= 0), whose box and label take the
    track's colour; untracked ones take their class colour. ``line_width`` defaults to
    :meth:`DrawStyle.for_image`. Instance masks of the image's size are filled in the detection's
    colour with ``mask_alpha``; a :class:`SemanticMap` goes to :func:`annotate_semantic`.
    """
    if isinstance(detections, SemanticMap):
        return annotate_semantic(image, detections, alpha=mask_alpha, show_legend=show_labels)
    canvas = to_bgr_uint8(image)[0].copy()
    h, w = canvas.shape[:2]
    style = DrawStyle.for_image(h, w, line_width)
    track_ids = detections.track_ids if detections.track_ids is not None else np.full(len(detections), -1)
    colors = [track_color(t) if t >= 0 else class_color(c) for t, c in zip(track_ids.tolist(),
                                                                           detections.class_ids.tolist())]
    if detections.masks is not None and detections.masks.image_shape == (h, w):
        fill_masks(canvas, detections.masks, colors, mask_alpha)
    boxes = [tuple(round(v) for v in box) for box in detections.boxes.tolist()]
    for box, color in zip(boxes, colors):
        # LINE_8: box sides are axis-aligned, so anti-aliasing only blurs them (a 1 px line turns to a smear)
        cv2.rectangle(canvas, box[:2], box[2:], color, style.line_width, cv2.LINE_8)
    if show_labels:  # after every box, so no box line runs through a label's text
        labels = detections.labels
        for i, (box, score) in enumerate(zip(boxes, detections.scores.tolist())):
            _draw_label(canvas, detection_label(labels[i], score, int(track_ids[i])), box, colors[i], style)
    return canvas


def fill_masks(canvas: np.ndarray, masks: InstanceMasks, colors: Sequence[tuple[int, int, int]],
               alpha: float) -> None:
    """Blend each mask into ``canvas`` (BGR uint8, the masks' image size) in its colour, IN PLACE;
    only each mask's crop is touched (OpenCV blends the crop, the mask picks the pixels)."""
    for i, ((x0, y0), color) in enumerate(zip(masks.offsets.tolist(), colors)):
        crop = masks.crop(i)
        if not crop.any():
            continue
        region = canvas[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]]
        tint = tuple(float(v) * alpha for v in color) + (0.0,)
        blended = cv2.add(cv2.convertScaleAbs(region, alpha=1.0 - alpha), tint)  # region * (1 - a) + colour * a
        cv2.copyTo(blended, crop.view(np.uint8), region)  # in place into the canvas view, masked pixels only


def _is_background(name: str) -> bool:
    return name.strip("_ ").lower() in ("background", "bg", "void")


def annotate_semantic(image: np.ndarray, semantic: SemanticMap, *, alpha: float = 0.45,
                      show_legend: bool = True, legend_rows: int = 12) -> np.ndarray:
    """Return a BGR uint8 copy of ``image`` with ``semantic``'s label map as a translucent overlay
    (:func:`class_color` per class; a class named ``background`` / ``bg`` / ``void`` is left clear)
    and a legend (bottom-left, at most ``legend_rows`` classes, largest area first).

    The label map must have the image's size (it does when it comes from a predictor)."""
    canvas = to_bgr_uint8(image)[0].copy()
    h, w = canvas.shape[:2]
    if semantic.shape != (h, w):
        raise ValueError(f"annotate_semantic: expected a label map of the image's size {h}x{w}, "
                         f"found {semantic.shape[0]}x{semantic.shape[1]}")
    area = semantic.area()
    present = [c for c in np.flatnonzero(area).tolist() if not _is_background(semantic.name_of(c))]
    lut = np.zeros((len(area), 3), np.uint8)
    painted = np.zeros(len(area), bool)
    for c in present:
        lut[c], painted[c] = class_color(c), True
    blended = cv2.addWeighted(canvas, 1.0 - alpha, lut[semantic.labels], alpha, 0.0)
    cv2.copyTo(blended, painted[semantic.labels].view(np.uint8), canvas)  # in place
    if show_legend and present:
        order = sorted(present, key=lambda c: -area[c])[:legend_rows]
        _draw_legend(canvas, [(semantic.name_of(c), class_color(c), area[c] / (h * w)) for c in order])
    return canvas


def _draw_legend(canvas: np.ndarray, entries: Sequence[tuple[str, tuple[int, int, int], float]]) -> None:
    """A dark panel in the bottom-left corner: a colour swatch, the class name and its share of the
    image per entry, sized like every label (:meth:`DrawStyle.for_image`); rows that do not fit the
    frame's height are left out."""
    h, w = canvas.shape[:2]
    style = DrawStyle.for_image(h, w)
    _, line_h, baseline = style.text_size("Hg")
    step = line_h + baseline + style.pad
    entries = list(entries)[: max(0, (h - 2 * style.pad) // step)]
    if not entries:
        return
    texts = [f"{name} {share:.0%}" for name, _, share in entries]
    swatch = line_h
    panel_w = min(w, swatch + 3 * style.pad + max(style.text_size(t)[0] for t in texts))
    panel_h = min(h, step * len(entries) + 2 * style.pad)
    y0 = h - panel_h
    panel = canvas[y0:, :panel_w]
    panel[:] = (panel * 0.35).astype(np.uint8)
    for k, ((_, color, _), text) in enumerate(zip(entries, texts)):
        top = y0 + style.pad + k * step
        cv2.rectangle(canvas, (style.pad, top), (style.pad + swatch, top + line_h), color, cv2.FILLED)
        cv2.putText(canvas, text, (2 * style.pad + swatch + style.pad, top + line_h), _FONT, style.font_scale,
                    (255, 255, 255), style.text_thickness, cv2.LINE_AA)


#: ``draw_overlay`` corners.
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def draw_overlay(image: np.ndarray, text_lines: Sequence[str], *, corner: str = "top-left",
                 alpha: float = 0.6) -> np.ndarray:
    """Draw ``text_lines`` (e.g. ``["12.5 fps", "latency 48 ms", "dropped 3"]``) in a corner, IN PLACE.

    ``image``: BGR uint8 ``[H, W, 3]`` (typically the output of :func:`annotate`), modified and
    returned, so a stream pays for no extra full-frame copy. White text on a dark panel blended
    with ``alpha`` so the frame stays visible under it; sized by :meth:`DrawStyle.for_image`;
    lines that do not fit the frame's height are left out, long lines are clipped at its edge.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"draw_overlay: expected a BGR uint8 image [H, W, 3], found {image.dtype} {image.shape}")
    if corner not in CORNERS:
        raise ValueError(f"draw_overlay: corner: expected one of {list(CORNERS)}, found {corner!r}")
    lines = [str(line) for line in text_lines if str(line)]
    if not lines:
        return image
    h, w = image.shape[:2]
    style = DrawStyle.for_image(h, w)
    _, line_h, baseline = style.text_size("Hg")
    step = line_h + baseline + style.pad
    fitting = max(0, min(len(lines), (h - 2 * style.pad) // step))
    lines = lines[:fitting]
    if not lines:
        return image
    panel_w = min(w, max(style.text_size(line)[0] for line in lines) + 2 * style.pad)
    panel_h = min(h, step * len(lines) + 2 * style.pad)
    x0 = 0 if corner.endswith("left") else w - panel_w
    y0 = 0 if corner.startswith("top") else h - panel_h
    panel = image[y0:y0 + panel_h, x0:x0 + panel_w]
    panel[:] = (panel * (1 - alpha)).astype(np.uint8)  # blend towards black: only the panel is touched
    for k, line in enumerate(lines):
        y = y0 + style.pad + k * step + line_h
        cv2.putText(image, line, (x0 + style.pad, y), _FONT, style.font_scale, (255, 255, 255),
                    style.text_thickness, cv2.LINE_AA)
    return image
