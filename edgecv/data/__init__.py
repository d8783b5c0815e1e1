"""Datasets: the built-in synthetic shapes set and COCO-format folders."""

from edgecv.data.synthetic import CLASS_NAMES, Sample, ShapesDataset

__all__ = ["CLASS_NAMES", "Sample", "ShapesDataset"]
