"""Read any ``edgecv.result/1`` document back into the result type of its task."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from edgecv.runtimes.detections import Detections
from edgecv.runtimes.semantic_map import SemanticMap


def read_result(doc: Mapping[str, Any], class_names: Sequence[str] | None = None, *,
                strict: bool = True) -> Detections | SemanticMap:
    """A :class:`SemanticMap` for a document with a ``semantic`` key, else :class:`Detections`
    (with ``masks`` when the document has them); see the ``from_dict`` of each.

    Raises:
        ResultError: the document breaks the schema.
    """
    if isinstance(doc, Mapping) and "semantic" in doc:
        return SemanticMap.from_dict(doc, class_names, strict=strict)
    return Detections.from_dict(doc, class_names, strict=strict)
