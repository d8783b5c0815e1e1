"""Exception classes. Every user mistake raises a subclass of :class:`EdgecvError`,
whose message names what was expected and what was found; the CLI prints it without a traceback."""


class EdgecvError(Exception):
    """Base class for errors caused by user input (files, options, data)."""


class UnknownModelError(EdgecvError):
    """A model family name that edgecv does not know."""


class WeightsError(EdgecvError):
    """A weights file that is missing, corrupt, untrusted or built for another model."""


class ArtifactError(EdgecvError):
    """A model artifact (ONNX file, engine) that is missing, corrupt or lacks edgecv metadata."""


class ImageError(EdgecvError):
    """An image that cannot be decoded or has an unsupported layout or dtype."""


class SourceError(EdgecvError):
    """An input source (folder, video, camera, stream) that cannot be opened or read."""


class DatasetError(EdgecvError):
    """A dataset folder or annotation file that is missing, empty or malformed."""


class ExportError(EdgecvError):
    """An export that failed, including a failed fidelity check."""


class MissingDependencyError(EdgecvError):
    """An optional dependency is not installed; the message names the extra to install."""


class BackendError(EdgecvError):
    """A runtime backend that is unknown, cannot serve the requested device, or failed at inference."""


class CalibrationError(EdgecvError):
    """Calibration data or a calibration cache that cannot be used (empty source, hash mismatch, bad method)."""


class QuantizationError(EdgecvError):
    """A graph that cannot be quantized as asked (already quantized, unknown target, unreachable accuracy)."""


class OptionError(EdgecvError, ValueError):
    """A malformed option value: a frame size, a backend spec, a count below its minimum."""


class ResultError(EdgecvError, ValueError):
    """A result document (a ``Detections.to_dict`` / ``predictions.jsonl`` line) that breaks the result schema."""
