"""edgecv: trained PyTorch vision models to the edge.

Subpackages: :mod:`edgecv.export` (PyTorch -> ONNX), :mod:`edgecv.calibration` (INT8),
:mod:`edgecv.runtimes` (one predictor over backends; never imports torch),
:mod:`edgecv.models` (model families), :mod:`edgecv.data` (datasets).
Importing this package imports nothing heavy.
"""

__version__ = "0.1.0"
