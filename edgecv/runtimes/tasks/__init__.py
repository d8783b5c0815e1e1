"""Tasks: the metadata's ``task`` picks an output contract and its post-processing.

One module per task, one entry in :data:`TASKS` (like the backends):

========== ================================================ =================================
task       outputs (the graph contract)                     ``Predictor(...)(image)`` returns
========== ================================================ =================================
detect     num_dets, boxes, scores, classes                 :class:`Detections`
segment    the detect outputs + masks ``[B, K, M, M]``      :class:`Detections` with ``masks``
           (box-relative probabilities)                     (:class:`InstanceMasks`)
semantic   labels ``[B, H, W]`` (+ optional probs           :class:`SemanticMap`
           ``[B, C, H, W]``)
========== ================================================ =================================

Each module defines ``TASK``, an object following :class:`~edgecv.runtimes.tasks.base.Task`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Mapping

from edgecv.errors import ArtifactError, OptionError
from edgecv.metadata import ArtifactMetadata
from edgecv.runtimes.tasks.base import PostContext, Task

#: task name -> module defining ``TASK``
TASKS: dict[str, str] = {
    "detect": "edgecv.runtimes.tasks.detect",
    "segment": "edgecv.runtimes.tasks.segment",
    "semantic": "edgecv.runtimes.tasks.semantic",
}

__all__ = ["TASKS", "PostContext", "Task", "task_for", "task_options"]


def task_for(metadata: ArtifactMetadata, source: str = "artifact") -> Task:
    """The :class:`Task` of ``metadata.task``; :class:`ArtifactError` for a task this runtime lacks."""
    module = TASKS.get(metadata.task)
    if module is None:
        raise ArtifactError(f"{source}: expected task one of {list(TASKS)}, found {metadata.task!r} "
                            "(this runtime does not run it)")
    return import_module(module).TASK


def task_options(task: Task, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``task.options`` defaults updated with ``given``; :class:`OptionError` for an unknown option."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(task.options))
    if unknown:
        raise OptionError(f"task_options: expected keys among {sorted(task.options) or 'none'} for task "
                          f"{task.name!r}, found {unknown}")
    for key, value in given.items():
        default = task.options[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise OptionError(f"task_options[{key!r}]: expected true or false, found {value!r}")
        if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                           or not 0.0 < float(value) < 1.0):
            raise OptionError(f"task_options[{key!r}]: expected a number in (0, 1), found {value!r}")
    return {**task.options, **given}
