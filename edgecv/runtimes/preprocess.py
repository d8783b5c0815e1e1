"""Letterbox / stretch and tensor building: the one preprocessing every backend and the calibrator share.

Conventions (they must match what the exporter wrote into the artifact metadata, and
:mod:`edgecv.export.torch_predictor` follows them on the PyTorch side):

* ``resize = "letterbox"`` (default): ``scale = min(H / h, W / w)``; the image is resized with
  ``cv2.INTER_LINEAR`` to ``(round(w * scale), round(h * scale))`` and padded with ``pad_value``
  (114) on all sides, centred, the odd pixel going right / bottom (``pad_x = (W - new_w) // 2``).
* ``resize = "stretch"`` (SSD-style and many OpenCV-trained models): the image is resized with
  ``cv2.INTER_LINEAR`` to exactly ``(W, H)``, aspect ratio not kept, no padding; boxes are mapped
  back per axis (``x / (W / w)``, ``y / (H / h)``).
* tensor: float32 ``[B, 3, H, W]`` (NCHW), channels in the artifact's ``color_order``
  (inputs are BGR; RGB artifacts get R, G, B planes, BGR artifacts get the planes as they are),
  value ``(x / 255 - mean[c]) / std[c]`` with ``c`` the tensor channel.
* boxes: x1, y1, x2, y2 pixels. Network outputs live in the resized image;
  :func:`scale_boxes_back` maps them to the original image.

* uint8 artifacts (``input_dtype`` uint8, ``layout`` NHWC, ``export --input uint8``): the tensor is
  the resized BGR image itself, ``[B, H, W, 3]`` uint8; cast, colour order, scaling, mean/std and
  NCHW happen inside the graph (``edgecv_pre/`` nodes). The resize writes straight into the tensor.

The network input size ``(H, W)`` is the artifact's fixed input height and width, or its
``letterbox_size`` when those axes are dynamic (:func:`input_hw`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from edgecv.errors import ArtifactError, ImageError
from edgecv.metadata import COLOR_ORDERS, RESIZE_MODES, ArtifactMetadata, validate_fields
from edgecv.runtimes.image import to_bgr_uint8

_INPUT_DTYPES = {"float32": np.float32, "float16": np.float16}
#: Allocates a tensor: ``(shape, dtype) -> array`` (the predictor passes its buffer pool's ``acquire``).
Allocate = Callable[[tuple[int, ...], type], np.ndarray]


@dataclass(frozen=True)
class LetterboxInfo:
    """How one image was resized: ``network_x = orig_x * scale + pad_x``, ``network_y = orig_y * scale_y + pad_y``.

    ``orig_shape`` is the original ``(height, width)`` in pixels. ``scale_y`` is None for a
    letterbox (one scale for both axes); a stretch sets it (and pads by 0).
    """

    scale: float
    pad_x: int
    pad_y: int
    orig_shape: tuple[int, int]
    scale_y: float | None = None

    @property
    def scales(self) -> tuple[float, float]:
        """``(scale_x, scale_y)``."""
        return self.scale, self.scale if self.scale_y is None else self.scale_y


@dataclass(frozen=True)
class Normalisation:
    """Per-output-channel affine map from uint8 pixels: ``plane_c = src[..., source[c]] * mul[c] - sub[c]``."""

    source: tuple[int, int, int]  # BGR input channel feeding each tensor channel
    mul: tuple[float, float, float]  # 1 / (255 * std)
    sub: tuple[float, float, float]  # mean / std
    dtype: type


def input_hw(metadata: ArtifactMetadata) -> tuple[int, int]:
    """Network input ``(H, W)``: the fixed height and width of ``input_shape`` (axes by ``layout``),
    else ``letterbox_size``."""
    shape = list(metadata.input_shape)
    if len(shape) != 4:
        raise ArtifactError(f"expected input_shape [B, 3, H, W] or [B, H, W, 3] in the metadata, found {shape}")
    h_axis, w_axis = metadata.hw_axes
    if shape[h_axis] > 0 and shape[w_axis] > 0:
        return int(shape[h_axis]), int(shape[w_axis])
    size = list(metadata.letterbox_size)
    if len(size) != 2 or min(size) <= 0:
        raise ArtifactError(f"expected letterbox_size [H, W] > 0 for dynamic input axes, found {size}")
    return int(size[0]), int(size[1])


def check_rect(metadata: ArtifactMetadata) -> None:
    """Raise :class:`~edgecv.errors.ArtifactError` unless the artifact letterboxes and its height and
    width are dynamic (a stretch artifact was trained on full-size stretched images: no rectangle)."""
    if metadata.resize != "letterbox":
        raise ArtifactError(f"rect letterbox needs an artifact with resize 'letterbox', found resize "
                            f"{metadata.resize!r} (the model expects every image stretched to "
                            f"{list(input_hw(metadata))}); drop rect")
    if min(metadata.input_shape[axis] for axis in metadata.hw_axes) > 0:
        raise ArtifactError(f"rect letterbox needs dynamic height/width (export with --dynamic), found input "
                            f"shape {list(metadata.input_shape)}")


def rect_hw(shapes: Sequence[tuple[int, int]], metadata: ArtifactMetadata) -> tuple[int, int]:
    """The smallest stride-multiple ``(H, W)`` that holds every image of ``shapes`` (``(h, w)`` each)
    at the scale the full letterbox would give it: a 640x480 frame into a 640-square artifact runs at
    480x640 instead of 640x640 (25 % less compute). Needs dynamic H and W in the artifact.

    Raises:
        ArtifactError: the artifact's height or width is fixed.
    """
    check_rect(metadata)
    full_h, full_w = input_hw(metadata)
    stride = max(1, int(metadata.stride))
    out_h = out_w = stride
    for h, w in shapes:
        scale = min(full_h / h, full_w / w)
        out_h = max(out_h, min(full_h, -(-round(h * scale) // stride) * stride))
        out_w = max(out_w, min(full_w, -(-round(w * scale) // stride) * stride))
    return out_h, out_w


def normalisation(metadata: ArtifactMetadata) -> Normalisation | None:
    """Validate the metadata's layout, colour order, mean/std and dtype and turn them into a
    :class:`Normalisation`; ``None`` for a uint8 artifact (the graph normalises, see :func:`graph_normalisation`)."""
    if metadata.input_dtype == "uint8" and metadata.layout == "NHWC":
        if metadata.color_order != "BGR":
            raise ArtifactError(f"expected color_order BGR for a uint8 input, found {metadata.color_order!r}")
        graph_normalisation(metadata)
        return None
    if metadata.layout != "NCHW":
        raise ArtifactError(f"expected input layout NCHW for a {metadata.input_dtype} input in the metadata, "
                            f"found {metadata.layout!r}")
    order = metadata.color_order
    if order not in COLOR_ORDERS:
        raise ArtifactError(f"expected color_order one of {list(COLOR_ORDERS)} in the metadata, found {order!r}")
    if metadata.resize not in RESIZE_MODES:
        raise ArtifactError(f"expected resize one of {list(RESIZE_MODES)} in the metadata, found {metadata.resize!r}")
    if metadata.input_dtype not in _INPUT_DTYPES:
        raise ArtifactError(f"expected input_dtype in {sorted(_INPUT_DTYPES)}, found {metadata.input_dtype!r}")
    problems = validate_fields({"mean": metadata.mean, "std": metadata.std, "pad_value": metadata.pad_value})
    if problems:
        raise ArtifactError("; ".join(problems))
    mean, std = [float(v) for v in metadata.mean], [float(v) for v in metadata.std]
    return Normalisation(
        source=(2, 1, 0) if order == "RGB" else (0, 1, 2),
        mul=tuple(1.0 / (255.0 * s) for s in std),  # type: ignore[arg-type]
        sub=tuple(m / s for m, s in zip(mean, std)),  # type: ignore[arg-type]
        dtype=_INPUT_DTYPES[metadata.input_dtype],
    )


def graph_normalisation(metadata: ArtifactMetadata) -> Normalisation:
    """What the ``edgecv_pre/`` nodes of a uint8 artifact compute, from its ``in_graph`` record, as a
    :class:`Normalisation` (float32): the numpy reference of the graph's prefix (:func:`float_tensor`)."""
    record = dict(metadata.in_graph)
    inner = {"color_order": record.get("color_order"), "mean": record.get("mean"), "std": record.get("std")}
    problems = validate_fields(inner)
    if problems:
        raise ArtifactError("in_graph: " + "; ".join(problems))
    return normalisation(ArtifactMetadata(task=metadata.task, class_names=list(metadata.class_names), **inner))


