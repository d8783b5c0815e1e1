"""INT8 calibration: data sources, range calibration, per-target QDQ emission, accuracy-guarded fallback.

    from edgecv.calibration import quantize
    result = quantize("model.onnx", data="shapes", method="percentile", target="tensorrt", max_drop=0.5)
    result.path      # model_int8_tensorrt.onnx; result.plot / result.report beside it when evaluated

Needs the ``onnx`` package (``pip install 'edgecv[calib]'``); ONNX Runtime is a core dependency.
"""

try:
    import onnx  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    from edgecv.errors import MissingDependencyError

    raise MissingDependencyError("int8 calibration needs the 'onnx' package: pip install 'edgecv[calib]'") from exc

from edgecv.calibration.api import QuantizeResult, default_int8_path, quantize  # noqa: E402

__all__ = ["QuantizeResult", "default_int8_path", "quantize"]
