"""edgecv runtimes: one :class:`Predictor` over backends, plain-data results, sources and sinks.

Never imports torch or onnx (architecture contract 5): only numpy, OpenCV, ONNX Runtime
(when a predictor is opened), rich and the standard library. Names below are imported on
first use, so ``import edgecv.runtimes`` itself loads nothing heavy.

    from edgecv.runtimes import Predictor, predict_source
    with Predictor("model.onnx") as predictor:
        detections = predictor(frame_bgr)          # Detections, boxes in frame pixels (semantic: SemanticMap)
        summary = predict_source(predictor, "clips/", save_dir="runs/predict")
        with predictor.stream(0) as results:       # or stream(predictor, 0): pipelined, latest frame
            for result in results: ...             # StreamResult: .image, .detections, .timing, .age
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgecv.runtimes.detections import Detections
    from edgecv.runtimes.masks import InstanceMasks
    from edgecv.runtimes.results import read_result
    from edgecv.runtimes.semantic_map import SemanticMap
    from edgecv.runtimes.draw import annotate
    from edgecv.runtimes.predict import PredictSummary, predict_source
    from edgecv.runtimes.predictor import Predictor
    from edgecv.runtimes.preprocess import LetterboxInfo, preprocess_batch, scale_boxes_back
    from edgecv.runtimes.sources import FrameSource, iter_source
    from edgecv.runtimes.info import artifact_info
    from edgecv.runtimes.streams.pipeline import Stream, stream
    from edgecv.runtimes.streams.result import StreamResult
    from edgecv.runtimes.robot import BackgroundPredictor

#: public name -> module that defines it
_EXPORTS = {
    "Predictor": "edgecv.runtimes.predictor",
    "Detections": "edgecv.runtimes.detections",
    "InstanceMasks": "edgecv.runtimes.masks",
    "SemanticMap": "edgecv.runtimes.semantic_map",
    "read_result": "edgecv.runtimes.results",
    "predict_source": "edgecv.runtimes.predict",
    "PredictSummary": "edgecv.runtimes.predict",
    "iter_source": "edgecv.runtimes.sources",
    "FrameSource": "edgecv.runtimes.sources",
    "annotate": "edgecv.runtimes.draw",
    "preprocess_batch": "edgecv.runtimes.preprocess",
    "scale_boxes_back": "edgecv.runtimes.preprocess",
    "LetterboxInfo": "edgecv.runtimes.preprocess",
    "artifact_info": "edgecv.runtimes.info",
    "stream": "edgecv.runtimes.streams.pipeline",
    "Stream": "edgecv.runtimes.streams.pipeline",
    "StreamResult": "edgecv.runtimes.streams.result",
    "BackgroundPredictor": "edgecv.runtimes.robot",
}

__all__ = [
    "BackgroundPredictor", "Detections", "FrameSource", "InstanceMasks", "LetterboxInfo", "PredictSummary",
    "Predictor", "SemanticMap", "Stream", "StreamResult", "annotate", "artifact_info", "iter_source",
    "predict_source", "preprocess_batch", "read_result",
    "scale_boxes_back", "stream",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgecv.runtimes' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
