import cv2
import numpy as np
import pytest

from edgecv.errors import ArtifactError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.preprocess import (
    LetterboxInfo,
    boxes_to_letterbox,
    check_rect,
    input_hw,
    letterbox,
    preprocess_batch,
    scale_boxes_back,
    stretch,
)


def meta(**kwargs: object) -> ArtifactMetadata:
    base = {"task": "detect", "class_names": ["a"], "input_shape": [-1, 3, 320, 320], "letterbox_size": [320, 320]}
    return ArtifactMetadata(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(("h", "w"), [(480, 640), (640, 480), (300, 451), (100, 100), (1000, 90)])
def test_letterbox_geometry(h: int, w: int) -> None:
    image = np.full((h, w, 3), 255, np.uint8)
    padded, info = letterbox(image, (320, 320))
    assert padded.shape == (320, 320, 3) and padded.dtype == np.uint8
    assert info.orig_shape == (h, w)
    assert info.scale == pytest.approx(min(320 / h, 320 / w))
    new_w, new_h = round(w * info.scale), round(h * info.scale)
    assert info.pad_x == (320 - new_w) // 2 and info.pad_y == (320 - new_h) // 2
    # content is white, padding is 114, and the content sits where info says
    assert (padded[info.pad_y:info.pad_y + new_h, info.pad_x:info.pad_x + new_w] == 255).all()
    assert (padded == 114).sum() == 3 * (320 * 320 - new_w * new_h)


def test_letterbox_non_square_target() -> None:
    padded, info = letterbox(np.zeros((720, 1280, 3), np.uint8), (384, 640))
    assert padded.shape == (384, 640, 3)
    assert info.scale == pytest.approx(0.5) and info.pad_x == 0 and info.pad_y == 12


@pytest.mark.parametrize(("h", "w"), [(480, 640), (640, 480), (720, 1280), (1280, 720), (37, 333)])
def test_box_round_trip_within_one_pixel(h: int, w: int) -> None:
    """A box drawn in the original image lands where the letterbox puts it, and maps back within 1 px."""
    x1, y1, x2, y2 = int(w * 0.2), int(h * 0.3), int(w * 0.7), int(h * 0.9)
    image = np.zeros((h, w, 3), np.uint8)
    image[y1:y2, x1:x2] = 255
    padded, info = letterbox(image, (320, 320))
    box_lb = boxes_to_letterbox(np.array([[x1, y1, x2, y2]], np.float32), info)[0]
    ys, xs = np.nonzero(padded[..., 0] > 127)  # where the white box actually is in the letterbox
    found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    np.testing.assert_allclose(found, box_lb, atol=1.0)
    back = scale_boxes_back(found[None], info)[0]
    np.testing.assert_allclose(back, [x1, y1, x2, y2], atol=1.0 / info.scale + 1e-3)
    np.testing.assert_allclose(scale_boxes_back(box_lb[None], info)[0], [x1, y1, x2, y2], atol=1e-3)


def test_scale_boxes_back_clips_to_image() -> None:
    info = LetterboxInfo(scale=0.5, pad_x=0, pad_y=40, orig_shape=(480, 640))
    out = scale_boxes_back(np.array([[-10, 0, 330, 400]], np.float32), info)
    np.testing.assert_allclose(out, [[0, 0, 640, 480]])
    assert out.dtype == np.float32
    assert scale_boxes_back(np.zeros((0, 4)), info).shape == (0, 4)


def test_preprocess_batch_layout_and_normalisation() -> None:
    image = np.zeros((320, 320, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # B, G, R
    m = meta(mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 2.0])
    tensor, infos = preprocess_batch([image], m)
    assert tensor.shape == (1, 3, 320, 320) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    expected = [(30 / 255 - 0.1) / 0.5, (20 / 255 - 0.2) / 0.25, (10 / 255 - 0.3) / 2.0]  # R, G, B planes
    np.testing.assert_allclose(tensor[0, :, 5, 5], expected, rtol=1e-5, atol=1e-6)
    assert infos == [LetterboxInfo(1.0, 0, 0, (320, 320))]
    bgr_tensor, _ = preprocess_batch([image], meta(color_order="BGR"))
    np.testing.assert_allclose(bgr_tensor[0, :, 0, 0], [10 / 255, 20 / 255, 30 / 255], rtol=1e-6)


def test_preprocess_batch_matches_opencv_blob() -> None:
    """Same numbers as OpenCV's own blob builder on the letterboxed image (independent implementation)."""
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (240, 400, 3), dtype=np.uint8), rng.integers(0, 256, (500, 300, 3), np.uint8)]
    tensor, infos = preprocess_batch(images, meta())
    padded = [letterbox(image, (320, 320))[0] for image in images]
    blob = cv2.dnn.blobFromImages(padded, 1 / 255.0, (320, 320), (0, 0, 0), swapRB=True, crop=False)
    np.testing.assert_allclose(tensor, blob, atol=1e-6)
    assert len(infos) == 2


