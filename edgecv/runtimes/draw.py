"""Draw :class:`~edgecv.runtimes.detections.Detections` on a BGR image with OpenCV."""

from __future__ import annotations

import cv2
import numpy as np

from edgecv.runtimes.detections import Detections
from edgecv.runtimes.image import to_bgr_uint8

#: BGR colours, one per class id (cycled). Distinct, saturated, readable with black or white text.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
    (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
    (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203),
    (200, 149, 255), (199, 55, 255),
)


def class_color(class_id: int) -> tuple[int, int, int]:
    """The BGR colour of ``class_id``."""
    return PALETTE[int(class_id) % len(PALETTE)]


def _text_color(color: tuple[int, int, int]) -> tuple[int, int, int]:
    b, g, r = color
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 150 else (255, 255, 255)


def _draw_label(canvas: np.ndarray, text: str, x1: int, y1: int, color: tuple[int, int, int],
                font_scale: float, thickness: int) -> None:
    """A filled label box with ``text``, above the box corner if there is room, else inside it."""
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    height = th + baseline + 2
    top = y1 - height if y1 - height >= 0 else y1
    x1 = max(0, min(x1, canvas.shape[1] - tw - 2))
    cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + height), color, cv2.FILLED)
    cv2.putText(canvas, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                _text_color(color), thickness, cv2.LINE_AA)


def annotate(image: np.ndarray, detections: Detections, *, line_width: int | None = None,
             show_labels: bool = True, mask_alpha: float = 0.4) -> np.ndarray:
    """Return a BGR uint8 copy of ``image`` with boxes, ``"name score"`` labels and masks drawn.

    ``image`` is anything :func:`~edgecv.runtimes.image.to_bgr_uint8` accepts; boxes are xyxy
    in its pixels (as a predictor returns them). ``line_width`` defaults to ~0.3% of the
    image size (at least 1 px). Masks, when present and of the image's size, are blended in.
    """
    canvas = to_bgr_uint8(image)[0].copy()
    h, w = canvas.shape[:2]
    width = line_width or max(1, round((h + w) / 2 * 0.003))
    font_scale, text_thickness = max(0.35, width / 3), max(1, width // 2)
    if detections.masks is not None and detections.masks.shape[1:] == (h, w):
        for mask, class_id in zip(detections.masks, detections.class_ids):
            canvas[mask] = (canvas[mask] * (1 - mask_alpha) + np.array(class_color(class_id)) * mask_alpha
                            ).astype(np.uint8)
    labels = detections.labels
    for i, (box, score, class_id) in enumerate(zip(detections.boxes, detections.scores, detections.class_ids)):
        color = class_color(class_id)
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, width, cv2.LINE_AA)
        if show_labels:
            _draw_label(canvas, f"{labels[i]} {float(score):.2f}", x1, y1, color, font_scale, text_thickness)
    return canvas