def float_tensor(batch: np.ndarray, norm: Normalisation) -> np.ndarray:
    """A uint8 ``[B, H, W, 3]`` BGR batch as the float32 ``[B, 3, H, W]`` tensor a float-input
    artifact would get (same arithmetic as :func:`fill_tensor`): the PyTorch side of a uint8
    artifact's fidelity check."""
    out = np.empty((batch.shape[0], 3, *batch.shape[1:3]), np.float32)
    for i, image in enumerate(batch):
        fill_tensor(image, norm, out[i])
    return out


def network_tensor(tensor: np.ndarray, metadata: ArtifactMetadata) -> np.ndarray:
    """The float ``[B, 3, H, W]`` tensor the network itself sees for an input ``tensor`` of the
    artifact: ``tensor`` unchanged for a float artifact, :func:`float_tensor` of it for a uint8 one
    (the PyTorch side of the fidelity check runs this)."""
    if normalisation(metadata) is not None:
        return tensor
    return float_tensor(tensor, graph_normalisation(metadata))


def letterbox(image: np.ndarray, size: tuple[int, int], pad_value: int = 114) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize ``image`` (HxWxC uint8) to fit ``size = (H, W)`` keeping aspect ratio; pad the rest.

    Returns the padded uint8 image ``[H, W, C]`` and its :class:`LetterboxInfo`.
    """
    out_h, out_w = size
    h, w = image.shape[:2]
    scale = min(out_h / h, out_w / w)
    new_w = min(out_w, max(1, round(w * scale)))
    new_h = min(out_h, max(1, round(h * scale)))
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (out_w - new_w) // 2, (out_h - new_h) // 2
    if (new_w, new_h) != (out_w, out_h):
        image = cv2.copyMakeBorder(image, pad_y, out_h - new_h - pad_y, pad_x, out_w - new_w - pad_x,
                                   cv2.BORDER_CONSTANT, value=(pad_value,) * 4)
    return image, LetterboxInfo(float(scale), pad_x, pad_y, (int(h), int(w)))


def stretch(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize ``image`` (HxWxC uint8) to exactly ``size = (H, W)``, each axis on its own (no padding).

    Returns the resized uint8 image ``[H, W, C]`` and its :class:`LetterboxInfo`
    (``scale = W / w``, ``scale_y = H / h``, no padding).
    """
    out_h, out_w = size
    h, w = image.shape[:2]
    if (h, w) != (out_h, out_w):
        image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    return image, LetterboxInfo(out_w / w, 0, 0, (int(h), int(w)), scale_y=out_h / h)