def test_preprocess_batch_zero_pads_and_converts() -> None:
    gray = np.full((50, 80), 200, np.uint8)
    tensor, infos = preprocess_batch([gray], meta(), batch_size=3)
    assert tensor.shape == (3, 3, 320, 320) and len(infos) == 1
    assert (tensor[1:] == 0).all() and tensor[0].max() == pytest.approx(200 / 255)
    half, _ = preprocess_batch([gray], meta(input_dtype="float16"))
    assert half.dtype == np.float16


def test_input_size_from_shape_or_letterbox() -> None:
    assert input_hw(meta(input_shape=[1, 3, 256, 384])) == (256, 384)
    assert input_hw(meta(input_shape=[1, 3, -1, -1], letterbox_size=[192, 224])) == (192, 224)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "NHWC"}, "expected input layout NCHW.*NHWC"),
        ({"color_order": "YUV"}, "expected color_order.*YUV"),
        ({"std": [1.0, 0.0, 1.0]}, r"std: expected a list of 3 numbers > 0"),
        ({"mean": [0.5, 0.5]}, r"mean: expected a list of 3 finite numbers"),
        ({"resize": "crop"}, r"expected resize one of \['letterbox', 'stretch'\].*crop"),
        ({"input_dtype": "uint8"}, "expected input_dtype.*uint8"),
        ({"input_shape": [1, 3, 320]}, r"expected input_shape \[B, 3, H, W\]"),
    ],
)
def test_bad_metadata_is_an_artifact_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        preprocess_batch([np.zeros((8, 8, 3), np.uint8)], meta(**kwargs))


@pytest.mark.parametrize(("h", "w"), [(320, 480), (480, 320), (720, 1280), (37, 333)])
def test_stretch_fills_the_input_and_maps_boxes_back_per_axis(h: int, w: int) -> None:
    """A stretch artifact sees the whole image resized to (H, W), no padding; a box drawn in the
    original lands at (x * W / w, y * H / h) and maps back within a pixel per axis."""
    x1, y1, x2, y2 = int(w * 0.2), int(h * 0.3), int(w * 0.7), int(h * 0.9)
    image = np.zeros((h, w, 3), np.uint8)
    image[y1:y2, x1:x2] = 255
    tensor, infos = preprocess_batch([image], meta(resize="stretch", input_shape=[1, 3, 256, 384]))
    info = infos[0]
    assert tensor.shape == (1, 3, 256, 384) and (info.pad_x, info.pad_y) == (0, 0)
    assert info.scales == pytest.approx((384 / w, 256 / h))
    ys, xs = np.nonzero(tensor[0, 0] > 0.5)
    found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    np.testing.assert_allclose(found, boxes_to_letterbox(np.array([[x1, y1, x2, y2]], np.float32), info)[0],
                               atol=1.0)
    back = scale_boxes_back(found[None], info)[0]
    np.testing.assert_allclose(back, [x1, y1, x2, y2], atol=max(w / 384, h / 256) + 1e-3)


def test_stretch_matches_opencv_blob_and_keeps_bgr() -> None:
    """BGR + stretch: the planes are the resized image's own B, G, R (no swap), as OpenCV's blob builds them."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (240, 400, 3), dtype=np.uint8)
    tensor, _ = preprocess_batch([image], meta(resize="stretch", color_order="BGR"))
    blob = cv2.dnn.blobFromImage(cv2.resize(image, (320, 320), interpolation=cv2.INTER_LINEAR), 1 / 255.0,
                                 swapRB=False)
    np.testing.assert_allclose(tensor, blob, atol=1e-6)
    resized, info = stretch(image, (320, 320))
    assert resized.shape == (320, 320, 3) and info.scales == pytest.approx((320 / 400, 320 / 240))


def test_rect_with_a_stretch_artifact_is_refused() -> None:
    with pytest.raises(ArtifactError, match="rect letterbox needs an artifact with resize 'letterbox', found "
                                            "resize 'stretch'"):
        check_rect(meta(resize="stretch", input_shape=[-1, 3, -1, -1]))
