"""Small ``segment`` and ``semantic`` artifacts built by the tests: torch modules exported with
``torch.onnx`` that honour the graph contracts, with edgecv metadata written like a real export
(:func:`edgecv.export.onnx_export.set_metadata`).

* :class:`ColourSegmenter` (task ``segment``): finds the pure-red and pure-blue pixels of the
  input, boxes each colour's pixels (classes ``red`` = 0, ``blue`` = 1) and returns, per box,
  the 28 x 28 box-relative mask probabilities of that colour (``RoiAlign``, aligned) -- Mask
  R-CNN's output form, so an image with a red disc must come back with the disc's mask in
  original pixels. Outputs sorted by score (red 0.9, blue 0.8), padded to K = 3.
* :class:`ColourLabeller` (task ``semantic``): ``labels [B, H, W]`` = arg-max over
  ``background, red, green, blue`` of per-pixel colour scores, ``probs [B, 4, H, W]`` their softmax.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn
from torchvision.ops import roi_align

from edgecv.export.onnx_export import set_metadata
from edgecv.metadata import ArtifactMetadata

SEGMENT_NAMES = ["red", "blue"]
SEMANTIC_NAMES = ["background", "red", "green", "blue"]
MASK_SIZE = 28
K = 3


def _colour(images: torch.Tensor, channel: int) -> torch.Tensor:
    """float ``[B, H, W]``: 1 where ``channel`` is high and the two others low (RGB input in [0, 1])."""
    others = [c for c in range(3) if c != channel]
    return ((images[:, channel] > 0.5) & (images[:, others[0]] < 0.5) & (images[:, others[1]] < 0.5)).float()


def _box_of(mask: torch.Tensor) -> torch.Tensor:
    """xyxy ``[B, 4]`` pixel box of the set pixels of ``mask [B, H, W]`` (zeros when none)."""
    cols, rows = mask.amax(1), mask.amax(2)  # [B, W], [B, H]
    xs = torch.cumsum(torch.ones_like(cols[0]), 0) - 1
    ys = torch.cumsum(torch.ones_like(rows[0]), 0) - 1
    big = float(max(mask.shape[1], mask.shape[2]))
    x1 = torch.where(cols > 0, xs, torch.full_like(cols, big)).amin(1)
    y1 = torch.where(rows > 0, ys, torch.full_like(rows, big)).amin(1)
    x2 = torch.where(cols > 0, xs + 1, torch.zeros_like(cols)).amax(1)
    y2 = torch.where(rows > 0, ys + 1, torch.zeros_like(rows)).amax(1)
    found = (cols.amax(1) > 0).float()
    return torch.stack([x1, y1, x2, y2], 1) * found[:, None]


class ColourSegmenter(nn.Module):
    """Task ``segment`` toy: see the module docstring."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        colours = torch.stack([_colour(images, 0), _colour(images, 2)], 1)  # [B, 2, H, W]: red, blue
        boxes = torch.stack([_box_of(colours[:, 0]), _box_of(colours[:, 1])], 1)  # [B, 2, 4]
        found = (boxes[..., 2] > boxes[..., 0]).float()  # [B, 2]
        scores = found * torch.tensor([0.9, 0.8])
        flat_boxes = boxes.reshape(-1, 4)
        index = (torch.cumsum(torch.ones_like(flat_boxes[:, :1]), 0) - 1)  # RoI i reads colour map i
        maps = colours.reshape(-1, 1, colours.shape[2], colours.shape[3])
        masks = roi_align(maps, torch.cat([index, flat_boxes], 1), (MASK_SIZE, MASK_SIZE), 1.0, 2, True)
        masks = masks.reshape(-1, 2, MASK_SIZE, MASK_SIZE)
        top, order = torch.topk(scores, 2, dim=1)
        classes = order.int() * (top > 0).int()
        boxes = torch.gather(boxes, 1, order[..., None].expand(-1, -1, 4))
        masks = torch.gather(masks, 1, order[..., None, None].expand(-1, -1, MASK_SIZE, MASK_SIZE))
        pad = torch.zeros_like(top[:, :1])
        return ((top > 0).sum(1, keepdim=True).int(), torch.cat([boxes, torch.zeros_like(boxes[:, :1])], 1),
                torch.cat([top, pad], 1), torch.cat([classes, pad.int()], 1),
                torch.cat([masks, torch.zeros_like(masks[:, :1])], 1))


class ColourLabeller(nn.Module):
    """Task ``semantic`` toy: see the module docstring."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r, g, b = images[:, 0], images[:, 1], images[:, 2]
        scores = torch.stack([torch.full_like(r, 0.5), r - (g + b) / 2, g - (r + b) / 2, b - (r + g) / 2], 1)
        return scores.argmax(1).int(), torch.softmax(scores * 8.0, 1)


SEGMENT_OUTPUTS = ["num_dets", "boxes", "scores", "classes", "masks"]
SEMANTIC_OUTPUTS = ["labels", "probs"]


def export_task_graph(module: nn.Module, outputs: list[str], hw: tuple[int, int],
                      dynamic_hw: bool = False) -> onnx.ModelProto:
    """``module`` exported (TorchScript exporter, opset 17) with a dynamic batch axis (and dynamic
    height and width: ``dynamic_hw``, for the label map's last two axes too)."""
    buffer = io.BytesIO()
    size = {-2: "height", -1: "width"} if dynamic_hw else {}
    axes = {"images": {0: "batch", **{k + 4: v for k, v in size.items()}},
            **{name: {0: "batch", **({1: "height", 2: "width"} if dynamic_hw and name == "labels" else {}),
                      **({2: "height", 3: "width"} if dynamic_hw and name == "probs" else {})} for name in outputs}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values: the toys' shapes are fixed
        torch.onnx.export(module.eval(), (torch.rand(2, 3, *hw),), buffer, dynamo=False, input_names=["images"],
                          output_names=outputs, opset_version=17, dynamic_axes=axes)
    return onnx.load_from_string(buffer.getvalue())


def task_metadata(task: str, names: list[str], hw: tuple[int, int], resize: str = "letterbox",
                  **changes: object) -> ArtifactMetadata:
    """Metadata as an export writes it, for a dynamic-batch graph of input size ``hw``."""
    outputs = SEGMENT_OUTPUTS if task == "segment" else SEMANTIC_OUTPUTS
    meta = ArtifactMetadata(task=task, class_names=list(names), input_shape=[-1, 3, *hw], letterbox_size=list(hw),
                            resize=resize, outputs=list(outputs), max_det=K, conf_threshold=0.25, dynamic=True,
                            model_family=f"toy-{task}", versions={"torch": torch.__version__, "opset": "17"})
    for key, value in changes.items():
        setattr(meta, key, value)
    return meta


def save_artifact(model: onnx.ModelProto, metadata: ArtifactMetadata, path: Path) -> Path:
    """``model`` with ``metadata`` in its ``metadata_props``, saved at ``path``."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    set_metadata(copy, metadata)
    onnx.save(copy, path)
    return path