def resize_for(image: np.ndarray, size: tuple[int, int], metadata: ArtifactMetadata
               ) -> tuple[np.ndarray, LetterboxInfo]:
    """The artifact's resize (``metadata.resize``: letterbox with its ``pad_value``, or stretch) to ``size``."""
    if metadata.resize == "stretch":
        return stretch(image, size)
    return letterbox(image, size, metadata.pad_value)


def fit(shape: tuple[int, int], size: tuple[int, int], resize: str = "letterbox") -> tuple[int, int, LetterboxInfo]:
    """Where an image of ``shape = (h, w)`` lands in ``size = (H, W)`` (:func:`letterbox` / :func:`stretch`
    arithmetic): ``(new_w, new_h, info)``. The ``--frame`` graph prefix uses the same numbers."""
    (h, w), (out_h, out_w) = shape, size
    if resize == "stretch":
        return out_w, out_h, LetterboxInfo(out_w / w, 0, 0, (int(h), int(w)), scale_y=out_h / h)
    scale = min(out_h / h, out_w / w)
    new_w, new_h = min(out_w, max(1, round(w * scale))), min(out_h, max(1, round(h * scale)))
    return new_w, new_h, LetterboxInfo(float(scale), (out_w - new_w) // 2, (out_h - new_h) // 2, (int(h), int(w)))


def graph_frame(metadata: ArtifactMetadata) -> tuple[int, int] | None:
    """The camera frame ``(H, W)`` a ``--frame`` artifact resizes inside its graph, else None."""
    frame = metadata.in_graph.get("frame") if metadata.in_graph else None
    if frame is None:
        return None
    if not (isinstance(frame, list) and len(frame) == 2 and all(isinstance(v, int) and v > 0 for v in frame)):
        raise ArtifactError(f"in_graph.frame: expected [H, W] (2 integers > 0), found {frame!r}")
    return int(frame[0]), int(frame[1])


def network_hw(metadata: ArtifactMetadata, shape: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` of the network input (boxes live in it) for an input tensor of ``shape``: the
    tensor's own height and width, or the letterbox size when the graph resizes the frame itself."""
    if graph_frame(metadata) is not None:
        return int(metadata.letterbox_size[0]), int(metadata.letterbox_size[1])
    h_axis, w_axis = metadata.hw_axes
    return int(shape[h_axis]), int(shape[w_axis])


def _frame_batch(frames: Sequence[np.ndarray], metadata: ArtifactMetadata, frame: tuple[int, int],
                 tensor: np.ndarray) -> list[LetterboxInfo]:
    """Copy camera frames of exactly ``frame = (H, W)`` into ``tensor``; their letterbox happens in the graph."""
    infos = []
    for i, image in enumerate(frames):
        if image.shape[:2] != frame:
            raise ImageError(f"expected {frame[1]}x{frame[0]} frames (the artifact resizes them in its graph: "
                             f"export --frame), found {image.shape[1]}x{image.shape[0]}")
        tensor[i] = image
        infos.append(fit(frame, tuple(metadata.letterbox_size), metadata.resize)[2])
    return infos


def resize_into(image: np.ndarray, out: np.ndarray, metadata: ArtifactMetadata) -> LetterboxInfo:
    """:func:`resize_for` written straight into ``out`` (``[H, W, 3]`` uint8, e.g. one item of a
    uint8 artifact's input tensor): no intermediate image; the padding strips are filled with
    ``pad_value``. Returns the :class:`LetterboxInfo`."""
    h, w = image.shape[:2]
    new_w, new_h, info = fit((h, w), out.shape[:2], metadata.resize)
    x, y = info.pad_x, info.pad_y
    if (new_w, new_h) == (w, h):
        out[y:y + h, x:x + w] = image
    else:
        cv2.resize(image, (new_w, new_h), dst=out[y:y + new_h, x:x + new_w], interpolation=cv2.INTER_LINEAR)
    pad = metadata.pad_value
    out[:y], out[y + new_h:] = pad, pad  # top and bottom strips
    out[y:y + new_h, :x], out[y:y + new_h, x + new_w:] = pad, pad  # left and right
    return info


def _scale_row(info: LetterboxInfo) -> np.ndarray:
    scale_x, scale_y = info.scales
    return np.array([scale_x, scale_y, scale_x, scale_y], np.float32)


def scale_boxes_back(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map xyxy ``boxes [N, 4]`` from network-input pixels to original-image pixels, clipped to the image.

    Returns a new float32 ``[N, 4]`` array: ``(box - pad) / scale`` per axis, then clipped to
    ``[0, width] x [0, height]`` of ``info.orig_shape``.
    """
    out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    out -= np.array([info.pad_x, info.pad_y, info.pad_x, info.pad_y], np.float32)
    out /= _scale_row(info)
    h, w = info.orig_shape
    np.clip(out, 0.0, np.array([w, h, w, h], np.float32), out=out)
    return out


def boxes_to_letterbox(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Inverse of :func:`scale_boxes_back`, without clipping: original xyxy -> letterbox xyxy, float32 ``[N, 4]``."""
    out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4) * _scale_row(info)
    out += np.array([info.pad_x, info.pad_y, info.pad_x, info.pad_y], np.float32)
    return out


def fill_tensor(padded: np.ndarray, norm: Normalisation, out: np.ndarray) -> None:
    """Write one resized BGR uint8 image ``[H, W, 3]`` into ``out [3, H, W]`` float32, normalised.

    One pass per channel over contiguous planes (``cv2.split`` then a fused multiply).
    """
    planes = cv2.split(padded)
    for c, src in enumerate(norm.source):
        np.multiply(planes[src], np.float32(norm.mul[c]), out=out[c], dtype=np.float32, casting="unsafe")
        if norm.sub[c]:
            np.subtract(out[c], np.float32(norm.sub[c]), out=out[c])


def preprocess_batch(
    images: Sequence[np.ndarray],
    metadata: ArtifactMetadata,
    batch_size: int | None = None,
    rect: bool = False,
    allocate: Allocate | None = None,
) -> tuple[np.ndarray, list[LetterboxInfo]]:
    """Resize (letterbox or stretch, per ``metadata.resize``) and normalise ``images`` into the input tensor.

    Args:
        images: HxWx3 uint8 BGR images (grayscale, BGRA and uint16 are converted silently
            with :func:`~edgecv.runtimes.image.to_bgr_uint8`; call it yourself to see the notes).
        metadata: the artifact's metadata (input size, resize mode, colour order, mean/std, pad value, dtype).
        batch_size: pad the batch with all-zero items up to this size (fixed-batch artifacts).
        rect: letterbox to the smallest stride-multiple rectangle holding the batch (:func:`rect_hw`)
            instead of the full letterbox size; dynamic-size letterbox artifacts only.
        allocate: where the tensor comes from (``(shape, dtype) -> array``, e.g. a reused buffer of
            :class:`~edgecv.runtimes.buffers.TensorPool`); default a new array.

    Returns:
        ``(tensor, infos)``: tensor ``[max(len(images), batch_size), 3, H, W]`` of the artifact's
        input dtype (float32 unless the artifact says float16), or ``[N, H, W, 3]`` uint8 BGR for a
        uint8 artifact, and one :class:`LetterboxInfo` per real image, for :func:`scale_boxes_back`.
    """
    frames = [to_bgr_uint8(image)[0] for image in images]
    height, width = rect_hw([f.shape[:2] for f in frames], metadata) if rect and frames else input_hw(metadata)
    norm = normalisation(metadata)
    total = max(len(images), batch_size or 0)
    allocate = allocate or np.empty
    if norm is None:  # uint8 artifact: the resized image is the tensor
        tensor = allocate((total, height, width, 3), np.uint8)
        frame_hw = graph_frame(metadata)
        if frame_hw is not None:  # the graph letterboxes too: the camera frame goes in as it is
            infos = _frame_batch(frames, metadata, frame_hw, tensor)
        else:
            infos = [resize_into(frame, tensor[i], metadata) for i, frame in enumerate(frames)]
        tensor[len(images):] = 0
        return tensor, infos
    tensor = allocate((total, 3, height, width), np.float32)
    infos = []
    for i, frame in enumerate(frames):
        padded, info = resize_for(frame, (height, width), metadata)
        fill_tensor(padded, norm, tensor[i])
        infos.append(info)
    tensor[len(images):] = 0.0
    if norm.dtype is not np.float32:
        tensor = tensor.astype(norm.dtype)
    return tensor, infos
