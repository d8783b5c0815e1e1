"""Thread priorities of the stream pipeline's stages (Linux: per-thread nice values).

Why: on a small CPU (2 cores) inference is the stage everything waits for, and ONNX Runtime's
parallel sections finish only when their slowest worker does; a sink thread encoding a 1080p
frame on the same core stretches every section it preempts. Lowering the priority of the
stages that have slack (drawing + encoding + JSON lines, ``every`` policy: files) lets the
inference threads take the cores whenever they want them, while the sinks still get all the
time inference leaves idle (CFS shares, not starvation: nice 5 still gets ~30 % of a contended core).

Only lowering is done (raising needs privileges); on systems without per-thread nice values
(not Linux) nothing changes.
"""

from __future__ import annotations

import os
import sys
import threading

#: nice steps added to the sink thread of an ``every`` stream (files); 0 disables
SINK_NICE = 5


def lower_current_thread(steps: int) -> bool:
    """Add ``steps`` (>= 0) to the calling thread's nice value; ``True`` if it changed.

    Linux only (``setpriority`` on a thread id changes that thread alone); elsewhere, or when
    refused, it returns ``False`` and the thread runs as before.
    """
    if steps <= 0 or not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
    except OSError:  # a sandbox that forbids it: same behaviour, only the scheduling hint is lost
        return False
    return True


def current_thread_nice() -> int | None:
    """The calling thread's nice value (``None`` where threads have none of their own)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "getpriority"):
        return None
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
